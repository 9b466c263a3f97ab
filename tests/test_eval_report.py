"""The eval outputs from known clip records (no models): file layout, metrics files, plots, the audiofolder
layout, training curves, and the report in a real headless browser."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from stylegrpo.audio import SAMPLE_RATE, read_wav, write_wav
from stylegrpo.eval import browser
from stylegrpo.eval.metrics import ADAPTER, BASE, OVERALL
from stylegrpo.eval.report import TINY_WARNING
from stylegrpo.eval.results import find_trainer_state, write_results
from stylegrpo.styles import parse_catalog

CATALOG_YAML = """
styles:
  - name: whispering
    phrase: a man whispering
    descriptions: [a man whispering, a hushed whisper]
    targets: {loudness_dbfs: [-45, -25]}
  - name: shouting
    phrase: a man shouting loudly
    descriptions: [a man shouting loudly]
  - name: deep_male
    phrase: a man with a deep voice
    descriptions: [a man with a deep voice]
"""
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella.",
    "It is a <b>bold</b> & new day.",
]


@pytest.fixture(scope="module")
def catalog():
    return parse_catalog(CATALOG_YAML)


def fake_eval(out, catalog, *, adapter=True, tiny=True, training_dir=None):
    """Write clips + records like a real eval would, then the final files. Shouting's CER gets worse."""
    rng = np.random.default_rng(0)
    records = []
    models = [BASE, ADAPTER] if adapter else [BASE]
    for style in catalog.names:
        for item, text in enumerate(TEXTS):
            base_cer = float(rng.uniform(0.1, 0.3))
            for model in models:
                cid = f"{style}-{item:03d}-{model}"
                empty = style == "deep_male" and item == 1 and model == BASE  # a clip with no speech tokens
                n = 0 if empty else int(SAMPLE_RATE * (0.5 + 0.1 * item))
                wav = 0.3 * np.sin(2 * np.pi * 200 * np.arange(n) / SAMPLE_RATE)
                write_wav(out / "clips" / f"{cid}.wav", wav)
                worse = 0.3 if (style == "shouting" and model == ADAPTER) else 0.0
                pred = style if (model == ADAPTER or item == 0) else "shouting"
                records.append(
                    {
                        "clip_id": cid,
                        "file_name": f"{cid}.wav",
                        "style": style,
                        "model": model,
                        "item": item,
                        "text": text,
                        "phrase": catalog.get(style).phrase,
                        "seed": 7,
                        "num_codes": n // 320,
                        "num_samples": n,
                        "duration_s": n / SAMPLE_RATE,
                        "truncated": item == 2,
                        "no_speech": empty,
                        "cer": base_cer + worse,
                        "wer": min(1.0, 2 * base_cer + worse),
                        "clap_similarity": 0.2 + (0.1 if model == ADAPTER else 0.0),
                        "style_prob": 0.4,
                        "predicted_style": pred,
                        "style_correct": float(pred == style),
                        "whisper_nll": 2.0,
                        "target_score": 0.5,
                        "pitch_median_hz": float("nan") if empty else 200.0,
                        "hypothesis": "the quick <i>brown</i>",
                        "scored": True,
                    }
                )
    config = {
        "preset": "tiny" if tiny else "llasa-1b",
        "adapter": "/x/adapter" if adapter else None,
        "texts_source": "texts.txt",
        "n_texts": len(TEXTS),
        "seed": 0,
        "styles": [{"name": s.name, "phrase": s.phrase} for s in catalog],
        "models": {"policy": "tiny:llasa"},
    }
    metrics = write_results(
        out, records, config, catalog, tiny=tiny, training_dir=training_dir, n_resamples=500
    )
    return records, metrics


def write_trainer_state(folder, catalog, steps=(10, 20)):
    """A TRL-like output folder: checkpoint-N/trainer_state.json with per-style reward logs."""
    for last in steps:
        history = []
        for step in range(1, last + 1):
            entry = {"step": step, "loss": 0.1, "rewards/clap_style/mean": 0.1 * step, "rewards/cer/std": 0.2}
            for i, s in enumerate(catalog.names):
                entry[f"rewards/clap_style/{s}"] = 0.01 * step * (i + 1)
                entry[f"rewards/intelligibility/{s}"] = 1 - 0.02 * step
                entry[f"reward_by_style/{s}"] = 0.5 + 0.01 * step
            history.append(entry)
        ck = folder / f"checkpoint-{last}"
        ck.mkdir(parents=True)
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": last, "log_history": history}))
    return folder


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, catalog):
    out = tmp_path_factory.mktemp("eval-report")
    train = write_trainer_state(tmp_path_factory.mktemp("train"), catalog)
    records, metrics = fake_eval(out, catalog, training_dir=train)
    return out, records, metrics


def test_layout_and_metrics_files(report_dir, catalog):
    out, records, metrics = report_dir
    for name in (
        "report.html",
        "metrics.json",
        "metrics.csv",
        "clips/metadata.csv",
        "plots/differences.png",
        "plots/bars_cer.png",
        "plots/bars_style_correct.png",
        "plots/confusion_base.png",
        "plots/confusion_adapter.png",
        "plots/training_rewards.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not list(out.rglob(".*tmp*")), "no temporary files are left behind"

    frame = pd.read_csv(out / "metrics.csv")
    assert {
        "style",
        "model",
        "metric",
        "mean",
        "ci_low",
        "ci_high",
        "n",
        "diff_mean",
        "diff_ci_low",
        "diff_ci_high",
        "diff_n",
        "better",
        "flag_cer_worse",
    } <= set(frame.columns)
    styles = [*catalog.names, OVERALL]
    assert set(frame["style"]) == set(styles) and set(frame["model"]) == {BASE, ADAPTER}
    assert len(frame) == len(styles) * 2 * frame["metric"].nunique()
    cer = frame[
        (frame["style"] == "shouting") & (frame["model"] == ADAPTER) & (frame["metric"] == "cer")
    ].iloc[0]
    assert cer.diff_mean == pytest.approx(0.3) and cer.diff_ci_low > 0 and bool(cer.flag_cer_worse)
    assert (frame[frame.model == BASE]["diff_n"] == 0).all()

    data = json.loads((out / "metrics.json").read_text())  # strict JSON: NaN became null
    assert data["tiny"] is True and "plumbing" in data["note"]
    assert data["config"]["trainer_state"].endswith("checkpoint-20/trainer_state.json")  # the latest one
    assert {f["style"] for f in data["flags"]} == {"shouting", OVERALL}
    conf = data["confusion"][BASE]
    assert conf["labels"] == catalog.names
    m = np.array(conf["matrix"])
    assert m.sum() == len(catalog.names) * len(TEXTS)
    assert m[catalog.names.index("whispering"), catalog.names.index("shouting")] == 2  # items 1 and 2
    assert data["confusion"][ADAPTER]["accuracy"] == 1.0
    assert data["failures"][BASE]["deep_male"] == {"clips": 3, "no_speech": 1, "truncated": 1}
    pitch = next(
        r
        for r in data["rows"]
        if (r["style"], r["model"], r["metric"]) == ("deep_male", BASE, "pitch_median_hz")
    )
    assert pitch["n"] == 2  # the silent clip has no pitch: left out, not counted as 0


def test_metadata_is_an_audiofolder(report_dir):
    """clips/ follows datasets' audiofolder layout; the real loader runs when torchcodec can."""
    from datasets.packaged_modules.audiofolder.audiofolder import AudioFolder

    out, records, _ = report_dir
    clips = out / "clips"
    meta = pd.read_csv(clips / "metadata.csv")
    assert "metadata.csv" in AudioFolder.METADATA_FILENAMES
    assert meta.columns[0] == "file_name"
    assert {"text", "style", "model", "seed", "cer", "clap_similarity", "style_correct"} <= set(meta.columns)
    wavs = sorted(p.name for p in clips.iterdir() if p.suffix.lower() in AudioFolder.EXTENSIONS)
    assert sorted(meta["file_name"]) == wavs and len(wavs) == len(records)  # every clip listed exactly once
    for name in meta["file_name"][:4]:
        assert read_wav(clips / name).dtype == np.float32
    import soundfile as sf

    assert {sf.info(str(clips / n)).samplerate for n in wavs} == {SAMPLE_RATE}
    assert load_audiofolder(clips, out.parent / "hf-cache")["train"].num_rows == len(records)


def load_audiofolder(clips, cache_dir):
    """datasets.load_dataset("audiofolder") offline; skips when datasets cannot read audio here."""
    try:
        import torchcodec.decoders  # noqa: F401  (datasets >= 4 reads and writes audio only through it)
    except (ImportError, OSError, RuntimeError) as e:
        pytest.skip(
            "datasets' audiofolder needs torchcodec, which is not importable here "
            f"({type(e).__name__}: {str(e)[:120]}); the layout was checked without it"
        )
    import datasets

    ds = datasets.load_dataset("audiofolder", data_dir=str(clips), cache_dir=str(cache_dir))
    row = ds["train"][0]
    assert {"audio", "text", "style", "model"} <= set(row)
    return ds


def test_trainer_state_is_found_in_the_latest_checkpoint(tmp_path, catalog):
    write_trainer_state(tmp_path, catalog, steps=(5, 12))
    assert find_trainer_state(tmp_path) == tmp_path / "checkpoint-12" / "trainer_state.json"
    from stylegrpo.eval.plots import TOTAL_REWARD, reward_series

    history = json.loads(find_trainer_state(tmp_path).read_text())["log_history"]
    series = reward_series(history, catalog.names)
    assert set(series) == {"clap_style", "intelligibility", TOTAL_REWARD}  # rewards/cer/std is not per style
    assert set(series["clap_style"]) == {*catalog.names, "mean"}
    assert series["clap_style"]["shouting"][-1] == (12, pytest.approx(0.24))


def test_base_only_and_real_preset_report(tmp_path, catalog):
    records, metrics = fake_eval(tmp_path, catalog, adapter=False, tiny=False)
    page = (tmp_path / "report.html").read_text()
    assert TINY_WARNING not in page and "tiny-warning" not in page
    assert "Base model only" in page and "<b>bold</b>" not in page  # texts are escaped
    assert metrics["flags"] == [] and not (tmp_path / "plots" / "differences.png").exists()
    assert all(r["model"] == BASE for r in metrics["rows"])


@pytest.fixture(scope="module")
def chromium():
    exe = browser.chromium_path()
    if exe is None:
        pytest.skip(
            f"no Chromium at {browser.DEFAULT_CHROMIUM} or on PATH (Debian: apt-get install chromium)"
        )
    pytest.importorskip("playwright.sync_api", reason="the playwright package is a dev extra")
    return exe


def check_report_in_browser(report, screenshot=None):
    seen = browser.check_report(report, screenshot=screenshot)
    assert browser.problems(seen) == []
    assert seen.n_table_rows > 10 and all(r.startswith("file://") for r in seen.requests)
    return seen


def test_report_in_headless_chromium(report_dir, chromium, tmp_path):
    out, records, _ = report_dir
    seen = check_report_in_browser(out / "report.html", screenshot=tmp_path / "report.png")
    # differences, 8 metric bars (DNSMOS BAK too), 2 confusions, training curves
    assert len(seen.images) == 12
    n_audio = sum(1 for r in records if r["num_samples"] > 0)
    assert len(seen.audio) == n_audio  # the empty clip gets a note, not a broken player
    assert "no audio (the model produced no speech tokens)" in seen.text
    assert all(a["duration"] == pytest.approx(0.5, abs=0.25) for a in seen.audio)
    assert TINY_WARNING.split(":")[0] in seen.text and "CER worse" in seen.text
    assert "Training rewards per style" in seen.text
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_browser_check_catches_network_and_broken_files(report_dir, chromium, tmp_path):
    """The harness itself: an external request, a missing image and a missing clip are all reported."""
    out, _, _ = report_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    page = (copy / "report.html").read_text()
    page = page.replace("</main>", '<img src="http://example.invalid/x.png" alt="remote"></main>')
    (copy / "report.html").write_text(page)
    (copy / "plots" / "bars_cer.png").unlink()
    (copy / "clips" / "whispering-000-base.wav").unlink()
    seen = browser.check_report(copy / "report.html")
    assert seen.blocked == ["http://example.invalid/x.png"]
    found = browser.problems(seen)
    assert any("left file://" in p for p in found) and sum("did not load" in p for p in found) == 3
    broken = {i["src"].rsplit("/", 1)[-1] for i in seen.broken_images}
    assert broken == {"x.png", "bars_cer.png"}
    assert [a["src"].rsplit("/", 1)[-1] for a in seen.broken_audio] == ["whispering-000-base.wav"]
