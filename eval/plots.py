"""Plots for the eval report (matplotlib, Agg backend, PNG written atomically).

- ``metric_bars``: per style, base vs adapter means with their 95 % intervals, one figure per metric.
- ``difference_forest``: adapter minus base per style with the paired interval, one panel per metric.
- ``confusion_heatmap``: true style x predicted style, row shares with counts written in the cells.
- ``reward_curves``: training rewards per style against the step, from TRL's trainer_state.json.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stylegrpo.outputs import atomic_write_bytes

from .confusion import row_normalize
from .metrics import ADAPTER, BASE, OVERALL, Metric, find_row

log = logging.getLogger(__name__)

DPI = 110  # readable in a browser at 100 % zoom without making the PNGs heavy
MODEL_COLORS = {BASE: "#9e9e9e", ADAPTER: "#1f6fb4"}  # grey = before, blue = after: same in every plot
BETTER_COLOR, WORSE_COLOR, NEUTRAL_COLOR = "#2e7d32", "#c62828", "#555555"  # green/red/grey differences
BAR_WIDTH = 0.38  # two bars (base, adapter) per style fill most of the slot


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike[str]) -> Path:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _grid_legend(fig, axes, used: int) -> None:
    """Blank the unused panels of a grid and put one legend (each label once) under the figure."""
    nrows, ncols = axes.shape
    for k in range(used, nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    handles, labels = [], []
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncols=min(6, len(labels)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))  # fmt: skip


def _err(mean: float, low: float, high: float) -> tuple[float, float]:
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(mean)):
        return 0.0, 0.0
    return max(mean - low, 0.0), max(high - mean, 0.0)


def metric_bars(
    rows: Sequence[Mapping], styles: Sequence[str], met: Metric, path: str | os.PathLike[str]
) -> Path:
    """Grouped bars per style (and overall): base and adapter means with 95 % interval whiskers."""
    plt = _plt()
    groups = [*styles, OVERALL]
    models = [m for m in (BASE, ADAPTER) if any(r["model"] == m for r in rows)]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.48 * len(groups) + 1.6), 3.3))
    x = np.arange(len(groups))
    offsets = {BASE: -BAR_WIDTH / 2, ADAPTER: BAR_WIDTH / 2} if len(models) == 2 else {models[0]: 0.0}
    for model in models:
        means, lo, hi = [], [], []
        for g in groups:
            r = find_row(rows, g, model, met.name)
            m = r["mean"] if r else math.nan
            e = _err(m, r["ci_low"], r["ci_high"]) if r else (0.0, 0.0)
            means.append(m)
            lo.append(e[0])
            hi.append(e[1])
        ax.bar(
            x + offsets[model],
            np.nan_to_num(means),
            BAR_WIDTH,
            yerr=[lo, hi],
            capsize=3,
            color=MODEL_COLORS[model],
            label=model,
            error_kw={"elinewidth": 1, "ecolor": "#222"},
        )
    ax.set_xticks(x, [g.replace("_", " ") for g in groups], rotation=30, ha="right")
    ax.axvline(len(styles) - 0.5, color="#bbb", lw=0.8, ls="--")
    arrow = {"higher": " (higher is better)", "lower": " (lower is better)"}.get(met.better or "", "")
    ax.set_title(f"{met.label}{arrow}", fontsize=10, loc="left")
    ax.set_ylabel(met.label, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        frameon=False, fontsize=8, ncols=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2
    )
    return _save(fig, path)


def difference_forest(
    rows: Sequence[Mapping], styles: Sequence[str], metrics: Sequence[Metric], path: str | os.PathLike[str]
) -> Path | None:
    """Adapter minus base (paired) per style with its interval; green = better, red = worse, grey = unclear."""
    if not any(r["model"] == ADAPTER and r["diff_n"] for r in rows):
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    groups = [*styles, OVERALL]
    ncols = min(len(metrics), 4)
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.2 * ncols, 0.28 * len(groups) * nrows + 1.2 * nrows),
        squeeze=False,
        sharey=True,
    )
    y = np.arange(len(groups))[::-1]
    for k, met in enumerate(metrics):
        ax = axes[k // ncols][k % ncols]
        for yi, g in zip(y, groups, strict=True):
            r = find_row(rows, g, ADAPTER, met.name)
            if not r or not r["diff_n"]:
                continue
            m, lo, hi = r["diff_mean"], r["diff_ci_low"], r["diff_ci_high"]
            color = NEUTRAL_COLOR
            if math.isfinite(lo) and math.isfinite(hi) and met.better and (lo > 0 or hi < 0):
                up_good = met.better == "higher"
                color = BETTER_COLOR if (lo > 0) == up_good else WORSE_COLOR
            e = _err(m, lo, hi)
            ax.errorbar(
                [m],
                [yi],
                xerr=[[e[0]], [e[1]]],
                fmt="o" if g != OVERALL else "D",
                color=color,
                ms=4 if g != OVERALL else 5,
                capsize=2,
                lw=1.2,
            )
        ax.axvline(0, color="#333", lw=0.8)
        ax.axhline(0.5, color="#bbb", lw=0.8, ls="--")
        arrow = {"higher": " (+ is better)", "lower": " (- is better)"}.get(met.better or "", "")
        ax.set_title(f"{met.label}{arrow}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, symmetric=True))  # few ticks: labels never collide
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3), useOffset=False)
        ax.tick_params(labelsize=8)
    for k in range(len(metrics), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    for row_axes in axes:
        row_axes[0].set_yticks(y, [g.replace("_", " ") for g in groups])
    fig.suptitle("adapter minus base, paired over items (95 % interval)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def confusion_heatmap(
    matrix: np.ndarray, labels: Sequence[str], title: str, path: str | os.PathLike[str]
) -> Path:
    """Row-normalised heat map (share of a style's clips heard as each style) with the counts written in.

    ``matrix`` is square over ``labels`` (the catalog); rows without clips (styles not evaluated) are
    left out, every column stays (any catalog style can be heard).
    """
    plt = _plt()
    matrix = np.asarray(matrix)
    rows = [i for i in range(len(labels)) if matrix[i].sum() > 0] or list(range(len(labels)))
    shares = row_normalize(matrix)[rows]
    counts = matrix[rows]
    n_cols, n_rows = len(labels), len(rows)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * n_cols + 2.0) + 0.8, max(2.5, 0.45 * n_rows + 2.0)))
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    names = [label.replace("_", " ") for label in labels]
    ax.set_xticks(range(n_cols), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_rows), [names[i] for i in rows], fontsize=8)
    ax.set_xlabel("predicted style (CLAP-nearest)")
    ax.set_ylabel("style asked for")
    for r in range(n_rows):
        for j in range(n_cols):
            if counts[r, j]:
                color = "white" if shares[r, j] > 0.55 else "#111"
                ax.text(j, r, str(int(counts[r, j])), ha="center", va="center", fontsize=7, color=color)
    total = int(matrix.sum())
    acc = float(np.trace(matrix) / total) if total else math.nan
    ax.set_title(f"{title}\naccuracy {acc:.2f} over {total} clips", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of row")
    return _save(fig, path)


TOTAL_REWARD = "total (weighted sum)"  # panel of training's reward_by_style/<style>
_RESERVED_STYLE_SUFFIX = "_style"  # training logs a style named "mean"/"std" as mean_style/std_style


def reward_series(log_history: Sequence[Mapping], styles: Sequence[str]) -> dict[str, dict[str, list]]:
    """``{reward name: {style or "mean": [(step, value), ...]}}`` from TRL's ``log_history``.

    Keys read: ``rewards/<name>/<style>`` for every catalog style, ``rewards/<name>/mean`` (TRL's batch mean
    of each reward function) and ``reward_by_style/<style>`` (training's weighted total, shown as
    ``TOTAL_REWARD``). Other keys (``.../std``, losses, timings) are ignored.
    """
    series: dict[str, dict[str, list]] = {}
    style_set = set(styles)
    for step, parts, value in _logged_values(log_history):
        if len(parts) == 3 and parts[0] == "rewards":
            name, style = parts[1], ("mean" if parts[2] == "mean" else _catalog_style(parts[2], style_set))
        elif len(parts) == 2 and parts[0] == "reward_by_style":
            name, style = TOTAL_REWARD, _catalog_style(parts[1], style_set)
        else:
            continue
        if style is not None:
            series.setdefault(name, {}).setdefault(style, []).append((step, value))
    return series


def _logged_values(log_history: Sequence[Mapping]) -> Iterator[tuple[Any, list[str], float]]:
    """``(step, key split at "/", value)`` of every finite number logged at a step of ``log_history``."""
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                yield step, key.split("/"), float(value)


def _catalog_style(part: str, style_set: set[str]) -> str | None:
    """The catalog style a logged key part names (``mean_style`` -> ``mean``), else None."""
    if part in style_set:
        return part
    if part.endswith(_RESERVED_STYLE_SUFFIX) and part[: -len(_RESERVED_STYLE_SUFFIX)] in style_set:
        return part[: -len(_RESERVED_STYLE_SUFFIX)]
    return None


def reward_curves(
    log_history: Sequence[Mapping], styles: Sequence[str], path: str | os.PathLike[str]
) -> Path | None:
    """One panel per reward function: a line per style (and the batch mean, dashed) against the step."""
    series = reward_series(log_history, styles)
    if not series:
        return None
    plt = _plt()
    names = sorted(series, key=lambda n: (n == TOTAL_REWARD, n))  # the weighted total last
    ncols = min(len(names), 2)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 3.2 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    colors = {s: cmap(i % 20) for i, s in enumerate(styles)}
    for k, name in enumerate(names):
        ax = axes[k // ncols][k % ncols]
        for style in [*styles, "mean"]:
            points = series[name].get(style)
            if not points:
                continue
            steps, values = zip(*sorted(points), strict=True)
            if style == "mean":
                ax.plot(steps, values, color="#000", lw=1.6, ls="--", label="batch mean")
            else:
                ax.plot(
                    steps,
                    values,
                    color=colors[style],
                    lw=1.1,
                    marker="." if len(steps) < 30 else None,
                    label=style.replace("_", " "),
                )
        ax.set_title(f"reward: {name}", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    _grid_legend(fig, axes, len(names))
    fig.suptitle("training rewards per style (trainer_state.json)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# Training diagnostics (training/diagnostics.py): per-style keys <prefix>/<name>/<style> in log_history
TRADEOFF_PREFIX = "tradeoff"  # within-group Spearman of two rewards, "a~b"
DOMINANCE_PREFIX = "dominance"  # a reward's share of the within-group variance of the weighted total


def diagnostic_series(
    log_history: Sequence[Mapping], styles: Sequence[str], prefix: str
) -> dict[str, dict[str, list]]:
    """``{name: {style: [(step, value), ...]}}`` of the keys ``<prefix>/<name>/<style>`` (catalog styles)."""
    style_set = set(styles)
    series: dict[str, dict[str, list]] = {}
    for step, parts, value in _logged_values(log_history):
        if len(parts) != 3 or parts[0] != prefix:
            continue
        style = _catalog_style(parts[2], style_set)
        if style is not None:
            series.setdefault(parts[1], {}).setdefault(style, []).append((step, value))
    return series


def diagnostic_curves(
    log_history: Sequence[Mapping],
    styles: Sequence[str],
    prefix: str,
    path: str | os.PathLike[str],
    *,
    title: str,
    ylim: tuple[float, float] | None = None,
) -> Path | None:
    """One panel per reward pair (trade-offs) or reward (dominance): a line per style against the step,
    the mean over styles dashed, and a line at 0."""
    series = diagnostic_series(log_history, styles, prefix)
    if not series:
        return None
    plt = _plt()
    names = sorted(series)
    ncols = min(len(names), 3)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 2.9 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    colors = {s: cmap(i % 20) for i, s in enumerate(styles)}
    for k, name in enumerate(names):
        ax = axes[k // ncols][k % ncols]
        by_step: dict[int, list[float]] = {}
        for style in styles:
            points = series[name].get(style)
            if not points:
                continue
            steps, values = zip(*sorted(points), strict=True)
            for st, v in points:
                by_step.setdefault(st, []).append(v)
            ax.plot(steps, values, color=colors[style], lw=1.0, marker="." if len(steps) < 30 else None,
                    label=style.replace("_", " "))  # fmt: skip
        steps = sorted(by_step)
        ax.plot(steps, [float(np.mean(by_step[s])) for s in steps], color="#000", lw=1.6, ls="--",
                label="mean over styles")  # fmt: skip
        ax.axhline(0.0, color="#888", lw=0.8)
        if ylim:
            ax.set_ylim(*ylim)
        ax.set_title(name.replace("~", " vs "), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    _grid_legend(fig, axes, len(names))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
