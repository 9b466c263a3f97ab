"""Trainer callbacks: per-style metric history (survives resume) and audio samples per style."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from stylegrpo.audio import write_wav

log = logging.getLogger(__name__)

STATE_FILENAME = "stylegrpo_state.json"  # written into each checkpoint-N folder
METRICS_FILENAME = "style_metrics.jsonl"  # output_dir: one line per logging step
SAMPLES_DIRNAME = "samples"
# Per-style quality and training diagnostics (training/rewards.py, training/diagnostics.py): kept with
# their prefix in the per-style summaries, so dominance/cer is never confused with rewards/cer.
DIAGNOSTIC_PREFIXES = ("quality/", "tradeoff/", "dominance/", "asr_hallucinated/", "dropped/")
# Logged keys that are per style (see training/rewards.py); TRL's own rewards/<name>/mean|std are not.
STYLE_PREFIXES = (
    "rewards/",
    "reward_by_style/",
    "acoustic/",
    "guarded/",
    "duration_s/",
    *DIAGNOSTIC_PREFIXES,
)
_TRL_SUFFIXES = ("/mean", "/std")


def style_keys(logs: dict[str, Any]) -> dict[str, float]:
    """The per-style entries of a log dict (rewards/<name>/<style>, reward_by_style/<style>, acoustic/...)."""
    out = {}
    for key, value in logs.items():
        if not key.startswith(STYLE_PREFIXES) or key.endswith(_TRL_SUFFIXES):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


class StyleMetricsCallback(TrainerCallback):
    """Keeps the per-style rewards of every logging step, writes them to style_metrics.jsonl, and logs
    a one-line summary per style. Its history is saved into each checkpoint and restored on resume, so
    an interrupted run continues the same file with nothing lost and nothing duplicated.
    """

    def __init__(self, output_dir: str | os.PathLike[str], styles: list[str] | None = None):
        self.output_dir = Path(output_dir)
        self.styles = list(styles or [])
        self.history: list[dict[str, Any]] = []

    # -- state across checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "history": self.history}

    def restore(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load the history saved with ``checkpoint`` (or rebuild it from its trainer_state.json)."""
        folder = Path(checkpoint)
        saved = folder / STATE_FILENAME
        history = None
        if saved.is_file():
            try:
                history = list(json.loads(saved.read_text())["history"])
            except (OSError, ValueError, KeyError, TypeError):  # killed while writing it: rebuild below
                log.warning("%s: unreadable; the per-style history is rebuilt from trainer_state.json", saved)
        if history is not None:
            self.history = history
        else:  # no (whole) state file, e.g. from before this callback existed: TRL's log_history has the values
            state = json.loads((folder / "trainer_state.json").read_text())
            self.history = [
                {"step": e["step"], **style_keys(e)} for e in state.get("log_history", []) if style_keys(e)
            ]
        self._rewrite()

    def _rewrite(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.output_dir / f".{METRICS_FILENAME}.tmp"
        tmp.write_text("".join(json.dumps(e) + "\n" for e in self.history))
        os.replace(tmp, self.output_dir / METRICS_FILENAME)

    # -- events ---------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            # After a resume, steps logged after the checkpoint (before the interruption) are dropped
            self.history = [e for e in self.history if e["step"] <= state.global_step]
            self._rewrite()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        values = style_keys(logs)
        if not values:
            return
        entry = {"step": state.global_step, **values}
        self.history.append(entry)
        with open(self.output_dir / METRICS_FILENAME, "a") as f:
            f.write(json.dumps(entry) + "\n")
        for style, parts in sorted(_by_style(values).items()):  # detail for -v: the trackers plot them
            log.debug(
                "step %d %s: %s",
                state.global_step,
                style,
                ", ".join(f"{k} {v:.3f}" for k, v in parts.items()),
            )

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            tmp = folder / f".{STATE_FILENAME}.tmp"  # whole or absent: a kill mid-write leaves no torn file
            tmp.write_text(json.dumps(self.state_dict()))
            os.replace(tmp, folder / STATE_FILENAME)

    def last_by_style(self) -> dict[str, dict[str, float]]:
        """The latest value of each per-style metric, grouped by style (for the model card)."""
        latest: dict[str, float] = {}
        for entry in self.history:
            latest.update({k: v for k, v in entry.items() if k != "step"})
        return _by_style(latest)


def _by_style(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """{'rewards/cer/sad': 0.5, 'reward_by_style/sad': 1.2} -> {'sad': {'cer': 0.5, 'total': 1.2}}."""
    out: dict[str, dict[str, float]] = {}
    for key, value in values.items():
        parts = key.split("/")
        style = parts[-1]
        if parts[0] == "reward_by_style":
            name = "total"
        elif len(parts) == 2:
            name = parts[0]
        elif parts[0] == "acoustic":
            name = parts[1]
        elif f"{parts[0]}/" in DIAGNOSTIC_PREFIXES:
            name = "/".join(parts[:-1])
        else:
            name = "/".join(parts[1:-1])
        out.setdefault(style, {})[name] = value
    return out


@dataclass
class Sample:
    """One decoded training completion kept for listening."""

    step: int
    wav: Any
    text: str
    style: str
    description: str | None
    flag: str | None
    codes: int
    rewards: dict[str, float]


class AudioSamplesCallback(TrainerCallback):
    """Every ``every`` steps, saves the ``per_style`` most recent decoded training completions of EVERY
    style seen so far to ``output_dir/samples/step-XXXXX/<style>_<k>.wav`` with a ``.txt`` beside each
    (step, text, description, guard, rewards), and to the trackers in ``report_to`` as playable audio
    (training/trackers.py: TensorBoard, wandb, trackio).
    Completions that passed the guards are preferred. The audio is what the rewards already decoded: no
    extra generation or decoding, only references kept between steps.
    """

    def __init__(
        self, output_dir: str | os.PathLike[str], cache: Any, *, every: int = 50, per_style: int = 2
    ):
        self.output_dir = Path(output_dir)
        self.cache = cache
        self.every = int(every)
        self.per_style = int(per_style)
        self.trainer: Any = None  # set after the trainer exists (its report_to and tracker callbacks)
        self.recent: dict[str, list[Sample]] = {}
        self._seen: int | None = None  # id of the last batch harvested

    def on_step_end(self, args, state, control, **kwargs):
        if self.every <= 0 or not state.is_world_process_zero:
            return
        self.harvest(state.global_step)
        if state.global_step % self.every == 0:
            self.save(state.global_step)

    def harvest(self, step: int) -> None:
        """Keep the newest decodable completions of each style from the latest batch."""
        batch = self.cache.last
        if batch is None or id(batch) == self._seen:
            return
        self._seen = id(batch)
        for valid in (False, True):  # guarded ones first, so passing ones end up newest
            for i in range(len(batch)):
                if (batch.flags[i] is None) != valid or not batch.wavs[i].size:
                    continue
                style = batch.styles[i] or "unknown"
                kept = self.recent.setdefault(style, [])
                if not valid and any(k.flag is None for k in kept):
                    continue  # never let a guarded clip push out one that passed
                rewards = {
                    name: None if vals[i] is None else round(vals[i], 4)
                    for name, vals in batch.rewards.items()
                }
                kept.append(
                    Sample(
                        step,
                        batch.wavs[i],
                        batch.texts[i],
                        style,
                        batch.descriptions[i],
                        batch.flags[i],
                        len(batch.codes[i]),
                        rewards,
                    )
                )
                del kept[: -self.per_style]

    def save(self, step: int) -> Path | None:
        from stylegrpo.outputs import atomic_output_dir

        from .trackers import Clip, clip_key, log_audio

        if not self.recent:
            return None
        folder = self.output_dir / SAMPLES_DIRNAME / f"step-{step:05d}"
        clips = []
        with atomic_output_dir(folder, overwrite=True, command="train") as tmp:
            for style, kept in sorted(self.recent.items()):
                for k, sample in enumerate(reversed(kept)):  # _0 is the newest
                    write_wav(tmp / f"{style}_{k}.wav", sample.wav)
                    lines = [
                        f"step: {sample.step}",
                        f"text: {sample.text}",
                        f"style: {style}",
                        f"description: {sample.description}",
                        f"guard: {sample.flag or 'passed'}",
                        f"codes: {sample.codes}",
                        f"rewards: {json.dumps(sample.rewards)}",
                    ]
                    (tmp / f"{style}_{k}.txt").write_text("\n".join(lines) + "\n")
                    clips.append(Clip(clip_key(style, k), sample.wav, caption(sample)))
        # the trackers in report_to play them (training/trackers.py)
        log_audio(self.trainer, clips, step)
        return folder


def caption(sample: Sample) -> str:
    """One line under a clip in a tracker: style, rollout step, guard, rewards and the text spoken."""
    rewards = ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in sample.rewards.items())
    return (
        f"{sample.style} (rollout of step {sample.step}, {sample.flag or 'passed'}; {rewards}): "
        f"{sample.text!r}, as {sample.description!r}"
    )
