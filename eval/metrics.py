"""What eval measures per clip, and how clips become per-style tables (means, intervals, paired differences).

A clip record is a flat dict (one row of ``clips/metadata.csv``): identity (style, model, item, text,
seed) plus one column per metric below. ``summarize`` turns the records into one row per style x model x
metric with the mean, its bootstrap interval, n, and for the adapter the paired difference to the base
(same item, same seed). ``flag_styles`` marks styles whose intelligibility got worse; ``gaming_alarms``
marks styles whose style score rose while quality or intelligibility fell (a policy that games its judge).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from stylegrpo.styles import TARGET_FIELDS

from . import stats

BASE = "base"  # model label of the clips from the base model
ADAPTER = "adapter"  # model label of the clips from base + LoRA adapter
MODELS = (BASE, ADAPTER)
OVERALL = "ALL"  # the pseudo-style of the overall rows (every clip of every style pooled)

# A style is flagged "intelligibility worse" when the adapter's CER minus the base's CER has a paired 95 %
# interval entirely above 0 (a clear increase), OR when its mean increase exceeds this many CER points
# (0.05 = 5 percentage points: a worsening a listener notices, even when n is too small to be "significant").
CER_WORSE_THRESHOLD = 0.05
# Reward-hacking alarm: a style "looks gamed" when its style score ROSE (a style metric's paired mean
# difference above STYLE_ROSE_THRESHOLD) while its quality or intelligibility FELL (BAK or OVRL mean
# difference below -QUALITY_FELL_THRESHOLD MOS, or the CER flag above). Thresholds on the means, not only
# intervals, so a tiny but "significant" shift on many clips raises no alarm; "clear" when the intervals
# also exclude 0. This is what the origin saw: CLAP up, reverb in.
STYLE_ROSE_METRICS = ("style_prob", "clap_similarity")  # the style judges' own numbers
STYLE_ROSE_THRESHOLD = 0.02  # style probability / CLAP cosine points: a rise larger than run-to-run noise
QUALITY_FELL_METRICS = ("dnsmos_bak", "dnsmos_ovrl")  # DNSMOS: noise, reverb, codec garbage
QUALITY_FELL_THRESHOLD = 0.2  # MOS points: 20 dB of added white noise costs ~1.5 BAK, RT60 0.3 s ~0.2


@dataclass(frozen=True)
class Metric:
    name: str  # column in the clip records
    label: str  # human name in tables and plots
    better: str | None  # "higher", "lower", or None (a measure with no better side, e.g. pitch)
    key: bool = False  # shown in the main tables and plotted per style
    fmt: str = ".3f"  # number format in the report
    help: str = ""


METRICS: tuple[Metric, ...] = (
    Metric(
        "style_correct",
        "style accuracy",
        "higher",
        True,
        ".2f",
        "share of clips whose own style is the CLAP-nearest of all catalog styles",
    ),
    Metric(
        "style_prob",
        "style probability",
        "higher",
        True,
        ".3f",
        "CLAP softmax probability of the clip's own style among all catalog styles (the style reward)",
    ),
    Metric(
        "clap_similarity",
        "CLAP similarity",
        "higher",
        True,
        ".3f",
        "cosine between the clip and its style's phrase",
    ),
    Metric("cer", "CER", "lower", True, ".3f", "character error rate of the ASR transcript (capped at 1)"),
    Metric("wer", "WER", "lower", True, ".3f", "word error rate of the ASR transcript (capped at 1)"),
    Metric(
        "whisper_nll",
        "Whisper NLL",
        "lower",
        True,
        ".3f",
        "mean negative log-likelihood per text token under Whisper, teacher-forced",
    ),
    Metric(
        "target_score",
        "acoustic target score",
        "higher",
        True,
        ".3f",
        "1 inside every acoustic target range of the style, decaying outside; 1 when the style has none",
    ),
    Metric(
        "dnsmos_bak",
        "DNSMOS BAK",
        "higher",
        True,
        ".2f",
        "background intrusiveness (noise, reverb), 1-5, higher = cleaner; the clean reward's input",
    ),
    Metric(
        "dnsmos_ovrl",
        "DNSMOS OVRL",
        "higher",
        False,
        ".2f",
        "overall quality, 1-5 (rates whispering as poor: read it beside the style)",
    ),
    Metric(
        "dnsmos_sig",
        "DNSMOS SIG",
        "higher",
        False,
        ".2f",
        "speech signal distortion, 1-5 (rates whispering as distorted: read it beside the style)",
    ),
    Metric(
        "clean",
        "clean reward",
        "higher",
        False,
        ".2f",
        "the clean reward: BAK mapped to [0, 1] against the style's quality target (1 when opted out)",
    ),
    Metric(
        "speaking_rate",
        "speaking rate (syll/s)",
        None,
        False,
        ".2f",
        "syllables of the text per second of detected speech",
    ),
    Metric("pitch_median_hz", "median pitch (Hz)", None, False, ".1f", "median F0 over voiced speech frames"),
    Metric(
        "pitch_spread_semitones",
        "pitch spread (st)",
        None,
        False,
        ".2f",
        "standard deviation of F0 in semitones (monotone < 2, lively > 4)",
    ),
    Metric("loudness_dbfs", "loudness (dBFS)", None, False, ".1f", "RMS level of the speech frames"),
    Metric(
        "voiced_fraction", "voiced fraction", None, False, ".2f", "share of speech frames that are voiced"
    ),
    Metric("duration_s", "duration (s)", None, False, ".2f", "length of the clip"),
    Metric(
        "silence_fraction", "silence fraction", None, False, ".2f", "share of the clip that is not speech"
    ),
    Metric(
        "no_speech",
        "no speech",
        "lower",
        False,
        ".2f",
        "share of clips with no speech tokens or no detected speech",
    ),
    Metric(
        "asr_hallucinated",
        "ASR hallucinated",
        "lower",
        False,
        ".2f",
        "share of clips whose transcript is an ASR freak-out (a loop, far longer than the text, or text on "
        "near-silence): their CER reflects the recogniser, not the speech",
    ),
    Metric(
        "truncated",
        "cut at cap",
        "lower",
        False,
        ".2f",
        "share of clips that hit the generation length cap before the end token",
    ),
    Metric(
        "speaker_similarity",
        "speaker similarity",
        "higher",
        False,
        ".3f",
        "cosine between the clip's speaker embedding (WavLM x-vector) and its reference speaker's; only clips "
        "spoken with a reference voice",
    ),
    Metric(
        "classifier_prob",
        "AudioSet style probability",
        "higher",
        False,
        ".3f",
        "the second style judge (AudioSet classifier): probability of the style's classifier_labels; only "
        "styles that name some",
    ),
)
# one score per acoustic target field (1 inside the style's range); NaN for styles that declare no such target
METRICS += tuple(
    Metric(
        f"target_{name}",
        f"{name.replace('_', ' ')} target score",
        "higher",
        False,
        ".2f",
        f"1 when {name} ({unit}) is inside the style's target range, decaying outside; only styles with that target",
    )
    for name, (unit, _lo, _hi) in TARGET_FIELDS.items()
)
METRIC_BY_NAME = {m.name: m for m in METRICS}
KEY_METRICS = tuple(m for m in METRICS if m.key)


def metric(name: str) -> Metric:
    return METRIC_BY_NAME[name]


def _values(records: Sequence[dict], name: str) -> np.ndarray:
    out = np.full(len(records), np.nan)
    for i, r in enumerate(records):
        v = r.get(name)
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)):
            out[i] = float(v)
    return out


def _paired(base: Sequence[dict], adapter: Sequence[dict], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Adapter and base values of the items both models have, in the same order."""
    by_key = {(r["style"], r["item"]): r for r in base}
    pairs = [(a, by_key[(a["style"], a["item"])]) for a in adapter if (a["style"], a["item"]) in by_key]
    a_vals = _values([a for a, _ in pairs], name)
    b_vals = _values([b for _, b in pairs], name)
    return a_vals, b_vals


def summarize(
    records: Sequence[dict],
    styles: Sequence[str],
    *,
    metrics: Iterable[Metric] = METRICS,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    seed: int = stats.DEFAULT_SEED,
) -> list[dict]:
    """One row per (style, model, metric), styles in catalog order then ``OVERALL``.

    Columns: style, model, metric, mean, ci_low, ci_high, n, and (adapter rows, when base clips exist)
    diff_mean, diff_ci_low, diff_ci_high, diff_n: the paired difference adapter minus base.
    """
    metrics = tuple(metrics)
    models = [m for m in MODELS if any(r["model"] == m for r in records)]
    rows: list[dict] = []
    for style in [*styles, OVERALL]:
        group = [r for r in records if style == OVERALL or r["style"] == style]
        by_model = {m: [r for r in group if r["model"] == m] for m in models}
        for model in models:
            for met in metrics:
                iv = stats.bootstrap_mean(
                    _values(by_model[model], met.name),
                    n_resamples=n_resamples,
                    confidence=confidence,
                    seed=seed,
                )
                row = {
                    "style": style,
                    "model": model,
                    "metric": met.name,
                    "mean": iv.mean,
                    "ci_low": iv.low,
                    "ci_high": iv.high,
                    "n": iv.n,
                    "diff_mean": math.nan,
                    "diff_ci_low": math.nan,
                    "diff_ci_high": math.nan,
                    "diff_n": 0,
                }
                if model == ADAPTER and BASE in by_model:
                    a_vals, b_vals = _paired(by_model[BASE], by_model[ADAPTER], met.name)
                    d = stats.paired_difference(
                        a_vals, b_vals, n_resamples=n_resamples, confidence=confidence, seed=seed
                    )
                    row.update(diff_mean=d.mean, diff_ci_low=d.low, diff_ci_high=d.high, diff_n=d.n)
                rows.append(row)
    return rows


def find_row(rows: Sequence[dict], style: str, model: str, name: str) -> dict | None:
    for r in rows:
        if r["style"] == style and r["model"] == model and r["metric"] == name:
            return r
    return None


def flag_styles(rows: Sequence[dict], threshold: float = CER_WORSE_THRESHOLD) -> list[dict]:
    """Styles (and OVERALL) whose CER got worse with the adapter; each flag says why.

    Worse = the paired CER difference interval lies entirely above 0, or its mean exceeds ``threshold``.
    """
    flags = []
    for r in rows:
        if r["model"] != ADAPTER or r["metric"] != "cer" or not r["diff_n"]:
            continue
        reasons = []
        iv = stats.Interval(r["diff_mean"], r["diff_ci_low"], r["diff_ci_high"], r["diff_n"])
        if stats.excludes_zero(iv) > 0:
            reasons.append(f"CER difference interval [{iv.low:+.3f}, {iv.high:+.3f}] is entirely above 0")
        if iv.mean > threshold:
            reasons.append(f"mean CER rose by {iv.mean:+.3f} (> {threshold:.2f})")
        if reasons:
            # "clear": the interval excludes 0; "large": a big mean rise whose interval still includes 0
            severity = "clear" if stats.excludes_zero(iv) > 0 else "large"
            flags.append(
                {
                    "style": r["style"],
                    "metric": "cer",
                    "diff_mean": iv.mean,
                    "severity": severity,
                    "reasons": reasons,
                }
            )
    return flags


def _interval(r: dict) -> stats.Interval:
    return stats.Interval(r["diff_mean"], r["diff_ci_low"], r["diff_ci_high"], r["diff_n"])


def gaming_alarms(
    rows: Sequence[dict],
    cer_flags: Sequence[dict] = (),
    *,
    style_threshold: float = STYLE_ROSE_THRESHOLD,
    quality_threshold: float = QUALITY_FELL_THRESHOLD,
) -> list[dict]:
    """Styles whose style score rose while quality or intelligibility fell; each alarm says why in words.

    ``cer_flags`` are ``flag_styles``'s flags (intelligibility worse). Each alarm: style, rose (reasons the
    style score rose), fell (reasons quality or intelligibility fell), severity ("clear" when both sides'
    intervals exclude 0, else "possible").
    """
    by_style: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r["model"] == ADAPTER and r["diff_n"]:
            by_style.setdefault(r["style"], {})[r["metric"]] = r
    cer_by_style = {f["style"]: f for f in cer_flags}
    alarms = []
    for style, mets in by_style.items():
        rose, fell, clear_rose, clear_fell = [], [], False, False
        for name in STYLE_ROSE_METRICS:
            if name not in mets:
                continue
            iv = _interval(mets[name])
            if iv.mean > style_threshold:
                clear_rose |= stats.excludes_zero(iv) > 0
                rose.append(
                    f"{METRIC_BY_NAME[name].label} rose by {iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]"
                )
        for name in QUALITY_FELL_METRICS:
            if name not in mets:
                continue
            iv = _interval(mets[name])
            if iv.mean < -quality_threshold:
                clear_fell |= stats.excludes_zero(iv) < 0
                fell.append(
                    f"{METRIC_BY_NAME[name].label} fell by {iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]"
                )
        if style in cer_by_style:
            clear_fell |= cer_by_style[style].get("severity") == "clear"
            fell.append("intelligibility fell: " + "; ".join(cer_by_style[style]["reasons"]))
        if rose and fell:
            alarms.append(
                {
                    "style": style,
                    "rose": rose,
                    "fell": fell,
                    "severity": "clear" if clear_rose and clear_fell else "possible",
                }
            )
    return alarms
