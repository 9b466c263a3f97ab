"""What every judge shares: lazy model loading, device and dtype choice, input checks, batching."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import StyleGRPOError

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16  # clips per forward pass: fits the real judges on a 24 GB GPU beside the policy


class ScorerError(StyleGRPOError):
    """A judge cannot be used as asked (bad spec, broken checkpoint, bad input); the message says why."""


def resolve_torch_device(device: Any) -> Any:
    """``"auto"`` -> cuda when available else cpu; anything else is handed to ``torch.device``."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ScorerError(f"invalid device {device!r}: {e} (use cpu, cuda, cuda:N or auto)") from None


def resolve_dtype(dtype: Any, device: Any) -> Any:
    """``None``/"auto": bf16 on a CUDA device that supports it (half the memory, plenty for judging),
    fp32 elsewhere. A string like "float16" or a torch.dtype is taken as given."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ScorerError(f"invalid dtype {dtype!r} (use auto, float32, bfloat16 or float16)")
    return value


def as_waveforms(wavs: Sequence[Any] | np.ndarray) -> list[np.ndarray]:
    """A list of 1-D float32 arrays from a list of arrays (or one 2-D array of equal-length clips).

    Non-finite samples (NaN/inf from a broken decode) become 0 so one bad clip cannot poison a batch.
    """
    if isinstance(wavs, np.ndarray):
        if wavs.ndim == 1:
            raise ScorerError("expected a batch of waveforms (a list of 1-D arrays), got one 1-D array")
        wavs = list(wavs)
    out = []
    for i, w in enumerate(wavs):
        a = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w, dtype=np.float32)
        if a.ndim != 1:
            a = np.squeeze(a)
            if a.ndim != 1:
                raise ScorerError(f"waveform #{i} has shape {np.shape(w)}; each clip must be 1-D mono audio")
        if not np.all(np.isfinite(a)):
            a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        out.append(a)
    return out


def check_same_length(name_a: str, a: Sequence[Any], name_b: str, b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ScorerError(f"got {len(a)} {name_a} but {len(b)} {name_b}; give one per clip")


def batched(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    """(start index, chunk) pairs of at most ``size`` items."""
    size = max(1, int(size))
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def fixed_windows(wav: np.ndarray, window: int) -> list[np.ndarray]:
    """A clip longer than ``window`` samples as ceil(L / W) windows of exactly W samples at fixed, evenly
    spaced starts (the first at 0, the last ending at the clip's end); a shorter clip as itself. The same
    clip always gives the same windows (judges with a fixed input window: CLAP, AST)."""
    n = len(wav)
    if n <= window:
        return [wav]
    count = math.ceil(n / window)
    starts = np.round(np.linspace(0, n - window, count)).astype(int)
    return [wav[s : s + window] for s in starts]


def window_pieces(
    wavs: Sequence[np.ndarray], window: int, min_len: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every clip zero-padded to at least ``min_len`` samples and cut by :func:`fixed_windows`: the windows
    of all clips in order, and for each window the index of its clip (for :func:`sum_over_windows`)."""
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    for i, w in enumerate(wavs):
        if w.size < min_len:
            w = np.concatenate([w, np.zeros(min_len - w.size, dtype=np.float32)])
        for piece in fixed_windows(w, window):
            pieces.append(piece)
            owner.append(i)
    return pieces, np.asarray(owner)


def sum_over_windows(values: np.ndarray, owner: np.ndarray, n_clips: int) -> np.ndarray:
    """[n_clips, D] sums of the rows of ``values`` (one per window) that belong to each clip."""
    total = np.zeros((n_clips, values.shape[1]), dtype=values.dtype)
    np.add.at(total, owner, values)
    return total


def order_by_length(wavs: Sequence[np.ndarray]) -> list[int]:
    """Indices sorted by clip length (longest first), so each batch pads as little as possible."""
    return sorted(range(len(wavs)), key=lambda i: -len(wavs[i]))


class LazyScorer:
    """Base of the model-backed judges: nothing is loaded until the first call that needs the model."""

    default_spec: str = ""  # each judge's default checkpoint (hub id), used when no spec is given
    # each judge's dtype when none (or "auto") is asked for; None: resolve_dtype's auto (bf16 on CUDA)
    default_dtype: str | None = None

    def __init__(
        self,
        spec: str | None = None,
        device: Any = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
        dtype: Any = None,
    ):
        spec = self.default_spec if spec is None else spec
        if not isinstance(spec, str) or not spec.strip():
            raise ScorerError(f"{type(self).__name__}: model spec must be a hub id, a folder or tiny:KIND")
        self.spec = spec
        self._device_arg = device
        self._dtype_arg = dtype
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ScorerError(f"{type(self).__name__}: batch_size must be >= 1 (got {batch_size})")
        self._loaded = False

    @property
    def device(self) -> Any:
        return resolve_torch_device(self._device_arg)

    @property
    def dtype(self) -> Any:
        asked = self._dtype_arg
        return resolve_dtype(self.default_dtype if asked in (None, "auto") else asked, self.device)

    @property
    def loaded(self) -> bool:
        return self._loaded

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            from ..tiny import resolve_model

            path = resolve_model(self.spec)
            log.debug("%s: loading %s on %s", type(self).__name__, self.spec, self.device)  # -v: detail
            self._load(path)
            self._loaded = True

    def _load(self, path: str) -> None:  # pragma: no cover - every subclass implements it
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, device={str(self._device_arg)!r}, batch_size={self.batch_size})"


def train_tiny_bpe(
    corpus: Sequence[str], vocab_size: int, special_tokens: Sequence[str]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of a byte-level BPE trained locally on ``corpus`` (for tiny-twin tokenizers
    of the GPT-2 family: Roberta for CLAP, Whisper)."""
    import json
    import tempfile
    from pathlib import Path

    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        list(corpus) * 4, vocab_size=vocab_size, min_frequency=1, special_tokens=list(special_tokens)
    )
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        vocab = json.loads((Path(tmp) / "vocab.json").read_text())
        merges = [
            tuple(line.split())
            for line in (Path(tmp) / "merges.txt").read_text().splitlines()
            if line and not line.startswith("#")
        ]
    return vocab, merges
