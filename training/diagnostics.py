"""Training diagnostics over a batch whose rewards are complete: trade-offs and dominance, per style.

GRPO learns from differences WITHIN a group (the rollouts of one prompt), so that is where two rewards
trade off and where one reward can drive the updates:

- ``tradeoff/<a>~<b>/<style>``: Spearman rank correlation of rewards a and b within a group, over the
  rollouts that passed the guards (one value per group with a spread in both; averaged by the trainer's
  logging). Negative: the rollouts that score
  higher on a score lower on b, the two pull the policy apart (the origin's "CLAP vs NLL").
- ``dominance/<name>/<style>``: share of the within-group variance of the weighted total that reward
  ``name`` accounts for: w_k Cov(x_k, T) / Var(T), pooled over the style's groups, where x_k is the reward
  as the aggregation sees it (normalised per group under ``normalize_then_sum``, raw otherwise) and
  T = sum_k w_k x_k. The shares sum to 1; a reward near 1 drives the updates alone (the origin's "WER
  dominated"), a negative share works against the total.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

NORMALIZE_EPS = 1e-4  # TRL's epsilon in (x - mean) / (std + eps) for normalize_then_sum


def groups(keys: Sequence[Hashable]) -> list[list[int]]:
    """Indices of the completions that share a key (one prompt's rollouts), in first-seen order; groups of
    one are left out (no within-group difference)."""
    out: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return [g for g in out.values() if len(g) > 1]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tie = x == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (ties averaged); NaN when either side is constant or has < 2 values."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float(np.sum(rx * ry) / math.sqrt(np.sum(rx**2) * np.sum(ry**2)))


def pair_name(a: str, b: str) -> str:
    return f"{a}~{b}"


def tradeoffs(
    rewards: Mapping[str, Sequence[float]], group_list: Sequence[Sequence[int]]
) -> dict[str, list[float]]:
    """{``a~b``: [within-group Spearman of each group where both vary]} for every pair of rewards."""
    names = list(rewards)
    out: dict[str, list[float]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            vals = [spearman([rewards[a][j] for j in g], [rewards[b][j] for j in g]) for g in group_list]
            out[pair_name(a, b)] = [v for v in vals if math.isfinite(v)]
    return out


def _as_aggregated(x: np.ndarray, normalize: bool) -> np.ndarray:
    if not normalize:
        return x - np.nanmean(x)
    return (x - np.nanmean(x)) / (np.nanstd(x, ddof=1) + NORMALIZE_EPS) if len(x) > 1 else x * 0.0


def variance_shares(
    rewards: Mapping[str, Sequence[float]],
    weights: Mapping[str, float],
    group_list: Sequence[Sequence[int]],
    *,
    normalize: bool = True,
) -> dict[str, float]:
    """{reward: share of the pooled within-group variance of the weighted total} (NaN when the total never
    varies). Missing (None/NaN) values count as the group mean: they contribute nothing, as in TRL."""
    names = [n for n in weights if n in rewards]
    cov = dict.fromkeys(names, 0.0)
    var_total = 0.0
    for g in group_list:
        xs = {}
        for n in names:
            x = np.asarray([np.nan if rewards[n][j] is None else rewards[n][j] for j in g], dtype=np.float64)
            if np.all(np.isnan(x)):
                xs[n] = np.zeros(len(g))
                continue
            x = _as_aggregated(x, normalize)
            xs[n] = np.nan_to_num(x, nan=0.0)
        total = sum(weights[n] * xs[n] for n in names)
        total = total - total.mean()
        var_total += float(np.sum(total**2))
        for n in names:
            cov[n] += weights[n] * float(np.sum(xs[n] * total))
    if var_total <= 1e-12:
        return dict.fromkeys(names, math.nan)
    return {n: cov[n] / var_total for n in names}
