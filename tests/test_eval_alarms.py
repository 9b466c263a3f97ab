"""Reward-hacking alarms in eval: a style whose style score rose while DNSMOS quality or CER got worse is
named, with the reasons in words, in metrics.json/csv and in the report beside its audio."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from stylegrpo.audio import SAMPLE_RATE, write_wav
from stylegrpo.eval.metrics import ADAPTER, BASE, OVERALL, find_row, flag_styles, gaming_alarms, summarize
from stylegrpo.eval.results import write_results
from stylegrpo.styles import parse_catalog

STYLES = ["gamed", "honest", "noisy_only", "garbled"]
CATALOG_YAML = "styles:\n" + "".join(
    f"  - name: {s}\n    phrase: a {s} voice\n    descriptions: [a {s} voice]\n" for s in STYLES
)
N = 12


def records(n: int = N, seed: int = 0) -> list[dict]:
    """gamed: CLAP up, BAK down (the origin's reverb artefact); honest: CLAP up, quality kept; noisy_only:
    quality down but the style score did not rise; garbled: CLAP up and CER much worse."""
    rng = np.random.default_rng(seed)
    out = []
    for style in STYLES:
        for item in range(n):
            base = {
                "clap_similarity": float(rng.uniform(0.1, 0.3)),
                "style_prob": float(rng.uniform(0.2, 0.4)),
                "dnsmos_bak": float(rng.uniform(3.5, 4.0)),
                "dnsmos_ovrl": float(rng.uniform(2.8, 3.2)),
                "cer": float(rng.uniform(0.05, 0.15)),
            }
            shift = {
                "gamed": {"clap_similarity": 0.1, "dnsmos_bak": -1.2, "dnsmos_ovrl": -0.6},
                "honest": {"clap_similarity": 0.1},
                "noisy_only": {"dnsmos_bak": -1.0},
                "garbled": {"clap_similarity": 0.1, "cer": 0.4},
            }[style]
            noise = rng.normal(0, 0.01, len(base))
            adapter = {k: v + shift.get(k, 0.0) + e for (k, v), e in zip(base.items(), noise, strict=True)}
            for model, values in ((BASE, base), (ADAPTER, adapter)):
                out.append({"style": style, "model": model, "item": item, **values})
    return out


def test_alarm_names_the_gamed_styles_and_why():
    rows = summarize(records(), STYLES, n_resamples=500)
    alarms = {a["style"]: a for a in gaming_alarms(rows, flag_styles(rows))}
    assert set(alarms) == {"gamed", "garbled", OVERALL}
    gamed = alarms["gamed"]
    assert gamed["severity"] == "clear"
    assert any(re.match(r"CLAP similarity rose by \+0\.(09|10)", r) for r in gamed["rose"])
    assert any("DNSMOS BAK fell by -1.2" in r for r in gamed["fell"])
    assert any("intelligibility fell" in r for r in alarms["garbled"]["fell"])
    # quality fell but the style did not rise: a worse model, not a gamed judge
    assert find_row(rows, "noisy_only", ADAPTER, "dnsmos_bak")["diff_mean"] < -0.9


def test_small_changes_raise_no_alarm():
    recs = records()
    for r in recs:  # undo the shifts: the adapter equals the base up to noise
        if r["model"] == ADAPTER:
            twin = next(
                b for b in recs if b["model"] == BASE and (b["style"], b["item"]) == (r["style"], r["item"])
            )
            r.update({k: twin[k] + 0.001 for k in ("clap_similarity", "dnsmos_ovrl", "cer")})
            r["dnsmos_bak"] = twin["dnsmos_bak"] - 0.05  # a clear but small quality drop: no alarm
    rows = summarize(recs, STYLES, n_resamples=300)
    assert gaming_alarms(rows, flag_styles(rows)) == []
    base_only = [r for r in recs if r["model"] == BASE]
    assert gaming_alarms(summarize(base_only, STYLES, n_resamples=100)) == []


def test_report_says_which_styles_look_gamed_beside_their_audio(tmp_path):
    catalog = parse_catalog(CATALOG_YAML)
    recs = []
    for r in records():
        cid = f"{r['style']}-{r['item']:03d}-{r['model']}"
        wav = 0.1 * np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE)
        write_wav(tmp_path / "clips" / f"{cid}.wav", wav)
        recs.append(
            {
                **r,
                "clip_id": cid,
                "file_name": f"{cid}.wav",
                "text": "hello there",
                "phrase": f"a {r['style']} voice",
                "seed": 0,
                "num_codes": 25,
                "num_samples": SAMPLE_RATE // 2,
                "duration_s": 0.5,
                "scored": True,
            }
        )
    config = {"preset": "llasa-1b", "adapter": "/x", "n_texts": N, "styles": [{"name": s} for s in STYLES]}
    metrics = write_results(tmp_path, recs, config, catalog, tiny=False, n_resamples=300)
    assert {a["style"] for a in metrics["alarms"]} == {"gamed", "garbled", OVERALL}
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["alarms"] == json.loads(json.dumps(metrics["alarms"]))
    frame = pd.read_csv(tmp_path / "metrics.csv")
    assert set(frame[frame["flag_gamed"]]["style"]) == {"gamed", "garbled", OVERALL}
    page = (tmp_path / "report.html").read_text()
    assert re.search(r"gamed looks gamed: its style score rose \(CLAP similarity rose by \+0\.(09|10)", page)
    card = page[page.index('id="listen-gamed"') : page.index('id="listen-honest"')]
    assert "looks gamed" in card and "DNSMOS BAK fell" in card and "<audio" in card  # beside its audio
    honest = page[page.index('id="listen-honest"') : page.index('id="listen-noisy_only"')]
    assert "gamed" not in honest.replace('id="listen-honest"', "")
    assert (
        pytest.approx(find_row(metrics["rows"], "gamed", ADAPTER, "dnsmos_bak")["diff_mean"], abs=0.05)
        == -1.2
    )


def test_tradeoff_and_dominance_plots_from_the_training_logs(tmp_path):
    from stylegrpo.eval.plots import diagnostic_series

    catalog = parse_catalog(CATALOG_YAML)
    history = []
    for step in (5, 10, 15):
        entry = {"step": step, "loss": 0.1, "rewards/cer/gamed": 0.5}
        for s in STYLES:
            entry[f"tradeoff/style~whisper_nll/{s}"] = -0.1 * step / 5
            entry[f"tradeoff/style~cer/{s}"] = 0.2
            entry[f"dominance/cer/{s}"] = 0.7
            entry[f"dominance/style/{s}"] = 0.3
        history.append(entry)
    series = diagnostic_series(history, STYLES, "tradeoff")
    assert set(series) == {"style~whisper_nll", "style~cer"}
    assert series["style~whisper_nll"]["gamed"] == [(5, -0.1), (10, -0.2), (15, pytest.approx(-0.3))]
    train = tmp_path / "train"
    train.mkdir()
    (train / "trainer_state.json").write_text(json.dumps({"global_step": 15, "log_history": history}))
    out = tmp_path / "eval"
    recs = [
        {
            **r,
            "text": "hi",
            "phrase": "p",
            "seed": 0,
            "num_codes": 0,
            "num_samples": 0,
            "duration_s": 0.0,
            "clip_id": f"{r['style']}-{r['item']}-{r['model']}",
            "file_name": "x.wav",
        }  # fmt: skip
        for r in records(3)
    ]
    config = {"preset": "llasa-1b", "adapter": "/x", "n_texts": 3, "styles": [{"name": s} for s in STYLES]}
    write_results(out, recs, config, catalog, tiny=False, training_dir=train, n_resamples=100)
    assert (out / "plots" / "training_tradeoffs.png").stat().st_size > 0
    assert (out / "plots" / "training_dominance.png").stat().st_size > 0
    page = (out / "report.html").read_text()
    assert 'id="tradeoffs"' in page and "plots/training_tradeoffs.png" in page and 'id="dominance"' in page
