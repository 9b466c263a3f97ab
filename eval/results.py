"""From scored clip records to the final files: metadata.csv, metrics.json/csv, plots, report.html.

Each file is written atomically (temporary sibling + rename), and ``report.html`` is written last, after
every file it links to, so an interrupted run never leaves a half-written or dangling report.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from stylegrpo.errors import StyleGRPOError
from stylegrpo.outputs import atomic_write_bytes
from stylegrpo.styles import Catalog

from . import confusion as conf
from . import plots, stats
from .metrics import (
    ADAPTER,
    BASE,
    KEY_METRICS,
    METRIC_BY_NAME,
    METRICS,
    flag_styles,
    gaming_alarms,
    summarize,
)
from .report import REPORT_NAME, render_report

log = logging.getLogger(__name__)

CLIPS_DIR = "clips"  # audiofolder: clips/*.wav + clips/metadata.csv
PLOTS_DIR = "plots"
METADATA_NAME = "metadata.csv"  # the name datasets' audiofolder looks for
TRAINER_STATE = "trainer_state.json"  # written by transformers' Trainer in output_dir and each checkpoint-*
# metadata.csv columns first in this order (then every metric, then the rest)
IDENTITY_COLUMNS = ("file_name", "text", "style", "model", "seed", "item", "clip_id", "phrase")


def _json_default(o: object) -> object:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean_json(o: object) -> object:
    """NaN/inf become null (strict JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {k: _clean_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean_json(v) for v in o]
    return o


def write_json(path: str | os.PathLike[str], data: object) -> None:
    text = json.dumps(_clean_json(data), indent=2, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def write_csv(path: str | os.PathLike[str], frame) -> None:
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def find_trainer_state(training_dir: str | os.PathLike[str]) -> Path | None:
    """The most advanced trainer_state.json in a training output folder (top level or checkpoint-N).

    A file given directly is taken as is. The one with the highest ``global_step`` wins (ties: the
    top-level file, which the trainer writes last).
    """
    p = Path(training_dir)
    if p.is_file():
        return p
    if not p.is_dir():
        raise StyleGRPOError(f"--training-dir {p}: not found; pass the training output folder")
    candidates = [p / TRAINER_STATE] if (p / TRAINER_STATE).is_file() else []
    for ck in p.glob("checkpoint-*"):
        if re.fullmatch(r"checkpoint-\d+", ck.name) and (ck / TRAINER_STATE).is_file():
            candidates.append(ck / TRAINER_STATE)
    best, best_step = None, -1
    for c in candidates:
        try:
            step = int(json.loads(c.read_text()).get("global_step") or 0)
        except (OSError, ValueError, AttributeError):
            log.warning("%s: unreadable, skipped", c)
            continue
        if step > best_step:
            best, best_step = c, step
    return best


def load_log_history(training_dir: str | os.PathLike[str]) -> tuple[list[dict], Path | None]:
    state = find_trainer_state(training_dir)
    if state is None:
        log.warning(
            "%s: no %s found (top level or checkpoint-*/); no training curves", training_dir, TRAINER_STATE
        )
        return [], None
    history = json.loads(state.read_text()).get("log_history") or []
    return [h for h in history if isinstance(h, dict)], state


def metadata_frame(records: Sequence[Mapping]):
    """The clip records as a DataFrame with the audiofolder ``file_name`` column first."""
    import pandas as pd

    frame = pd.DataFrame(list(records)).drop(columns=["scored"], errors="ignore")
    metric_cols = [m.name for m in METRICS if m.name in frame.columns]
    first = [c for c in IDENTITY_COLUMNS if c in frame.columns]
    rest = [c for c in frame.columns if c not in first and c not in metric_cols]
    return frame[first + metric_cols + rest]


def confusion_summary(records: Sequence[Mapping], labels: Sequence[str]) -> dict[str, dict]:
    """Per model: the confusion matrix (rows = style asked for, columns = CLAP-nearest style) and accuracies."""
    out = {}
    for model in (BASE, ADAPTER):
        recs = [r for r in records if r["model"] == model and r.get("predicted_style")]
        if not recs:
            continue
        m = conf.confusion_matrix([r["style"] for r in recs], [r["predicted_style"] for r in recs], labels)
        out[model] = {
            "labels": list(labels),
            "matrix": m.tolist(),
            "accuracy": conf.accuracy(m),
            "per_style_accuracy": dict(zip(labels, conf.per_class_accuracy(m).tolist(), strict=True)),
            "most_confused": [list(c) for c in conf.most_confused(m, labels)],
        }
    return out


def failure_counts(records: Sequence[Mapping], styles: Sequence[str]) -> dict[str, dict[str, dict[str, int]]]:
    """``{model: {style: {"clips", "no_speech", "truncated"}}}``."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for model in (BASE, ADAPTER):
        recs = [r for r in records if r["model"] == model]
        if not recs:
            continue
        out[model] = {
            s: {
                "clips": sum(1 for r in recs if r["style"] == s),
                "no_speech": sum(1 for r in recs if r["style"] == s and r.get("no_speech")),
                "truncated": sum(1 for r in recs if r["style"] == s and r.get("truncated")),
            }
            for s in styles
        }
    return out


def write_results(
    out: str | os.PathLike[str],
    records: Sequence[Mapping],
    config: Mapping,
    catalog: Catalog,
    *,
    tiny: bool,
    training_dir: str | os.PathLike[str] | None = None,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    bootstrap_seed: int = stats.DEFAULT_SEED,
) -> dict:
    """Write metadata.csv, metrics.json, metrics.csv, plots/*.png and (last) report.html into ``out``.

    ``records`` are the scored clips (the wavs are already in ``out/clips``). Returns the metrics dict.
    """
    import pandas as pd

    out = Path(out)
    styles = [s["name"] for s in config["styles"]]
    config = {
        **config,
        "bootstrap_resamples": n_resamples,
        "bootstrap_seed": bootstrap_seed,
        "training_dir": str(training_dir) if training_dir else None,
    }
    history: list[dict] = []
    if training_dir:
        history, state = load_log_history(training_dir)
        config["trainer_state"] = str(state) if state is not None else None
    write_csv(out / CLIPS_DIR / METADATA_NAME, metadata_frame(records))

    rows = summarize(records, styles, n_resamples=n_resamples, seed=bootstrap_seed)
    flags = flag_styles(rows)
    alarms = gaming_alarms(rows, flags)
    confusion = confusion_summary(records, catalog.names)
    metrics = {
        "tiny": tiny,
        "note": "tiny preset: random models; numbers prove plumbing, not quality" if tiny else None,
        "config": config,
        "styles": styles,
        "metrics": [{"name": m.name, "label": m.label, "better": m.better, "help": m.help} for m in METRICS],
        "rows": rows,
        "flags": flags,
        "alarms": alarms,
        "confusion": confusion,
        "failures": failure_counts(records, styles),
    }
    frame = pd.DataFrame(rows)
    frame.insert(3, "better", frame["metric"].map(lambda n: METRIC_BY_NAME[n].better or ""))
    frame["flag_cer_worse"] = [
        r["model"] == ADAPTER and r["metric"] == "cer" and any(f["style"] == r["style"] for f in flags)
        for r in rows
    ]
    gamed = {a["style"] for a in alarms}
    frame["flag_gamed"] = [r["model"] == ADAPTER and r["style"] in gamed for r in rows]
    write_csv(out / "metrics.csv", frame)
    write_json(out / "metrics.json", metrics)

    plot_paths: dict[str, str] = {}
    pdir = out / PLOTS_DIR
    pdir.mkdir(parents=True, exist_ok=True)
    if plots.difference_forest(rows, styles, KEY_METRICS, pdir / "differences.png"):
        plot_paths["diff"] = f"{PLOTS_DIR}/differences.png"
    for met in KEY_METRICS:
        plots.metric_bars(rows, styles, met, pdir / f"bars_{met.name}.png")
        plot_paths[f"bars:{met.name}"] = f"{PLOTS_DIR}/bars_{met.name}.png"
    for model, c in confusion.items():
        plots.confusion_heatmap(
            np.asarray(c["matrix"]), c["labels"], f"style confusion: {model}", pdir / f"confusion_{model}.png"
        )
        plot_paths[f"confusion:{model}"] = f"{PLOTS_DIR}/confusion_{model}.png"
    if history and plots.reward_curves(history, catalog.names, pdir / "training_rewards.png"):
        plot_paths["training"] = f"{PLOTS_DIR}/training_rewards.png"
    diagnostics = (
        (
            "tradeoffs",
            plots.TRADEOFF_PREFIX,
            "within-group Spearman correlation of two rewards",
            (-1.05, 1.05),
        ),
        (
            "dominance",
            plots.DOMINANCE_PREFIX,
            "share of the within-group variance of the weighted total",
            None,
        ),
    )
    for key, prefix, title, ylim in diagnostics:
        if history and plots.diagnostic_curves(
            history, catalog.names, prefix, pdir / f"training_{key}.png", title=title, ylim=ylim
        ):
            plot_paths[key] = f"{PLOTS_DIR}/training_{key}.png"

    page = render_report(
        config=config,
        catalog=catalog,
        styles=styles,
        rows=rows,
        flags=flags,
        alarms=alarms,
        records=records,
        plots=plot_paths,
        confusion=confusion,
        tiny=tiny,
    )
    atomic_write_bytes(out / REPORT_NAME, page.encode("utf-8"))
    log.debug("wrote %s", out / REPORT_NAME)  # the CLI prints it
    return metrics
