"""How well does each judge see each style? The numbers of ``stylegrpo audit`` (pure numpy).

Input per judge: a score matrix ``[n_clips, n_styles]`` (higher = more like that style; NaN where the judge
does not apply to a style, e.g. the acoustic judge for a style without targets) and each clip's true style.
Per style of the catalog the audit computes:

- **top-1 accuracy** among the styles the judge applies to (a clip is "heard as" the style with the highest
  score; when k styles tie for the top, each gets 1/k of the clip, so a judge that gives several styles the
  same score is not credited by catalog order);
- **ROC-AUC** of the style's score on its own clips against the other styles' clips (rank-based
  Mann-Whitney statistic, ties counted one half), and the same per other style (``pair_auc``): the style it
  can least tell apart is the one the verdict names;
- the **confusion matrix** (rows: true style, columns: the styles the judge applies to; fractional on ties);
- the **within-style spread** of the own-style score (standard deviation and interquartile range). GRPO
  learns from differences among the rollouts of one prompt; a judge that gives every clip of a style the
  same score teaches nothing there, so a flat style is flagged;
- per **description** (a judge with text embeddings, CLAP): each paraphrase's cosine distance to its own
  style's prototype (the mean of its OTHER paraphrases, so a paraphrase is not compared with itself) and to
  the nearest other style's prototype; a paraphrase nearer another style "points at" that style.

Each (judge, style) gets a one-line verdict. Thresholds are the named constants below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import stats

# -- thresholds of the verdicts (AUC bands after Hosmer & Lemeshow's usual reading of ROC areas:
#    0.5 chance, 0.7-0.8 acceptable, 0.8-0.9 excellent, >= 0.9 outstanding discrimination) -------------
SEPARATES_AUC = 0.8  # own-vs-other AUC at or above: "separates" (4 of 5 own/other pairs ranked right)
CONFUSED_AUC = 0.7  # a pairwise AUC below this ("poor" discrimination): "cannot tell A from B"
MIN_CLIPS_VERDICT = 4  # fewer own clips than this: one clip moves accuracy by > 25 points; no firm verdict
# A style's scores are "flat" when their standard deviation over its clips is below FLAT_REL_STD times the
# column's standard deviation over all clips (the judge ranks styles but barely ranks clips of one style,
# so group-normalised GRPO advantages would rest on tiny differences), or below FLAT_ABS_STD (numerically
# constant, e.g. an acoustic target score of exactly 1 for every clip inside its ranges).
FLAT_REL_STD = 0.05
FLAT_ABS_STD = 1e-6
MIN_CHOICES = 2  # top-1 accuracy needs at least two styles to choose from (else it is 1 by construction)
IQR_QUANTILES = (25.0, 75.0)
# auc_interval: resample weights held at once (~32 MB of float64), and the largest own x other pair matrix
# bootstrapped (larger: Hanley & McNeil's normal interval, which is accurate at such sizes)
AUC_BOOTSTRAP_CELLS = 4_000_000  # the interquartile range: the middle half of a style's scores


def _pair_matrix(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``[n_pos, n_neg]``: 1 where the positive scores higher, 0.5 on a tie, 0 below."""
    return (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])


def auc_interval(
    positive: Sequence[float] | np.ndarray,
    negative: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    seed: int = stats.DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``rank_auc``: own and other clips resampled separately (stratified),
    seeded (the same clips always give the same interval). NaN when either side has fewer than 2 values.

    A resample's AUC is w_pos^T C w_neg / (n_pos n_neg) with C the pair matrix and w the multinomial
    counts of each clip, so no resample re-ranks anything.
    """
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if pos.size < 2 or neg.size < 2:
        return math.nan, math.nan
    if pos.size * neg.size > AUC_BOOTSTRAP_CELLS:  # the pair matrix would be large: the normal approximation
        return _hanley_mcneil(rank_auc(pos, neg), pos.size, neg.size, confidence)
    c = _pair_matrix(pos, neg)
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_resamples)
    chunk = max(1, AUC_BOOTSTRAP_CELLS // max(pos.size, neg.size))  # resamples at a time: bounded memory
    for start in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - start)
        w_pos = rng.multinomial(pos.size, np.full(pos.size, 1.0 / pos.size), size=r)
        w_neg = rng.multinomial(neg.size, np.full(neg.size, 1.0 / neg.size), size=r)
        aucs[start : start + r] = np.einsum("ri,ri->r", w_pos @ c, w_neg) / (pos.size * neg.size)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(aucs, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _hanley_mcneil(auc: float, n_pos: int, n_neg: int, confidence: float) -> tuple[float, float]:
    """Normal interval from Hanley & McNeil's (1982) standard error of the AUC (good at large n)."""
    from statistics import NormalDist

    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    half = NormalDist().inv_cdf(0.5 + confidence / 2.0) * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def rank_auc(positive: Sequence[float] | np.ndarray, negative: Sequence[float] | np.ndarray) -> float:
    """P(score of a random positive > score of a random negative) + 0.5 P(equal), over finite values.

    The Mann-Whitney U statistic over n_pos * n_neg from mid-ranks (ties get their average rank, which is
    exactly the one-half credit for tied pairs). NaN when either side has no finite value.
    """
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    n_pos, n_neg = pos.size, neg.size
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _midranks(np.concatenate([pos, neg]))
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # start of each run of equal values, and the average rank of the run
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    avg = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spread(values: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """Standard deviation (population), interquartile range and count of the finite values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "iqr": math.nan}
    lo, hi = np.percentile(v, IQR_QUANTILES)
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "iqr": float(hi - lo)}


def top1_shares(scores: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """``[n_clips, len(columns)]``: 1 on the top-scoring column of each clip, 1/k each on k tied tops.

    NaN scores never win; a clip with no finite score among ``columns`` gets a row of zeros (unscored).
    """
    s = np.asarray(scores, dtype=np.float64)[:, list(columns)]
    out = np.zeros_like(s)
    if s.size == 0:
        return out
    finite = np.isfinite(s)
    filled = np.where(finite, s, -np.inf)
    best = filled.max(axis=1, keepdims=True)
    top = finite & (filled == best)
    counts = top.sum(axis=1, keepdims=True)
    np.divide(top.astype(np.float64), counts, out=out, where=counts > 0)
    return out


def audit_judge(
    scores: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
    styles: Sequence[str],
    *,
    name: str = "judge",
    applies: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """Every per-style number of one judge (see the module doc), with its verdicts.

    ``scores``: ``[n_clips, len(styles)]``; ``labels``: the true style of each clip (each one of ``styles``);
    ``applies``: which styles the judge scores (default: the columns with at least one finite score).
    """
    s = np.asarray(scores, dtype=np.float64)
    styles = list(styles)
    if s.ndim != 2 or s.shape != (len(labels), len(styles)):
        raise ValueError(
            f"judge {name}: scores must be [n_clips={len(labels)}, n_styles={len(styles)}], got {s.shape}"
        )
    index = {st: j for j, st in enumerate(styles)}
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        raise ValueError(f"labels {', '.join(unknown)} are not among the styles {', '.join(styles)}")
    y = np.array([index[lab] for lab in labels], dtype=np.int64)
    if applies is None:
        applies = np.isfinite(s).any(axis=0) if len(labels) else np.zeros(len(styles), bool)
    applies = np.asarray(applies, dtype=bool)
    cols = [j for j in range(len(styles)) if applies[j]]
    shares = top1_shares(s, cols)  # [n, len(cols)]
    confusion = np.zeros((len(styles), len(cols)))
    for j in range(len(styles)):
        confusion[j] = shares[y == j].sum(axis=0)

    per_style: dict[str, dict[str, Any]] = {}
    for j, style in enumerate(styles):
        own_mask = y == j
        n_own = int(own_mask.sum())
        row: dict[str, Any] = {"applies": bool(applies[j]), "n_clips": n_own}
        if not applies[j]:
            row.update(
                auc=math.nan,
                auc_low=math.nan,
                auc_high=math.nan,
                accuracy=math.nan,
                pair_auc={},
                least_separated=None,
                least_separated_auc=math.nan,
            )
            row.update({f"own_{k}": v for k, v in spread([]).items() if k != "n"}, flat=False)
            row["verdict"] = (
                f"judge {name} does not score `{style}` (nothing in the catalog for it to measure)"
            )
            row["verdict_kind"] = NOT_SCORED
            per_style[style] = row
            continue
        col = s[:, j]
        own, other = col[own_mask], col[~own_mask]
        pair = {}
        for k, other_style in enumerate(styles):
            if k != j and (y == k).any():
                pair[other_style] = rank_auc(own, col[y == k])
        finite_pairs = {k: v for k, v in pair.items() if math.isfinite(v)}
        least = min(finite_pairs, key=lambda k: (finite_pairs[k], styles.index(k))) if finite_pairs else None
        sp = spread(own)
        col_std = spread(col)["std"]
        flat = bool(
            sp["n"] >= 2
            and (sp["std"] < FLAT_ABS_STD or (math.isfinite(col_std) and sp["std"] < FLAT_REL_STD * col_std))
        )
        n_scored = float(shares[own_mask].sum()) if n_own else 0.0
        # top-1 among fewer than MIN_CHOICES styles is a foregone conclusion, not a measurement
        ranked = n_own and n_scored and len(cols) >= MIN_CHOICES
        acc = float(shares[own_mask, cols.index(j)].sum() / n_own) if ranked else math.nan
        auc_low, auc_high = auc_interval(own, other)
        row.update(
            auc=rank_auc(own, other),
            auc_low=auc_low,
            auc_high=auc_high,
            accuracy=acc,
            pair_auc=pair,
            least_separated=least,
            least_separated_auc=finite_pairs[least] if least else math.nan,
            own_mean=sp["mean"],
            own_std=sp["std"],
            own_iqr=sp["iqr"],
            flat=flat,
        )
        row["verdict"] = verdict(name, style, row)
        row["verdict_kind"] = verdict_kind(row)
        per_style[style] = row

    scored = [st for st in styles if per_style[st]["applies"] and per_style[st]["n_clips"]]
    diag = sum(confusion[index[st], cols.index(index[st])] for st in scored)
    total = sum(float(confusion[index[st]].sum()) for st in scored)
    aucs = [per_style[st]["auc"] for st in scored if math.isfinite(per_style[st]["auc"])]
    return {
        "name": name,
        "styles": per_style,
        "applies_to": [styles[j] for j in cols],
        "confusion": {"rows": styles, "columns": [styles[j] for j in cols], "matrix": confusion.tolist()},
        "accuracy": float(diag / total) if total and len(cols) >= MIN_CHOICES else math.nan,
        "mean_auc": float(np.mean(aucs)) if aucs else math.nan,
        "n_clips": len(labels),
    }


SEPARATES, WEAK, CONFUSED, NOT_SEPARATED, NOT_SCORED, NO_DATA = (
    "separates",
    "weak",
    "confused",
    "not_separated",
    "not_scored",
    "no_data",
)  # the kinds of verdict (``verdict_kind``): colours in the report, filters in scripts


def verdict_kind(row: Mapping[str, Any]) -> str:
    """Which verdict an ``audit_judge`` row gets (one of the kinds above)."""
    if not row.get("applies", True):
        return NOT_SCORED
    auc = row["auc"]
    if row["n_clips"] == 0 or not math.isfinite(auc):
        return NO_DATA
    least_auc = row.get("least_separated_auc", math.nan)
    if row.get("least_separated") is not None and math.isfinite(least_auc) and least_auc < CONFUSED_AUC:
        return CONFUSED
    if auc >= SEPARATES_AUC:
        return SEPARATES
    return WEAK if auc >= CONFUSED_AUC else NOT_SEPARATED


def verdict(judge: str, style: str, row: Mapping[str, Any]) -> str:
    """One line on how well ``judge`` sees ``style`` (from an ``audit_judge`` row)."""
    auc, n = row["auc"], row["n_clips"]
    kind = verdict_kind(row)
    if n == 0:
        return f"judge {judge}: no clips of `{style}` to judge"
    if kind == NO_DATA:
        return f"judge {judge}: no clips of other styles (or no finite scores) to compare `{style}` with"
    few = (
        f" (only {n} clip{'s' if n != 1 else ''}: too few for a firm verdict)"
        if n < MIN_CLIPS_VERDICT
        else ""
    )
    flat = (
        f"; but its score barely varies among `{style}` clips (std {row['own_std']:.3g}): GRPO would learn "
        "little from within-style differences"
        if row.get("flat")
        else ""
    )
    least, least_auc = row.get("least_separated"), row.get("least_separated_auc", math.nan)
    if kind == CONFUSED:
        return (
            f"judge {judge} cannot tell `{style}` from `{least}` (pairwise AUC {least_auc:.2f}, overall "
            f"{auc:.2f}): consider merging, rewording, or acoustic targets{few}{flat}"
        )
    if kind == SEPARATES:
        return f"judge {judge} separates this style: AUC {auc:.2f}{_interval(row)}{few}{flat}"
    if kind == WEAK:
        return f"judge {judge} separates `{style}` only weakly: AUC {auc:.2f}{_interval(row)}{few}{flat}"
    return (
        f"judge {judge} does not separate `{style}` from the other styles: AUC {auc:.2f}; consider "
        f"rewording, or acoustic targets{few}{flat}"
    )


def _interval(row: Mapping[str, Any]) -> str:
    lo, hi = row.get("auc_low", math.nan), row.get("auc_high", math.nan)
    return f" [95 % interval {lo:.2f}-{hi:.2f}]" if math.isfinite(lo) and math.isfinite(hi) else ""


def description_audit(
    descriptions: Mapping[str, Sequence[str]], embeddings: Mapping[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Per paraphrase: cosine distance to its own style's prototype and to the nearest other style's.

    ``embeddings[style]``: ``[len(descriptions[style]), D]`` text embeddings. A style's prototype is the
    re-normalised mean of its paraphrases (as CLAP's style judge builds it); a paraphrase is compared with
    the prototype of its style's OTHER paraphrases (with a single paraphrase there is none: distance NaN).
    ``points_elsewhere``: it is nearer another style's prototype than its own.
    """
    names = list(descriptions)
    if len(names) == 0:
        return []
    vecs = {st: _unit(np.asarray(embeddings[st], dtype=np.float64)) for st in names}
    for st in names:
        if vecs[st].shape[0] != len(descriptions[st]):
            raise ValueError(
                f"style {st}: {vecs[st].shape[0]} embeddings for {len(descriptions[st])} descriptions"
            )
    protos = {st: _unit(vecs[st].mean(axis=0, keepdims=True))[0] for st in names}
    out = []
    for st in names:
        v = vecs[st]
        for i, text in enumerate(descriptions[st]):
            if len(v) > 1:
                rest = _unit(np.delete(v, i, axis=0).mean(axis=0, keepdims=True))[0]
                d_own = float(1.0 - v[i] @ rest)
            else:
                d_own = math.nan
            others = {o: float(1.0 - v[i] @ protos[o]) for o in names if o != st}
            nearest = min(others, key=lambda o: (others[o], names.index(o))) if others else None
            d_other = others[nearest] if nearest else math.nan
            out.append(
                {
                    "style": st,
                    "description": text,
                    "distance_own": d_own,
                    "nearest_other": nearest,
                    "distance_nearest_other": d_other,
                    "margin": d_other - d_own,
                    "points_elsewhere": bool(
                        math.isfinite(d_own) and nearest is not None and d_other < d_own
                    ),
                }
            )
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def description_verdicts(rows: Sequence[Mapping[str, Any]], judge: str) -> list[str]:
    """One line per paraphrase that points at another style."""
    return [
        f"judge {judge}: description “{r['description']}” of `{r['style']}` sits nearer `{r['nearest_other']}` "
        f"(distance {r['distance_nearest_other']:.3f}) than its own style ({r['distance_own']:.3f}): reword it"
        for r in rows
        if r["points_elsewhere"]
    ]


THRESHOLDS = {
    "separates_auc": SEPARATES_AUC,
    "confused_auc": CONFUSED_AUC,
    "min_clips_verdict": MIN_CLIPS_VERDICT,
    "flat_rel_std": FLAT_REL_STD,
    "flat_abs_std": FLAT_ABS_STD,
}

__all__ = [
    "CONFUSED_AUC",
    "MIN_CHOICES",
    "FLAT_ABS_STD",
    "FLAT_REL_STD",
    "MIN_CLIPS_VERDICT",
    "SEPARATES_AUC",
    "THRESHOLDS",
    "audit_judge",
    "auc_interval",
    "description_audit",
    "description_verdicts",
    "rank_auc",
    "spread",
    "top1_shares",
    "verdict",
    "verdict_kind",
]
