"""The eval report: one self-contained HTML page (tables, plots, audio players base vs adapter per style).

It opens from disk with no server and no network: inline CSS, no script, no web fonts; PNGs and wavs are
referenced by paths relative to the report (``plots/*.png``, ``clips/*.wav``), so the folder can be
moved or zipped as a whole.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from string import Template

from stylegrpo.styles import TARGET_FIELDS, Catalog

from .metrics import (
    ADAPTER,
    BASE,
    CER_WORSE_THRESHOLD,
    KEY_METRICS,
    METRICS,
    OVERALL,
    QUALITY_FELL_THRESHOLD,
    STYLE_ROSE_THRESHOLD,
    Metric,
    find_row,
)

REPORT_NAME = "report.html"
TINY_WARNING = (
    "Tiny preset: every model here (policy, codec, CLAP, ASR, Whisper) is a tiny twin with RANDOM weights. "
    "These numbers prove that the pipeline runs end to end; they say nothing about speech or style quality."
)
# metrics shown in the per-style summary table (the rest are in the detail tables and metrics.csv)
SUMMARY_METRICS = (
    "style_correct",
    "clap_similarity",
    "cer",
    "wer",
    "whisper_nll",
    "target_score",
    "dnsmos_bak",
    "no_speech",
)
CLIP_SCORES = (
    ("cer", "CER"),
    ("clap_similarity", "CLAP"),
    ("style_prob", "p(style)"),
    ("dnsmos_bak", "BAK"),
    ("duration_s", "s"),
)

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
:root { --base: #9e9e9e; --adapter: #1f6fb4; --good: #2e7d32; --bad: #c62828; --muted: #666; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1b1b1b; background: #f6f7f9; line-height: 1.4; font-size: 14px; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 2px solid #dde1e6; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 12px 16px; margin: 10px 0; }
.warn { background: #fff4e5; border: 2px solid #f0a020; border-radius: 8px; padding: 10px 14px;
        font-weight: 600; margin: 12px 0; }
.flag { background: #fdecea; border-left: 5px solid var(--bad); padding: 6px 12px; margin: 6px 0; }
.ok { background: #edf7ed; border-left: 5px solid var(--good); padding: 6px 12px; margin: 6px 0; }
table { border-collapse: collapse; background: #fff; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #dde1e6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.help { color: var(--muted); font-size: 12px; max-width: 420px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { color: var(--muted); font-size: 11px; display: block; }
.delta { display: block; }
table#style-table { width: 100%; font-size: 12.5px; }
table#style-table td { padding: 3px 6px; }
.d-good { color: var(--good); font-weight: 600; }
.d-bad { color: var(--bad); font-weight: 600; }
.d-none { color: var(--muted); }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; word-break: break-all; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 12px; }
.plots figure, figure.wide { margin: 0; background: #fff; border: 1px solid #dde1e6; border-radius: 8px;
        padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; }
table.listen { width: 100%; table-layout: fixed; }
table.listen td { padding: 6px 8px; }
table.listen col.idx { width: 36px; } table.listen col.text { width: 34%; }
table.listen th.base { border-top: 3px solid var(--base); } table.listen th.adapter { border-top: 3px solid var(--adapter); }
audio { width: 100%; height: 32px; display: block; }
.scores { color: var(--muted); font-size: 11.5px; margin-top: 2px; }
.scores b { color: #333; font-weight: 600; }
.bad-clip { color: var(--bad); font-weight: 600; }
.pill { display: inline-block; background: #fdecea; color: var(--bad); border: 1px solid #f5c2c0;
        border-radius: 9px; padding: 0 6px; font-size: 11px; font-weight: 600; margin-left: 2px; }
.phrase { font-style: italic; }
details > summary { cursor: pointer; font-weight: 600; margin: 6px 0; }
nav a { margin-right: 12px; }
footer { color: var(--muted); font-size: 12px; margin-top: 32px; }
code { background: #eef1f5; padding: 0 3px; border-radius: 3px; }
</style>
</head>
<body>
<main>
<h1>$title</h1>
<p class="sub">$subtitle</p>
$warning
<nav class="card">Jump to: <a href="#summary">summary</a> <a href="#styles">per style</a>
<a href="#plots">plots</a> <a href="#confusion">confusion</a> $nav_training <a href="#listen">listen</a>
<a href="#details">all numbers</a></nav>
<section id="setup" class="card">$setup</section>
<section id="summary"><h2>Summary over all styles</h2>$flags$overall</section>
<section id="styles"><h2>Per style</h2>
<p class="sub">Each cell: base &rarr; adapter mean, and below it the paired difference adapter &minus; base with its
95&nbsp;% bootstrap interval (green = better, red = worse, grey = the interval includes 0). Hover a number for
its own interval.</p>
$style_table</section>
<section id="plots"><h2>Plots</h2>$plots</section>
<section id="confusion"><h2>Style confusion (CLAP-nearest style of each clip)</h2>$confusion</section>
$training
<section id="listen"><h2>Listen: base and adapter side by side</h2>
<p class="sub">Same text and same sampling seed in each row, so the two clips differ only by the adapter.</p>
$listen</section>
<section id="details"><h2>All numbers</h2>$details</section>
<footer>$footer</footer>
</main>
</body>
</html>
""")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, fmt: str = ".3f", signed: bool = False) -> str:
    """``value`` in ``fmt``; a non-zero value that would round to 0 is shown in scientific notation instead
    (so a tiny but real difference never reads as "-0.000")."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    sign = "+" if signed else ""
    decimals = int(fmt[1:-1]) if fmt.startswith(".") and fmt.endswith("f") and fmt[1:-1].isdigit() else None
    if decimals is not None and value != 0 and abs(value) < 0.5 * 10**-decimals:
        return format(value, sign + ".1e")
    return format(value, sign + fmt)


def _ci(low: float, high: float, fmt: str, signed: bool = False) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"[{_fmt(low, fmt, signed)}, {_fmt(high, fmt, signed)}]"


def _diff_class(met: Metric, row: Mapping) -> str:
    lo, hi = row["diff_ci_low"], row["diff_ci_high"]
    if not met.better or not (math.isfinite(lo) and math.isfinite(hi)) or (lo <= 0 <= hi):
        return "d-none"
    return "d-good" if (lo > 0) == (met.better == "higher") else "d-bad"


def _mean_cell(met: Metric, row: Mapping | None) -> str:
    if not row:
        return "–"
    return (
        f'<span title="95% interval {_ci(row["ci_low"], row["ci_high"], met.fmt)}, n={row["n"]}">'
        f"{_fmt(row['mean'], met.fmt)}</span>"
    )


def _diff_html(met: Metric, row: Mapping | None) -> str:
    if not row or not row.get("diff_n"):
        return ""
    cls = _diff_class(met, row)
    return (
        f'<span class="delta {cls}">&Delta; {_fmt(row["diff_mean"], met.fmt, True)}</span>'
        f'<span class="ci">{_ci(row["diff_ci_low"], row["diff_ci_high"], met.fmt, True)}</span>'
    )


def _models(rows: Sequence[Mapping]) -> list[str]:
    return [m for m in (BASE, ADAPTER) if any(r["model"] == m for r in rows)]


def _overall_table(rows: Sequence[Mapping]) -> str:
    models = _models(rows)
    head = "".join(f"<th>{_e(m)} mean <span class='ci'>95% interval</span></th>" for m in models)
    if ADAPTER in models and BASE in models:
        head += "<th>adapter &minus; base (paired) <span class='ci'>95% interval</span></th>"
    body = []
    for met in METRICS:
        cells = []
        for m in models:
            r = find_row(rows, OVERALL, m, met.name)
            ci = f"{_ci(r['ci_low'], r['ci_high'], met.fmt)} n={r['n']}" if r else ""
            cells.append(
                f'<td class="num">{_fmt(r["mean"], met.fmt) if r else "–"}<span class="ci">{ci}</span></td>'
            )
        if ADAPTER in models and BASE in models:
            cells.append(
                f'<td class="num">{_diff_html(met, find_row(rows, OVERALL, ADAPTER, met.name))}</td>'
            )
        better = {"higher": "&uarr; higher is better", "lower": "&darr; lower is better"}.get(
            met.better or "", ""
        )
        body.append(
            f'<tr><th title="{_e(met.help)}">{_e(met.label)}<span class="ci">{better}</span></th>'
            f"{''.join(cells)}<td class='help'>{_e(met.help)}</td></tr>"
        )
    return (
        f'<table id="overall-table"><thead><tr><th>metric</th>{head}<th>what it is</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _style_table(
    rows: Sequence[Mapping],
    styles: Sequence[str],
    flagged: Mapping[str, str],
    gamed: Mapping[str, str] | None = None,
) -> str:
    """``flagged``: style -> flag severity ("clear" or "large", see metrics.flag_styles); ``gamed``: style ->
    alarm severity (metrics.gaming_alarms)."""
    gamed = gamed or {}
    models = _models(rows)
    mets = [m for m in KEY_METRICS + tuple(METRICS) if m.name in SUMMARY_METRICS]
    mets = list(dict.fromkeys(mets))
    head = "".join(f'<th title="{_e(m.help)}">{_e(m.label)}</th>' for m in mets)
    body = []
    for style in [*styles, OVERALL]:
        cells = []
        for met in mets:
            vals = [_mean_cell(met, find_row(rows, style, m, met.name)) for m in models]
            cells.append(
                f'<td class="num">{" &rarr; ".join(vals)}'
                f"{_diff_html(met, find_row(rows, style, ADAPTER, met.name))}</td>"
            )
        flag = ""
        if style in flagged:
            clear = flagged[style] == "clear"
            tip = (
                "CER difference interval entirely above 0"
                if clear
                else "large mean CER rise; interval includes 0"
            )
            flag = f'<span class="d-bad" title="{tip}">&#9888; CER worse{"" if clear else "?"}</span>'
        if style in gamed:
            sure = gamed[style] == "clear"
            flag += (
                f' <a class="d-bad" href="#listen-{_e(style)}" title="style score rose while quality or '
                f'intelligibility fell">&#9888; gamed{"" if sure else "?"}</a>'
            )
        name = "all styles" if style == OVERALL else style
        body.append(f"<tr><th>{_e(name)} {flag}</th>{''.join(cells)}</tr>")
    legend = " &rarr; ".join(f'<span class="sw" style="background:var(--{m})"></span>{m}' for m in models)
    return (
        f'<p class="sub">Columns: {legend}</p><table id="style-table"><thead><tr><th>style</th>{head}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table>"
    )


def _flags_html(flags: Sequence[Mapping], has_pairs: bool) -> str:
    if not has_pairs:
        return '<p class="ok">Base model only (no adapter given): no differences to flag.</p>'
    if not flags:
        return (
            f'<p class="ok">No style got worse intelligibility (CER difference interval not entirely above 0 '
            f"and mean increase at most {CER_WORSE_THRESHOLD:.2f}).</p>"
        )
    items = "".join(
        f'<div class="flag"><b>{_e("all styles" if f["style"] == OVERALL else f["style"])}</b>: intelligibility '
        + ("worse" if f.get("severity") == "clear" else "possibly worse (the interval still includes 0)")
        + f" &mdash; {_e('; '.join(f['reasons']))}</div>"
        for f in flags
    )
    return f'<div id="flags">{items}</div>'


def _alarm_text(a: Mapping) -> str:
    """One alarm in words: which style, what rose, what fell."""
    where = "all styles together" if a["style"] == OVERALL else a["style"]
    sure = "looks gamed" if a.get("severity") == "clear" else "may be gaming its judge"
    return (
        f"{where} {sure}: its style score rose ({'; '.join(a['rose'])}) while quality or intelligibility "
        f"fell ({'; '.join(a['fell'])}). The style judge may be rewarding an artefact (noise, reverb, "
        "garbled speech) rather than the style: listen to its clips."
    )


def _alarms_html(alarms: Sequence[Mapping], has_pairs: bool) -> str:
    if not has_pairs:
        return ""
    if not alarms:
        return (
            '<p class="ok" id="no-alarms">No style looks gamed: no style score rose while DNSMOS quality '
            "(BAK, OVRL) or intelligibility (CER) fell.</p>"
        )
    items = "".join(
        f'<div class="flag alarm"><b>&#9888; reward hacking?</b> {_e(_alarm_text(a))} '
        + (f'<a href="#listen-{_e(a["style"])}">Listen</a>' if a["style"] != OVERALL else "")
        + "</div>"
        for a in alarms
    )
    return f'<div id="alarms">{items}</div>'


def _diagnostics_html(plots: Mapping[str, str]) -> str:
    """The trade-off and dominance plots of the training run, with what to read in them."""
    parts = []
    if "tradeoffs" in plots:
        parts.append(
            '<h3 id="tradeoffs">Trade-offs between rewards</h3><p class="sub">Spearman rank correlation of two '
            "rewards among the rollouts of one prompt (GRPO learns from these within-group differences), "
            "averaged over the groups of each style at each logging step. Below 0: the rollouts one reward "
            "prefers, the other dislikes, so the two pull the policy apart.</p>"
            + _figure(plots["tradeoffs"], "within-group rank correlation per pair of rewards", wide=True)
        )
    if "dominance" in plots:
        parts.append(
            '<h3 id="dominance">Which reward drives the updates</h3><p class="sub">Each reward\'s share of '
            "the within-group variance of the weighted total (the shares sum to 1; near 1: that reward "
            "alone decides the advantages; below 0: it works against the total).</p>"
            + _figure(plots["dominance"], "share of the weighted total's within-group variance", wide=True)
        )
    return "".join(parts)


def _figure(src: str, caption: str, wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    return (
        f'<figure{cls}><img src="{_e(src)}" alt="{_e(caption)}" loading="eager">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _speakers_text(config: Mapping) -> str:
    """Who the clips were spoken by: `--speaker`'s voice or the dataset's reference speakers ("" if neither)."""
    if config.get("speaker"):
        n = config.get("dataset_speakers_overridden")
        over = f" (overrides the dataset's {n} reference speaker(s))" if n else ""
        return f"one voice, --speaker {config['speaker']}{over}; identity styles without it"
    ids = config.get("reference_speakers") or []
    if not ids:
        return ""
    held = config.get("held_out_speakers")
    held_txt = f", {len(held)} held out from training" if held is not None else ""
    return (
        f"{len(ids)} reference speaker(s) of the test split{held_txt} ({', '.join(ids)}); identity styles "
        "without them"
    )


def _setup_html(
    config: Mapping, n_clips: Mapping[str, int], failures: Mapping[str, Mapping[str, int]]
) -> str:
    models = config.get("models", {})
    items = [
        ("preset", config.get("preset")),
        ("adapter", config.get("adapter") or "none (base model only)"),
        ("texts", f"{config.get('n_texts')} held-out texts from {config.get('texts_source')}"),
        (
            "styles",
            f"{len(config.get('styles', []))} ({', '.join(s['name'] for s in config.get('styles', []))})",
        ),
        *([("reference speakers", _speakers_text(config))] if _speakers_text(config) else []),
        ("seed", config.get("seed")),
        ("clips", ", ".join(f"{m}: {n}" for m, n in n_clips.items())),
        (
            "failures",
            "; ".join(
                f"{m}: {f.get('no_speech', 0)} with no speech, {f.get('truncated', 0)} cut at the length cap"
                for m, f in failures.items()
            )
            or "none",
        ),
    ]
    items += [(f"{k} model", v) for k, v in models.items()]
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f'<h2 style="margin-top:4px">Setup</h2><dl class="kv">{body}</dl>'


def _clip_cell(rec: Mapping | None) -> str:
    if rec is None:
        return "<td>–</td>"
    scores = " · ".join(
        (
            f"<b>{_fmt(rec.get(key), '.2f')}</b> {label}"
            if key == "duration_s"
            else f"{label} <b>{_fmt(rec.get(key), '.2f')}</b>"
        )
        for key, label in CLIP_SCORES
        if rec.get(key) is not None
    )
    heard = rec.get("predicted_style")
    heard_html = ""
    if heard:
        cls = "" if heard == rec.get("style") else ' class="bad-clip"'
        heard_html = f" · heard as <span{cls}>{_e(heard)}</span>"
    badges = []
    if rec.get("no_speech"):
        badges.append("no speech")
    if rec.get("truncated"):
        badges.append("cut at length cap")
    badge = "".join(f' <span class="pill">{_e(b)}</span>' for b in badges)
    if rec.get("num_samples", 1) and float(rec.get("duration_s") or 0) > 0:
        player = f'<audio controls preload="metadata" src="clips/{_e(rec["file_name"])}"></audio>'
    else:
        player = '<div class="bad-clip">no audio (the model produced no speech tokens)</div>'
    hyp = rec.get("hypothesis")
    hyp_html = f'<div class="scores">ASR: “{_e(hyp)}”</div>' if hyp else ""
    return f'<td>{player}<div class="scores">{scores}{heard_html}{badge}</div>{hyp_html}</td>'


def _listen_html(
    records: Sequence[Mapping], catalog: Catalog, styles: Sequence[str], alarms: Sequence[Mapping] = ()
) -> str:
    models = [m for m in (BASE, ADAPTER) if any(r["model"] == m for r in records)]
    alarm_by_style = {a["style"]: a for a in alarms}
    index = {(r["style"], r["model"], r["item"]): r for r in records}
    parts = []
    for style in styles:
        s = catalog.get(style)
        targets = (
            ", ".join(
                f"{k} {lo:g} to {hi:g} {TARGET_FIELDS[k][0]}" for k, (lo, hi) in dict(s.targets).items()
            )
            or "none"
        )
        items = sorted({r["item"] for r in records if r["style"] == style})
        head = "".join(f'<th class="{m}">{m}</th>' for m in models)
        cols = "".join("<col>" for _ in models)
        rows_html = []
        for item in items:
            any_rec = next(index[(style, m, item)] for m in models if (style, m, item) in index)
            cells = "".join(_clip_cell(index.get((style, m, item))) for m in models)
            rows_html.append(f"<tr><td>{item + 1}</td><td>{_e(any_rec['text'])}</td>{cells}</tr>")
        parts.append(
            f'<div class="card style-listen" id="listen-{_e(style)}"><h3>{_e(style)}</h3>'
            f'<p class="sub">phrase in the prompt: <span class="phrase">“{_e(s.phrase)}”</span> · '
            f"acoustic targets: {_e(targets)}</p>"
            + (
                f'<div class="flag alarm">&#9888; {_e(_alarm_text(alarm_by_style[style]))}</div>'
                if style in alarm_by_style
                else ""
            )
            + f'<table class="listen"><colgroup><col class="idx"><col class="text">{cols}</colgroup>'
            f"<thead><tr><th>#</th><th>text</th>{head}</tr></thead><tbody>{''.join(rows_html)}</tbody></table></div>"
        )
    toc = " ".join(f'<a href="#listen-{_e(s)}">{_e(s)}</a>' for s in styles)
    return f'<nav class="card">Styles: {toc}</nav>' + "".join(parts)


def _details_html(rows: Sequence[Mapping], styles: Sequence[str]) -> str:
    models = _models(rows)
    paired = ADAPTER in models and BASE in models
    out = [
        '<p class="sub">Every metric per style: mean [95% interval] (n). The same numbers are in '
        '<a href="metrics.csv">metrics.csv</a> and <a href="metrics.json">metrics.json</a>.</p>'
    ]
    for met in METRICS:
        head = "".join(f"<th>{m}</th>" for m in models) + ("<th>adapter &minus; base</th>" if paired else "")
        body = []
        for style in [*styles, OVERALL]:
            cells = []
            for m in models:
                r = find_row(rows, style, m, met.name)
                cells.append(
                    f'<td class="num">{_fmt(r["mean"], met.fmt)} '
                    f'<span class="ci">{_ci(r["ci_low"], r["ci_high"], met.fmt)} (n={r["n"]})</span></td>'
                    if r
                    else "<td>–</td>"
                )
            if paired:
                cells.append(
                    f'<td class="num">{_diff_html(met, find_row(rows, style, ADAPTER, met.name))}</td>'
                )
            body.append(
                f"<tr><th>{_e('all styles' if style == OVERALL else style)}</th>{''.join(cells)}</tr>"
            )
        out.append(
            f"<details><summary>{_e(met.label)}</summary>"
            f'<p class="sub">{_e(met.help)}</p><table><thead><tr><th>style</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></details>"
        )
    return "".join(out)


def render_report(
    *,
    config: Mapping,
    catalog: Catalog,
    styles: Sequence[str],
    rows: Sequence[Mapping],
    flags: Sequence[Mapping],
    records: Sequence[Mapping],
    plots: Mapping[str, str],
    confusion: Mapping[str, Mapping],
    tiny: bool,
    generated: datetime | None = None,
    alarms: Sequence[Mapping] = (),
) -> str:
    """The report page as a string. ``plots`` maps a plot key to its path relative to the report:
    ``diff``, ``bars:<metric>``, ``confusion:<model>``, ``training``."""
    generated = generated or datetime.now(timezone.utc)
    models = _models(rows)
    n_clips = {m: sum(1 for r in records if r["model"] == m) for m in models}
    failures = {
        m: {k: sum(1 for r in records if r["model"] == m and r.get(k)) for k in ("no_speech", "truncated")}
        for m in models
    }
    adapter = config.get("adapter")
    title = "stylegrpo eval: " + ("base vs adapter" if adapter else "base model") + " per style"
    subtitle = (
        f"{_e(config.get('preset'))} preset · {len(styles)} styles × {_e(config.get('n_texts'))} texts · "
        f"generated {generated.strftime('%Y-%m-%d %H:%M UTC')}"
    )
    warning = f'<div class="warn" id="tiny-warning">&#9888; {_e(TINY_WARNING)}</div>' if tiny else ""

    plot_parts = []
    if "diff" in plots:
        plot_parts.append(
            _figure(
                plots["diff"], "adapter minus base per style, paired over items (95% interval)", wide=True
            )
        )
    bars = [
        _figure(plots[f"bars:{m.name}"], f"{m.label}: base vs adapter per style (95% interval)")
        for m in KEY_METRICS
        if f"bars:{m.name}" in plots
    ]
    if bars:
        plot_parts.append(f'<div class="plots">{"".join(bars)}</div>')
    conf_parts = []
    for model in models:
        if f"confusion:{model}" in plots:
            c = confusion.get(model, {})
            conf_parts.append(
                _figure(
                    plots[f"confusion:{model}"],
                    f"{model}: rows = style asked for, columns = CLAP-nearest style; "
                    f"accuracy {_fmt(c.get('accuracy'), '.2f')}",
                )
            )
    training = ""
    if "training" in plots:
        training = (
            '<section id="training"><h2>Training rewards per style</h2>'
            + _figure(plots["training"], f"from {config.get('training_dir')}", wide=True)
            + _diagnostics_html(plots)
            + "</section>"
        )
    elif config.get("training_dir"):
        training = (
            '<section id="training"><h2>Training rewards per style</h2><p class="sub">No per-style reward '
            f"logs found in {_e(config.get('training_dir'))}.</p></section>"
        )
    footer = (
        f"Intervals: percentile bootstrap of the mean, {config.get('bootstrap_resamples')} resamples, seed "
        f"{config.get('bootstrap_seed')}; differences: paired bootstrap over items (same text, same seed). "
        f"A style is flagged when its CER difference interval lies entirely above 0 or its mean CER rises by more "
        f"than {CER_WORSE_THRESHOLD:.2f}. A style looks gamed when a style score (style probability or CLAP "
        f"similarity) rose by more than {STYLE_ROSE_THRESHOLD:.2f} on average while DNSMOS BAK or OVRL fell "
        f"by more than {QUALITY_FELL_THRESHOLD:.1f} or CER was flagged as worse. Files: <a href='metrics.json'>metrics.json</a>, "
        f"<a href='metrics.csv'>metrics.csv</a>, <a href='clips/metadata.csv'>clips/metadata.csv</a>."
        + (f" <b>{_e(TINY_WARNING)}</b>" if tiny else "")
    )
    return _PAGE.substitute(
        title=_e(title),
        subtitle=subtitle,
        warning=warning,
        nav_training='<a href="#training">training</a>' if training else "",
        setup=_setup_html(config, n_clips, failures),
        flags=_flags_html(flags, BASE in models and ADAPTER in models)
        + _alarms_html(alarms, BASE in models and ADAPTER in models),
        overall=_overall_table(rows),
        style_table=_style_table(
            rows,
            styles,
            {f["style"]: f.get("severity", "clear") for f in flags},
            {a["style"]: a.get("severity", "clear") for a in alarms},
        ),
        plots="".join(plot_parts) or '<p class="sub">No plots.</p>',
        confusion=f'<div class="plots">{"".join(conf_parts)}</div>' if conf_parts else "",
        training=training,
        listen=_listen_html(records, catalog, styles, alarms),
        details=_details_html(rows, styles),
        footer=footer,
    )
