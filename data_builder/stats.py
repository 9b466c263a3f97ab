"""Per-split counts and length statistics, kept as histograms: exact quantiles in constant memory."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cleaning import estimated_seconds

QUANTILES = (0.5, 0.95)  # median and 95th percentile in the card


def _add_hist(hist: np.ndarray, values: np.ndarray) -> np.ndarray:
    counts = np.bincount(values, minlength=len(hist))
    if len(counts) > len(hist):
        hist = np.pad(hist, (0, len(counts) - len(hist)))
    hist[: len(counts)] += counts
    return hist


def hist_summary(hist: np.ndarray) -> dict[str, float]:
    """min, mean, median, p95, max of the values counted in ``hist`` (value = index)."""
    total = int(hist.sum())
    if not total:
        return {}
    values = np.nonzero(hist)[0]
    cum = np.cumsum(hist)
    out = {"min": float(values[0]), "mean": float((np.arange(len(hist)) * hist).sum() / total)}
    for q in QUANTILES:
        out[f"p{round(q * 100)}"] = float(np.searchsorted(cum, q * total))
    out["max"] = float(values[-1])
    return out


@dataclass
class SplitStats:
    split: str
    styles: list[str]
    texts: int = 0
    rows: int = 0
    style_rows: np.ndarray = field(init=False)
    chars: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    words: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))

    def __post_init__(self) -> None:
        self.style_rows = np.zeros(len(self.styles), dtype=np.int64)

    def add_texts(self, chars: np.ndarray, words: np.ndarray) -> None:
        self.texts += len(chars)
        self.chars = _add_hist(self.chars, chars.astype(np.int64))
        self.words = _add_hist(self.words, words.astype(np.int64))

    def add_rows(self, style_idx: np.ndarray) -> None:
        self.rows += len(style_idx)
        self.style_rows += np.bincount(style_idx, minlength=len(self.styles))

    def lengths(self) -> dict[str, dict[str, float]]:
        chars = hist_summary(self.chars)
        return {
            "chars": chars,
            "words": hist_summary(self.words),
            "seconds": {k: float(estimated_seconds(v)) for k, v in chars.items()},
        }
