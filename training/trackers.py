"""The experiment trackers a run reports to (``report_to``): checks, environment, audio samples per style.

Scalars reach every tracker through transformers' own integration callbacks (the Trainer adds one per
``report_to`` name), with the Trainer's ``train/`` prefix: ``train/rewards/<name>/<style>``,
``train/reward_by_style/<style>``, ``train/acoustic/<field>/<style>``, ``train/tradeoff/<a>~<b>/<style>``,
``train/dominance/<name>/<style>``, ``train/quality/...``. Audio is not a scalar: :func:`log_audio` sends the
per-style training samples (training/callbacks.py, ``AudioSamplesCallback``) to each named tracker as
playable audio under ``samples/<style>_<k>`` (TensorBoard ``add_audio`` through the writer its callback
opened, ``wandb.Audio`` into the current wandb run, ``trackio.Audio`` into the current trackio run), at the
optimizer step they were saved. Every tracker is imported only when named.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers.integrations import TrackioCallback
from transformers.integrations.integration_utils import rewrite_logs

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.errors import StyleGRPOError, quote

log = logging.getLogger(__name__)

# report_to name -> the module it needs; each is also the name of stylegrpo's pip extra that installs it
AUDIO_TRACKERS = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}
SAMPLES_PREFIX = (
    "samples"  # tracker key of a clip: samples/<style>_<k> (as the file samples/step-N/<style>_<k>.wav)
)
# what transformers' TrackioCallback keeps out of the curves (one value per run, in its summary)
_RUN_SUMMARY_KEYS = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "train_loss",
    "total_flos",
)
PCM16_MAX = 32767  # 16-bit PCM full scale (trackio peak-normalises float audio: we hand it PCM instead)


@dataclass
class Clip:
    """One audio sample for the trackers: its key (``samples/<style>_<k>``), waveform and caption."""

    key: str
    wav: np.ndarray
    caption: str


def clip_key(style: str, k: int) -> str:
    return f"{SAMPLES_PREFIX}/{style}_{k}"


def named_trackers(report_to: Sequence[str] | str | None) -> list[str]:
    """The tracker names in ``report_to``: a list, or one string, whose items may be comma-separated
    (``--report_to tensorboard,trackio``: the command line takes one value). TrainingArguments has
    already turned "all" into the installed integrations; "none" names none."""
    if not report_to:
        return []
    items = [report_to] if isinstance(report_to, str) else list(report_to)
    names = [n.strip() for item in items for n in str(item).split(",")]
    return list(dict.fromkeys(n for n in names if n and n != "none"))


def check_report_to(report_to: Sequence[str] | str | None) -> list[str]:
    """The trackers named in ``report_to``, as the list the Trainer takes. Refuses, before anything loads,
    a name transformers does not know and a named tracker whose package is missing (naming the pip extra
    that installs it)."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = named_trackers(report_to)
    unknown = [n for n in names if n not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise StyleGRPOError(
            f"report_to: unknown tracker(s) {', '.join(map(quote, unknown))}; known: "
            f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}, all, none (several: comma-separated)"
        )
    missing = [
        n for n in names if n in AUDIO_TRACKERS and importlib.util.find_spec(AUDIO_TRACKERS[n]) is None
    ]
    if missing:
        raise StyleGRPOError(
            f"report_to names {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install 'stylegrpo[{','.join(missing)}]', or pass --report_to none"
        )
    if "wandb" in names:
        check_wandb_login()
    others = [n for n in names if n not in AUDIO_TRACKERS]
    if others:
        log.info(
            "report_to %s: scalars only (audio samples go to tensorboard, trackio, wandb)", ", ".join(others)
        )
    return names


WANDB_LOCAL_MODES = ("offline", "disabled", "dryrun")  # WANDB_MODE values that need no account


def check_wandb_login() -> None:
    """wandb online needs an API key; without one the run would fail after every model loaded, with wandb's
    traceback. Asks wandb (``wandb.login``, no network: ``verify=False``) before anything loads, prompting
    only on a terminal, as wandb itself would."""
    if os.environ.get("WANDB_MODE", "").strip().lower() in WANDB_LOCAL_MODES:
        return
    import sys

    import wandb

    if not wandb.login(verify=False, prompt=sys.stdin is not None and sys.stdin.isatty()):
        raise StyleGRPOError(
            "report_to names wandb, but wandb has no API key: run `wandb login` (or set WANDB_API_KEY), or "
            "log offline with WANDB_MODE=offline (later: wandb sync OUTPUT_DIR/wandb/offline-run-*)"
        )


def set_tracker_environment(report_to: Sequence[str] | str | None, output_dir: Path, project: str) -> None:
    """Defaults for wandb, which reads them from the environment when the run starts: its files go into the
    output folder (``output_dir/wandb``, not the working directory) and its project is the recipe's
    ``project`` (trackio's too). A variable the user set wins."""
    if "wandb" in named_trackers(report_to):
        os.environ.setdefault("WANDB_DIR", str(output_dir))
        os.environ.setdefault("WANDB_PROJECT", project)


class StepTrackioCallback(TrackioCallback):
    """transformers' TrackioCallback with the optimizer step as trackio's step.

    The original logs without a step, so trackio numbers its entries 0, 1, 2...: the curves' x axis would
    be the count of logging calls, and audio logged at a step could not line up with them. Values and keys
    are the original's.
    """

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if not self._initialized:
            self.setup(args, state, model)
        if state.is_world_process_zero and logs:
            values = rewrite_logs({k: v for k, v in logs.items() if k not in _RUN_SUMMARY_KEYS})
            self._trackio.log({**values, "train/global_step": state.global_step}, step=state.global_step)


def align_trackio_steps(trainer: Any) -> None:
    """Put :class:`StepTrackioCallback` in the place of the Trainer's TrackioCallback, if it has one."""
    callbacks = trainer.callback_handler.callbacks
    for i, cb in enumerate(callbacks):
        if type(cb) is TrackioCallback:
            callbacks[i] = StepTrackioCallback()


def log_audio(trainer: Any, clips: Sequence[Clip], step: int) -> list[str]:
    """Send ``clips`` to every tracker the run reports to that takes audio; returns the trackers reached.

    Called on the main process only (the samples callback is); a tracker that is named but not running
    (e.g. its run already finished) is skipped.
    """
    if trainer is None or not clips:
        return []
    names = named_trackers(trainer.args.report_to)
    reached = []
    if "tensorboard" in names and _tensorboard(trainer, clips, step):
        reached.append("tensorboard")
    if "wandb" in names and _wandb(clips, step):
        reached.append("wandb")
    if "trackio" in names and _trackio(clips, step):
        reached.append("trackio")
    return reached


def _float(wav: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)


def _tensorboard(trainer: Any, clips: Sequence[Clip], step: int) -> bool:
    import torch
    from transformers.integrations import TensorBoardCallback

    writer = next(
        (cb.tb_writer for cb in trainer.callback_handler.callbacks if isinstance(cb, TensorBoardCallback)),
        None,
    )
    if writer is None:
        return False
    for clip in clips:
        writer.add_audio(clip.key, torch.from_numpy(_float(clip.wav)), step, sample_rate=SAMPLE_RATE)
        writer.add_text(
            clip.key, clip.caption, step
        )  # TensorBoard's audio has no caption: the text beside it
    writer.flush()
    return True


def _wandb(clips: Sequence[Clip], step: int) -> bool:
    import wandb

    if wandb.run is None:
        return False
    # transformers' WandbCallback plots every key against train/global_step (define_metric)
    values: dict[str, Any] = {
        c.key: wandb.Audio(_float(c.wav), sample_rate=SAMPLE_RATE, caption=c.caption) for c in clips
    }
    wandb.log({**values, "train/global_step": step})
    return True


def _trackio(clips: Sequence[Clip], step: int) -> bool:
    import trackio

    if trackio.context_vars.current_run.get() is None:
        return False
    values = {
        c.key: trackio.Audio(
            np.round(_float(c.wav) * PCM16_MAX).astype(np.int16), caption=c.caption, sample_rate=SAMPLE_RATE
        )
        for c in clips
    }
    trackio.log(values, step=step)
    return True
