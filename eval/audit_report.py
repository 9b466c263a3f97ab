"""The audit's plots and its report page (one self-contained HTML file: inline CSS, no script, no network;
PNGs by relative path under ``plots/``, like eval's report)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import audit
from .confusion import row_normalize
from .plots import _plt, _save

REPORT_NAME = "report.html"
PLOTS_DIR = "plots"
TINY_JUDGES_WARNING = (
    "Tiny judges ({names}) are tiny twins with RANDOM weights: their numbers prove that the audit runs "
    "end to end (plumbing), they say nothing about how well the real model sees a style."
)
TINY_AUDIO_WARNING = (
    "The clips were spoken by the tiny policy (random weights: noise-like audio), so no judge's numbers "
    "here, real judges included, say anything about the styles: they show the plumbing only."
)
AUC_GOOD, AUC_WEAK, AUC_BAD = "#c8e6c9", "#fff3c4", "#ffcdd2"  # table cell colours by verdict band
JUDGE_COLORS = ("#1f6fb4", "#e07b00", "#2e7d32", "#8e24aa", "#c62828", "#00838f")  # one per judge in plots


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _f(value: Any, fmt: str = ".2f") -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return format(value, fmt)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "judge"


# -- plots ------------------------------------------------------------------------------------------
def confusion_plot(res: Mapping[str, Any], styles: Sequence[str], path: Path) -> Path:
    """Row shares (true style -> style heard as, among the styles the judge applies to), counts written in
    (fractional where ties split a clip)."""
    plt = _plt()
    conf = res["confusion"]
    m = np.asarray(conf["matrix"], dtype=np.float64)
    rows = [i for i in range(len(conf["rows"])) if m[i].sum() > 0] or list(range(len(conf["rows"])))
    shares, counts = row_normalize(m)[rows], m[rows]
    cols = conf["columns"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(cols) + 2.8), max(2.6, 0.42 * len(rows) + 2.0)))
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), [c.replace("_", " ") for c in cols], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [conf["rows"][i].replace("_", " ") for i in rows], fontsize=8)
    ax.set_xlabel("heard as (top score among the styles it scores)", fontsize=8)
    ax.set_ylabel("true style", fontsize=8)
    for r in range(len(rows)):
        for j in range(len(cols)):
            c = counts[r, j]
            if c:
                text = f"{c:.0f}" if float(c).is_integer() else f"{c:.1f}"
                color = "white" if shares[r, j] > 0.55 else "#111"
                ax.text(j, r, text, ha="center", va="center", fontsize=7, color=color)
    ax.set_title(f"{res['name']}: accuracy {_f(res['accuracy'])}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of row")
    return _save(fig, path)


def auc_plot(judges: Mapping[str, Mapping[str, Any]], styles: Sequence[str], path: Path) -> Path:
    """AUC own-style vs other styles, per style, one bar per judge (no bar: the judge does not score it)."""
    plt = _plt()
    names = list(judges)
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(styles) + 2.0), 3.6))
    x = np.arange(len(styles))
    for k, name in enumerate(names):
        vals = [judges[name]["styles"][st]["auc"] for st in styles]
        ax.bar(
            x + (k - (len(names) - 1) / 2) * width,
            [v if math.isfinite(v) else 0.0 for v in vals],
            width,
            color=JUDGE_COLORS[k % len(JUDGE_COLORS)],
            label=name,
        )
    ax.axhline(0.5, color="#888", lw=0.8, ls=":", label="chance (0.5)")
    ax.axhline(
        audit.SEPARATES_AUC, color="#2e7d32", lw=0.8, ls="--", label=f"separates ({audit.SEPARATES_AUC})"
    )
    ax.set_ylim(0, 1.05)
    ax.set_xticks(x, [s.replace("_", " ") for s in styles], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("ROC-AUC own vs other styles", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        fontsize=7, frameon=False, ncols=min(4, len(names) + 2), loc="lower left", bbox_to_anchor=(0, 1.0)
    )
    return _save(fig, path)


def write_plots(out: Path, data: Mapping[str, Any], styles: Sequence[str]) -> dict[str, str]:
    """The PNGs under ``out/plots``; returns {key: path relative to the report}."""
    pdir = out / PLOTS_DIR
    pdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    judges = data["judges"]
    auc_plot(judges, styles, pdir / "auc.png")
    paths["auc"] = f"{PLOTS_DIR}/auc.png"
    for name, res in judges.items():
        if len(res["applies_to"]) < audit.MIN_CHOICES:  # one column: nothing to confuse
            continue
        file = f"confusion_{_slug(name)}.png"
        confusion_plot(res, styles, pdir / file)
        paths[f"confusion:{name}"] = f"{PLOTS_DIR}/{file}"
    return paths


# -- page -------------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1b1b1b; background: #f6f7f9; line-height: 1.4; font-size: 14px; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 28px 0 8px;
     border-bottom: 2px solid #dde1e6; padding-bottom: 4px; } h3 { font-size: 16px; margin: 18px 0 6px; }
.sub { color: #666; margin: 0 0 12px; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 12px 16px; margin: 10px 0; }
.warn { background: #fff4e5; border: 2px solid #f0a020; border-radius: 8px; padding: 10px 14px;
        font-weight: 600; margin: 12px 0; }
table { border-collapse: collapse; background: #fff; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #dde1e6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { color: #999; }
ul.verdicts li { margin: 3px 0; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 12px; }
figure { margin: 0; background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: #666; font-size: 12px; margin-top: 4px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dl.kv dt { color: #666; } dl.kv dd { margin: 0; word-break: break-all; }
.pill { display: inline-block; background: #fdecea; color: #c62828; border: 1px solid #f5c2c0;
        border-radius: 9px; padding: 0 6px; font-size: 11px; font-weight: 600; }
footer { color: #666; font-size: 12px; margin-top: 32px; }
code { background: #eef1f5; padding: 0 3px; border-radius: 3px; }
"""
_CSS += f"td.good {{ background: {AUC_GOOD}; }} td.weak {{ background: {AUC_WEAK}; }} td.bad {{ background: {AUC_BAD}; }}\n"


_BANDS = {audit.SEPARATES: "good", audit.WEAK: "weak", audit.CONFUSED: "bad", audit.NOT_SEPARATED: "bad"}


def _band(row: Mapping[str, Any]) -> str:
    """The cell colour of a style's verdict (a style confused with one other is red even at a high AUC)."""
    return _BANDS.get(row.get("verdict_kind", ""), "na")


def _figure(src: str, caption: str) -> str:
    return (
        f'<figure><img src="{_e(src)}" alt="{_e(caption)}" loading="eager">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _auc_table(judges: Mapping[str, Any], styles: Sequence[str]) -> str:
    head = "".join(f"<th>{_e(n)}</th>" for n in judges)
    body = []
    for st in styles:
        cells = []
        for res in judges.values():
            r = res["styles"][st]
            if not r["applies"]:
                cells.append('<td class="na" title="the judge does not score this style">n/a</td>')
                continue
            tip = _e(r["verdict"])
            flat = ' <span class="pill">flat</span>' if r.get("flat") else ""
            cells.append(
                f'<td class="num {_band(r)}" title="{tip}">{_f(r["auc"])}'
                f' <span class="sub">acc {_f(r["accuracy"])}</span>{flat}</td>'
            )
        body.append(f"<tr><th>{_e(st)}</th>{''.join(cells)}</tr>")
    overall = "".join(
        f'<td class="num">{_f(r["mean_auc"])} <span class="sub">acc {_f(r["accuracy"])}</span></td>'
        for r in judges.values()
    )
    body.append(f"<tr><th>mean AUC / accuracy</th>{overall}</tr>")
    return f'<table id="auc-table"><thead><tr><th>style</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _judge_section(res: Mapping[str, Any], styles: Sequence[str]) -> str:
    rows = []
    for st in styles:
        r = res["styles"][st]
        if not r["applies"]:
            rows.append(f'<tr><th>{_e(st)}</th><td class="na" colspan="8">{_e(r["verdict"])}</td></tr>')
            continue
        least = (
            f"{_e(r['least_separated'])} ({_f(r['least_separated_auc'])})"
            if r.get("least_separated")
            else "–"
        )
        rows.append(
            f"<tr><th>{_e(st)}</th><td class='num'>{r['n_clips']}</td>"
            f"<td class='num {_band(r)}'>{_f(r['auc'])}<span class='sub'> [{_f(r.get('auc_low'))}, "
            f"{_f(r.get('auc_high'))}]</span></td><td class='num'>{_f(r['accuracy'])}</td>"
            f"<td>{least}</td><td class='num'>{_f(r['own_mean'], '.3g')}</td>"
            f"<td class='num'>{_f(r['own_std'], '.3g')}</td><td class='num'>{_f(r['own_iqr'], '.3g')}</td>"
            f"<td>{_e(r['verdict'])}</td></tr>"
        )
    tiny = ' <span class="pill">tiny: random weights</span>' if res.get("tiny") else ""
    return (
        f'<div class="card" id="judge-{_slug(res["name"])}"><h3>{_e(res["name"])}{tiny}</h3>'
        f'<p class="sub">scores {len(res["applies_to"])} of {len(styles)} styles; accuracy '
        f"{_f(res['accuracy'])} over their clips; mean AUC {_f(res['mean_auc'])}</p>"
        f'<table class="judge-table"><thead><tr><th>style</th><th>clips</th><th>AUC [95 % interval]</th><th>top-1 acc.</th>'
        f"<th>least separated from (pairwise AUC)</th><th>own score mean</th><th>std</th><th>IQR</th>"
        f"<th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _descriptions_html(descriptions: Mapping[str, Any]) -> str:
    if not descriptions:
        return '<p class="sub">No judge with text embeddings (CLAP) ran: no per-description geometry.</p>'
    parts = [
        '<p class="sub">Cosine distance (1 &minus; cosine) of each paraphrase to its style\'s prototype '
        "(the mean of its other paraphrases) and to the nearest other style's prototype. A paraphrase "
        "nearer another style points the reward at that style.</p>"
    ]
    for judge, d in descriptions.items():
        lines = (
            "".join(f"<li>{_e(v)}</li>" for v in d["verdicts"])
            or "<li>every paraphrase sits nearest its own style</li>"
        )
        body = "".join(
            f"<tr><td>{_e(r['style'])}</td><td>{_e(r['description'])}</td>"
            f"<td class='num'>{_f(r['distance_own'], '.3f')}</td><td>{_e(r['nearest_other'])}</td>"
            f"<td class='num'>{_f(r['distance_nearest_other'], '.3f')}</td>"
            f"<td class='{'bad' if r['points_elsewhere'] else ''}'>"
            f"{'points at ' + _e(r['nearest_other']) if r['points_elsewhere'] else 'own style'}</td></tr>"
            for r in d["rows"]
        )
        parts.append(
            f"<h3>{_e(judge)}</h3><ul class='verdicts'>{lines}</ul>"
            f'<table class="description-table" id="descriptions-{_slug(judge)}"><thead><tr><th>style</th>'
            "<th>description</th><th>distance to own</th><th>nearest other style</th><th>distance to it</th>"
            f"<th></th></tr></thead><tbody>{body}</tbody></table>"
        )
    return "".join(parts)


def render_audit_report(
    data: Mapping[str, Any], catalog: Any, plots: Mapping[str, str], generated: datetime | None = None
) -> str:
    """The report page as a string (``data`` is what audit.json holds)."""
    generated = generated or datetime.now(timezone.utc)
    styles = catalog.names
    judges = data["judges"]
    cfg = data.get("config", {})
    warnings = []
    if data.get("tiny_audio"):
        warnings.append(f'<div class="warn" id="tiny-audio-warning">&#9888; {_e(TINY_AUDIO_WARNING)}</div>')
    if data.get("tiny_judges"):
        text = TINY_JUDGES_WARNING.format(names=", ".join(data["tiny_judges"]))
        warnings.append(f'<div class="warn" id="tiny-warning">&#9888; {_e(text)}</div>')
    setup = [
        ("clips", f"{data['n_clips']} from {data['source']}"),
        ("per style", ", ".join(f"{k}: {v}" for k, v in data["clips_per_style"].items())),
        (
            "texts known",
            "yes" if data.get("texts_known") else "no (the acoustic judge leaves out the speaking rate)",
        ),
        ("judges", ", ".join(judges)),
        ("catalog", str(catalog.path or "")),
    ]
    setup += [
        (k, v) for k, v in cfg.items() if k in ("preset", "adapter", "device", "seed") and v is not None
    ]
    setup += [(f"skipped {k}", v) for k, v in data.get("skipped_judges", {}).items()]
    setup_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in setup)
    verdicts = "".join(
        f"<h3>{_e(name)}</h3><ul class='verdicts'>"
        + "".join(
            f"<li><b>{_e(st)}</b>: {_e(res['styles'][st]['verdict'])}</li>"
            for st in styles
            if res["styles"][st]["applies"]
        )
        + "</ul>"
        for name, res in judges.items()
    )
    conf = "".join(
        _figure(plots[f"confusion:{n}"], f"{n}: rows = true style, columns = style heard as")
        for n in judges
        if f"confusion:{n}" in plots
    )
    t = audit.THRESHOLDS
    footer = (
        f"AUC: rank-based (Mann-Whitney), ties count one half. Verdicts: &ldquo;separates&rdquo; at AUC &ge; "
        f"{t['separates_auc']}, &ldquo;cannot tell A from B&rdquo; when the pairwise AUC against B is below "
        f"{t['confused_auc']} (Hosmer &amp; Lemeshow's bands: 0.7 acceptable, 0.8 excellent); fewer than "
        f"{t['min_clips_verdict']} clips of a style: no firm verdict. &ldquo;flat&rdquo;: the own-style score's "
        f"standard deviation over the style's clips is below {t['flat_rel_std']} of its spread over all clips "
        f"(or below {t['flat_abs_std']}): GRPO learns from differences among a prompt's rollouts, and a judge "
        "that scores every clip of a style alike gives it none. Top-1 accuracy: among the styles the judge "
        "scores; a tie for the top splits a clip. Files: <a href='audit.json'>audit.json</a>, "
        "<a href='audit.csv'>audit.csv</a>, <a href='clip_scores.csv'>clip_scores.csv</a>."
    )
    body = f"""<h1>stylegrpo audit: how well the judges see each style</h1>
<p class="sub">{len(judges)} judge(s) · {len(styles)} styles · {data["n_clips"]} clips · generated
{generated.strftime("%Y-%m-%d %H:%M UTC")}</p>
{"".join(warnings)}
<section id="setup" class="card"><h2 style="margin-top:4px">Setup</h2><dl class="kv">{setup_html}</dl></section>
<section id="summary"><h2>ROC-AUC per style and judge</h2>
<p class="sub">AUC of the style's score on its own clips against the other styles' clips (1 = every own clip
scores above every other; 0.5 = chance), and below it the top-1 accuracy among the styles the judge scores.
Green: separates (&ge; {audit.SEPARATES_AUC}); yellow: weak; red: below {audit.CONFUSED_AUC} overall or against one other style. Hover a cell for
its verdict.</p>{_auc_table(judges, styles)}</section>
<section id="verdicts"><h2>Verdicts</h2>{verdicts}</section>
<section id="plots"><h2>Plots</h2><div class="plots">{_figure(plots["auc"], "AUC own style vs other styles, per judge")}
{conf}</div></section>
<section id="judges"><h2>Per judge</h2>{"".join(_judge_section(r, styles) for r in judges.values())}</section>
<section id="descriptions"><h2>Descriptions (paraphrases) in the judge's text space</h2>
{_descriptions_html(data.get("descriptions", {}))}</section>
<footer>{footer}</footer>"""
    title = "stylegrpo audit: judges per style"
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def report_problems(seen: Any) -> list[str]:
    """What is wrong with an audit report as the headless browser saw it (eval.browser.check_report)."""
    out = []
    if "stylegrpo audit" not in seen.title:
        out.append(f"unexpected title {seen.title!r}")
    if "auc-table" not in seen.table_ids:
        out.append("missing table: auc-table")
    if not seen.images:
        out.append("no images")
    out += [f"image did not load: {i['src']}" for i in seen.broken_images]
    out += [f"network request left file://: {u}" for u in seen.blocked]
    out += [f"console error: {e}" for e in seen.console_errors]
    return out


__all__ = [
    "REPORT_NAME",
    "TINY_AUDIO_WARNING",
    "TINY_JUDGES_WARNING",
    "render_audit_report",
    "report_problems",
]
