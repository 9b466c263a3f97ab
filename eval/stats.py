"""Means with percentile-bootstrap confidence intervals, and paired differences (adapter minus base).

Everything here is plain numpy and deterministic: the resampling generator is seeded, so the same numbers
always give the same interval. NaN values (a measure that does not exist for a clip, e.g. the pitch of a
silent clip) are left out, and ``n`` says how many values were used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000  # percentile bootstrap: 2000 resamples keep the 2.5/97.5 % quantiles stable to ~1 %
DEFAULT_CONFIDENCE = 0.95  # the usual two-sided 95 % interval
DEFAULT_SEED = 0  # a fixed resampling seed: the same data always gives the same interval
_MAX_CELLS = 4_000_000  # resample in chunks of at most this many values (bounds memory for large n)


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval over ``n`` values (``low``/``high`` are NaN when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _clean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def _bootstrap_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = values.size
    chunk = max(1, _MAX_CELLS // n)
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Mean of the finite ``values`` with a percentile-bootstrap interval.

    With no finite value everything is NaN (n = 0); with one value the interval is NaN (one sample says
    nothing about spread). Identical values give a zero-width interval.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    arr = _clean(values)
    n = int(arr.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(arr.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    if np.all(arr == arr[0]):  # every resample has the same mean: skip the work (and float noise)
        return Interval(mean, mean, mean, n)
    means = _bootstrap_means(arr, n_resamples, np.random.default_rng(seed))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    # a percentile interval always brackets the sample mean for the mean statistic up to resampling noise;
    # clamp that noise so the reported interval never excludes the reported mean
    return Interval(mean, float(min(low, mean)), float(max(high, mean)), n)


def paired_difference(
    treated: Sequence[float] | np.ndarray,
    control: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Mean of ``treated - control`` over pairs (same item, same seed) with a paired bootstrap interval.

    Resampling is over pairs, so the item-to-item spread that both share cancels. Pairs where either
    value is not finite are left out (``n`` counts the pairs used).
    """
    t = np.asarray(treated, dtype=np.float64).ravel()
    c = np.asarray(control, dtype=np.float64).ravel()
    if t.shape != c.shape:
        raise ValueError(f"paired values need the same length, got {t.size} and {c.size}")
    keep = np.isfinite(t) & np.isfinite(c)
    return bootstrap_mean(t[keep] - c[keep], n_resamples=n_resamples, confidence=confidence, seed=seed)


def excludes_zero(interval: Interval) -> int:
    """+1 when the interval lies entirely above 0, -1 entirely below, 0 otherwise (or undefined)."""
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return 0
    if interval.low > 0:
        return 1
    if interval.high < 0:
        return -1
    return 0
