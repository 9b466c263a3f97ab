"""Which ``checkpoint-N`` folders a run can resume from: the newest COMPLETE one, never a half-written one.

A checkpoint is written by ``Trainer._save_checkpoint`` in this order: the adapter (``save_model``), the
optimizer and scheduler, the scaler and RNG states, and ``trainer_state.json`` LAST; our
``StyleMetricsCallback`` adds ``stylegrpo_state.json`` after that (optional: the history is rebuilt from
``trainer_state.json`` without it). A process killed in between leaves a folder that
``transformers.trainer_utils.get_last_checkpoint`` still picks, and resuming from it fails
(``FileNotFoundError: trainer_state.json``). Complete means what ``Trainer._load_from_checkpoint``,
``_load_optimizer_and_scheduler`` and ``TrainerState.load_from_json`` read:

* ``trainer_state.json``: whole JSON with a ``global_step``;
* the adapter: ``adapter_config.json`` (whole JSON) and ``adapter_model.safetensors`` whose header and
  data are all there (or ``adapter_model.bin``);
* unless the run saves only the model (``save_only_model``): the optimizer (``optimizer.pt``/``.bin``, or
  DeepSpeed's ``global_stepN/`` folder) and the scheduler (``scheduler.pt``; DeepSpeed keeps its own in
  ``global_stepN/``).

The RNG state is not required (the Trainer resumes without it, only less reproducibly).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from stylegrpo.errors import StyleGRPOError

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR + "-" + step
TRAINER_STATE = "trainer_state.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")
SCHEDULER_FILE = "scheduler.pt"
DEEPSPEED_DIR_PREFIX = "global_step"  # DeepSpeed's engine.save_checkpoint folder (optimizer + scheduler)
SAFETENSORS_HEADER_BYTES = 8  # a little-endian u64: the length of the JSON header that follows


def _json_file(path: Path) -> object | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _safetensors_whole(path: Path) -> bool:
    """The file holds its whole header and every tensor's bytes (a cut-short write does not)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(SAFETENSORS_HEADER_BYTES)
            if len(head) < SAFETENSORS_HEADER_BYTES:
                return False
            n = int.from_bytes(head, "little")
            if n <= 0 or SAFETENSORS_HEADER_BYTES + n > size:
                return False
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return False
    if not isinstance(header, dict):
        return False
    try:
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
    except (TypeError, KeyError, IndexError, ValueError):
        return False
    return SAFETENSORS_HEADER_BYTES + n + end == size


def checkpoint_problem(folder: str | Path, *, need_optimizer: bool = True) -> str | None:
    """What makes ``folder`` not a complete checkpoint to resume from, or None when it is complete."""
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    state = _json_file(folder / TRAINER_STATE)
    if state is None:
        if not (folder / TRAINER_STATE).is_file():
            return f"no {TRAINER_STATE} (written last: the save did not finish)"
        return f"{TRAINER_STATE} is cut short or unreadable"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"{TRAINER_STATE} has no global_step"
    if not isinstance(_json_file(folder / ADAPTER_CONFIG), dict):
        return f"no readable {ADAPTER_CONFIG} (the adapter)"
    weights = [folder / name for name in ADAPTER_WEIGHTS if (folder / name).is_file()]
    if not weights:
        return f"no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})"
    if weights[0].suffix == ".safetensors" and not _safetensors_whole(weights[0]):
        return f"{weights[0].name} is cut short"
    if need_optimizer:
        deepspeed = any(p.is_dir() and p.name.startswith(DEEPSPEED_DIR_PREFIX) for p in folder.iterdir())
        if not deepspeed and not any((folder / name).is_file() for name in OPTIMIZER_FILES):
            return f"no optimizer state ({' or '.join(OPTIMIZER_FILES)})"
        if not deepspeed and not (folder / SCHEDULER_FILE).is_file():
            return f"no scheduler state ({SCHEDULER_FILE})"
    return None


def checkpoint_folders(output_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, newest (highest N) first."""
    if not output_dir.is_dir():
        return []
    found = []
    for p in output_dir.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def last_complete_checkpoint(output_dir: Path, *, need_optimizer: bool = True) -> Path:
    """The newest complete checkpoint of ``output_dir``; newer partial ones are skipped with a warning."""
    skipped = []
    for folder in checkpoint_folders(output_dir):
        problem = checkpoint_problem(folder, need_optimizer=need_optimizer)
        if problem is None:
            for name, why in skipped:
                log.warning("resume: skipping %s, a partial checkpoint (%s)", name, why)
            return folder
        skipped.append((folder.name, problem))
    if not skipped:
        raise StyleGRPOError(
            f"{output_dir}: no checkpoint-N folder to resume from; train without --resume_from_checkpoint, "
            "or pass the checkpoint folder"
        )
    listed = "; ".join(f"{name}: {why}" for name, why in skipped)
    raise StyleGRPOError(
        f"{output_dir}: no complete checkpoint to resume from ({listed}); start again with --overwrite, "
        "or train into another --output-dir"
    )


def discard_partial_checkpoints(
    output_dir: Path, resume: str | Path, *, need_optimizer: bool = True
) -> list[str]:
    """Remove the partial checkpoints newer than ``resume`` (main process only); return their names.

    Resuming redoes their steps, and the Trainer writes those checkpoints again; left in place, a partial
    folder would take one of ``save_total_limit``'s places and push a complete checkpoint out.
    """
    m = CHECKPOINT_RE.match(Path(resume).name)
    if m is None or Path(resume).resolve().parent != output_dir.resolve():
        return []
    removed = []
    for folder in checkpoint_folders(output_dir):
        step = int(CHECKPOINT_RE.match(folder.name).group(1))
        if step <= int(m.group(1)):
            break
        problem = checkpoint_problem(folder, need_optimizer=need_optimizer)
        if problem is not None:
            log.warning(
                "resume: removing %s, a partial checkpoint (%s); its steps are redone", folder.name, problem
            )
            shutil.rmtree(folder)
            removed.append(folder.name)
    return removed


def check_checkpoint(folder: str | Path, *, need_optimizer: bool = True) -> Path:
    """An explicitly given checkpoint folder, refused with what is missing when it is not complete."""
    problem = checkpoint_problem(folder, need_optimizer=need_optimizer)
    if problem is not None:
        raise StyleGRPOError(
            f"{folder}: not a complete training checkpoint ({problem}); pass a complete checkpoint-N folder, "
            "or --resume_from_checkpoint true for the newest complete one"
        )
    return Path(folder)
