"""`stylegrpo eval` end to end on the tiny preset: a dataset built by `stylegrpo build`, a LoRA adapter made
here with peft, real synthesis and real judges (tiny twins), resuming, the report in a headless browser."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from stylegrpo.audio import read_wav
from stylegrpo.cli import main
from stylegrpo.eval import browser
from stylegrpo.eval.metrics import ADAPTER, BASE
from stylegrpo.eval.run import RECORDS_DIR
from stylegrpo.speech_time import tokens_for_seconds
from stylegrpo.styles import load_catalog
from stylegrpo.synth import Synthesizer

STYLES_YAML = """
styles:
  - name: whispering
    phrase: a man whispering
    descriptions: [a man whispering, someone speaking in a hushed whisper]
    targets: {loudness_dbfs: [-45, -25], voiced_fraction: [0.0, 0.25]}
    classifier_labels: [Whispering]
  - name: shouting
    phrase: a man shouting loudly
    descriptions: [a man shouting loudly, a loud, forceful shout]
    targets: {loudness_dbfs: [-14, -3]}
  - name: child
    phrase: a young child speaking
    descriptions: [a young child speaking]
"""
CORPUS = [
    "Good morning, everyone, and welcome back.",
    "Please close the door behind you.",
    "The kettle is boiling in the kitchen.",
    "Turn left at the bakery, then walk two blocks.",
    "Could you pass me the salt, please?",
    "We finally reached the top of the hill.",
    "The library opens at nine on Saturdays.",
    "She painted the fence a bright shade of green.",
    "Our train was delayed by almost an hour.",
    "He forgot his umbrella at the station again.",
    "The children laughed at the clumsy puppy.",
    "A cold wind blew across the empty field.",
]
N_TEXTS = 2  # texts per style: 3 styles x 2 texts = 6 clips per model, one generation batch each
MAX_SECONDS = "1"  # 51 codec tokens per clip (50 + the end token): keeps the tiny run to seconds
CLIPS_PER_MODEL = 3 * N_TEXTS


def make_adapter(folder):
    """A LoRA on the tiny policy with random non-zero B, so the adapter really changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from stylegrpo.tiny import resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny:llasa"))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(str(folder))
    return folder


class SynthCalls:
    """Counts Synthesizer.synthesize calls (the real method still runs)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = Synthesizer.synthesize

        def counting(this, *args, **kwargs):
            self.calls += 1
            return original(this, *args, **kwargs)

        monkeypatch.setattr(Synthesizer, "synthesize", counting)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-e2e")
    styles = root / "styles.yaml"
    styles.write_text(STYLES_YAML)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    argv = [
        "build",
        "--styles",
        str(styles),
        "--corpus",
        str(corpus),
        "--test-size",
        "4",
        "--out",
        str(root / "data"),
    ]
    assert main(argv) == 0
    adapter = make_adapter(root / "adapter")
    train = root / "train" / "checkpoint-2"
    train.mkdir(parents=True)
    history = [
        {"step": s, **{f"rewards/style/{n}": 0.1 * s + i for i, n in enumerate(("whispering", "child"))}}
        for s in (1, 2)
    ]
    (train / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": history}))
    return {
        "root": root,
        "styles": styles,
        "data": root / "data",
        "adapter": adapter,
        "train": root / "train",
    }


def eval_argv(setup, out, *extra, adapter=True):
    argv = [
        "eval",
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--styles",
        str(setup["styles"]),
        "--n-per-style",
        str(N_TEXTS),
        "--max-seconds",
        MAX_SECONDS,
        "--out",
        str(out),
        *extra,
    ]
    if "--texts" not in extra:
        argv += ["--dataset", str(setup["data"])]
    if adapter:
        argv += ["--adapter", str(setup["adapter"])]
    return argv


@pytest.fixture(scope="module")
def evaluated(setup):
    out = setup["root"] / "eval"
    with pytest.MonkeyPatch.context() as mp:
        counter = SynthCalls(mp)
        assert main(eval_argv(setup, out, "--training-dir", str(setup["train"]))) == 0
    return out, counter.calls


def _meta(out):
    return pd.read_csv(out / "clips" / "metadata.csv", keep_default_na=False)


def test_eval_writes_every_output_for_both_models(setup, evaluated):
    out, calls = evaluated
    assert calls == 2  # one generation batch per model
    for name in (
        "report.html",
        "metrics.json",
        "metrics.csv",
        "clips/metadata.csv",
        "eval_config.json",
        "plots/differences.png",
        "plots/confusion_base.png",
        "plots/confusion_adapter.png",
        "plots/training_rewards.png",
    ):
        assert (out / name).is_file(), name
    meta = _meta(out)
    assert len(meta) == 2 * CLIPS_PER_MODEL
    assert sorted(meta["model"].unique()) == [ADAPTER, BASE]
    assert set(meta["style"]) == {"whispering", "shouting", "child"}
    test_texts = set(pd.read_parquet(next((setup["data"] / "data").glob("test-*.parquet")))["text"])
    assert set(meta["text"]) <= test_texts and meta["text"].nunique() == N_TEXTS  # same texts in every style
    for col in (
        "cer",
        "wer",
        "clap_similarity",
        "style_prob",
        "whisper_nll",
        "target_score",
        "loudness_dbfs",
    ):
        assert meta[col].notna().all() and np.isfinite(meta[col].astype(float)).all(), col
    assert meta["cer"].between(0, 1).all() and meta["style_correct"].isin([0.0, 1.0]).all()
    # the AudioSet classifier's own-style probability: only whispering names a label here
    prob = meta["classifier_prob"].replace("", "nan").astype(float)  # read with keep_default_na=False
    whisper = (meta["style"] == "whispering") & ~meta["no_speech"].astype(str).eq("True")
    assert (
        whisper.any()
        and prob[whisper].between(0, 1).all()
        and prob[meta["style"] != "whispering"].isna().all()
    )
    assert set(meta["predicted_style"]) <= {"whispering", "shouting", "child"}
    per_target = pd.read_csv(out / "clips" / "metadata.csv").set_index("style")["target_loudness_dbfs"]
    assert per_target.loc[["whispering", "shouting"]].between(0, 1).all()  # styles with a loudness target
    assert per_target.loc[["child"]].isna().all()  # child declares no loudness target
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tiny"] is True
    assert np.array(metrics["confusion"][ADAPTER]["matrix"]).sum() == CLIPS_PER_MODEL
    page = (out / "report.html").read_text()
    assert "tiny twin with RANDOM weights" in page


def test_pairs_share_text_prompt_and_seed_and_differ_by_the_adapter(setup, evaluated):
    out, _ = evaluated
    catalog = load_catalog(setup["styles"])
    meta = _meta(out)
    base = meta[meta["model"] == BASE].set_index(["style", "item"]).sort_index()
    adapted = meta[meta["model"] == ADAPTER].set_index(["style", "item"]).sort_index()
    assert list(base.index) == list(adapted.index)
    for col in ("text", "seed", "batch_position", "prompt", "phrase"):
        assert (base[col] == adapted[col]).all(), col
    for (style, _), row in base.iterrows():
        # the prompt is the catalog's one prompt function with the style's phrase
        assert row["prompt"] == catalog.prompt(row["text"], style)[0]["content"]
    differs = [
        not np.array_equal(read_wav(out / "clips" / b), read_wav(out / "clips" / a))
        for b, a in zip(base["file_name"], adapted["file_name"], strict=True)
    ]
    assert any(differs), "the adapter should change the audio"


def test_base_clips_equal_the_plain_base_model(setup, evaluated):
    """Base clips (adapter switched off) are exactly what the model without any adapter says."""
    out, _ = evaluated
    meta = _meta(out)
    base = meta[meta["model"] == BASE].sort_values("batch_position")
    assert base["seed"].nunique() == 1
    synth = Synthesizer(
        "tiny",
        "cpu",
        catalog=load_catalog(setup["styles"]),
        max_new_tokens=tokens_for_seconds(float(MAX_SECONDS)),
    )
    clips = synth.synthesize(list(base["text"]), list(base["phrase"]), seed=int(base["seed"].iloc[0]))
    for clip, name in zip(clips, base["file_name"], strict=True):
        on_disk = read_wav(out / "clips" / name)
        assert on_disk.shape == clip.wav.shape
        np.testing.assert_allclose(on_disk, np.clip(clip.wav, -1, 1), atol=2 / 32768)  # 16-bit wav


def test_rerun_resumes_without_synthesizing_again(setup, evaluated, monkeypatch):
    out, _ = evaluated
    wavs = sorted((out / "clips").glob("*.wav"))
    before = {p.name: p.stat().st_mtime_ns for p in wavs}
    records_before = {p.name: p.stat().st_mtime_ns for p in (out / RECORDS_DIR).glob("*.json")}
    for name in ("report.html", "metrics.json", "metrics.csv", "clips/metadata.csv"):
        (out / name).unlink()
    counter = SynthCalls(monkeypatch)
    assert main(eval_argv(setup, out, "--training-dir", str(setup["train"]))) == 0
    assert counter.calls == 0
    assert {p.name: p.stat().st_mtime_ns for p in wavs} == before
    assert {p.name: p.stat().st_mtime_ns for p in (out / RECORDS_DIR).glob("*.json")} == records_before
    assert (out / "report.html").is_file() and len(_meta(out)) == 2 * CLIPS_PER_MODEL

    # an interrupted run that lost one clip: only that clip's batch is generated again, and identically
    lost = out / "clips" / "shouting-001-adapter.wav"
    old_audio = read_wav(lost)
    lost.unlink()
    assert main(eval_argv(setup, out)) == 0
    assert counter.calls == 1
    np.testing.assert_array_equal(read_wav(lost), old_audio)
    after = {p.name: p.stat().st_mtime_ns for p in wavs if p != lost}
    assert after == {k: v for k, v in before.items() if k != lost.name}


def test_report_in_headless_chromium(evaluated, tmp_path):
    if browser.chromium_path() is None:
        pytest.skip(
            f"no Chromium at {browser.DEFAULT_CHROMIUM} or on PATH (Debian: apt-get install chromium)"
        )
    pytest.importorskip("playwright.sync_api", reason="the playwright package is a dev extra")
    out, _ = evaluated
    shot = tmp_path / "e2e-report.png"
    seen = browser.check_report(out / "report.html", screenshot=shot)
    assert browser.problems(seen) == []
    assert len(seen.audio) == 2 * CLIPS_PER_MODEL and all(a["duration"] > 0 for a in seen.audio)
    assert len(seen.images) >= 10
    assert shot.stat().st_size > 10_000
    if os.environ.get("STYLEGRPO_KEEP_SCREENSHOT"):  # for a person to look at
        shot.replace(os.environ["STYLEGRPO_KEEP_SCREENSHOT"])


def test_base_only_eval_and_refusing_other_settings(setup, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("Please call Stella.\n\nThe kettle is boiling.\n")
    out = tmp_path / "base-only"
    argv = eval_argv(setup, out, "--texts", str(texts), "--only-styles", "whispering,child", adapter=False)
    assert main(argv) == 0
    meta = _meta(out)
    assert set(meta["model"]) == {BASE} and len(meta) == 2 * N_TEXTS
    assert set(meta["style"]) == {"whispering", "child"}
    confusion = json.loads((out / "metrics.json").read_text())["confusion"][BASE]
    assert confusion["labels"] == ["whispering", "shouting", "child"]  # every catalog style can be heard
    assert [sum(row) for row in confusion["matrix"]] == [N_TEXTS, 0, N_TEXTS]
    assert not (out / "plots" / "differences.png").exists()
    rows = pd.read_csv(out / "metrics.csv")
    assert set(rows["model"]) == {BASE} and (rows["diff_n"] == 0).all()

    capsys.readouterr()
    texts.write_text("A different text entirely.\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "different settings (texts)" in err and "--overwrite" in err
    assert main([*argv, "--overwrite"]) == 0
    assert set(_meta(out)["text"]) == {"A different text entirely."}


def test_cli_errors_name_the_problem(setup, tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    cases = [
        (["eval", "--preset", "tiny", "--out", str(tmp_path / "o")], "--dataset DIR"),
        (
            eval_argv(setup, tmp_path / "o2", "--texts", str(tmp_path / "missing.txt")),
            "missing.txt: file not found",
        ),
        (eval_argv(setup, tmp_path / "busy"), "not a stylegrpo eval folder"),
        (
            [*eval_argv(setup, tmp_path / "o3", adapter=False), "--adapter", str(tmp_path / "busy")],
            "not a PEFT adapter",
        ),
        (  # an --out inside an input is refused before anything is read
            [*eval_argv(setup, tmp_path / "busy" / "o5", adapter=False), "--adapter", str(tmp_path / "busy")],
            "lies inside the input --adapter",
        ),
        (eval_argv(setup, tmp_path / "o4", "--only-styles", "child,opera"), "unknown style 'opera'"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_interrupted_eval_leaves_no_report_and_resumes(setup, tmp_path, monkeypatch):
    out = tmp_path / "interrupted"
    argv = eval_argv(setup, out, "--only-styles", "child")
    original = Synthesizer.synthesize
    calls = []

    def interrupt_second_batch(this, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the adapter's batch: Ctrl-C after the base clips were written
            raise KeyboardInterrupt
        return original(this, *args, **kwargs)

    monkeypatch.setattr(Synthesizer, "synthesize", interrupt_second_batch)
    assert main(argv) == 130
    assert not (out / "report.html").exists() and not (out / "metrics.json").exists()
    assert sorted(p.name for p in (out / "clips").glob("*.wav")) == [
        "child-000-base.wav",
        "child-001-base.wav",
    ]

    monkeypatch.setattr(Synthesizer, "synthesize", original)
    counter = SynthCalls(monkeypatch)
    assert main(argv) == 0
    assert counter.calls == 1  # only the adapter batch was missing
    assert len(_meta(out)) == 2 * N_TEXTS and (out / "report.html").is_file()


def test_a_failed_start_does_not_block_the_corrected_command(setup, tmp_path, capsys):
    """An adapter that is broken in a way only loading finds (it targets layers the policy lacks) fails
    after the folder is set up; the corrected command, with other settings, then runs without --overwrite."""
    import shutil

    broken = tmp_path / "broken-adapter"
    shutil.copytree(setup["adapter"], broken)
    config = json.loads((broken / "adapter_config.json").read_text())
    config["target_modules"] = ["no_such_layer"]
    (broken / "adapter_config.json").write_text(json.dumps(config))
    out = tmp_path / "eval"
    first = [*eval_argv(setup, out, "--only-styles", "child", adapter=False), "--adapter", str(broken)]
    assert main(first) == 2
    assert "cannot load the adapter" in capsys.readouterr().err
    assert (out / "eval_config.json").is_file()  # what used to block the next try

    corrected = eval_argv(setup, out, "--only-styles", "child,whispering")  # other adapter, other styles
    assert main(corrected) == 0
    assert "new eval" in capsys.readouterr().out
    assert set(_meta(out)["style"]) == {"child", "whispering"}
    # once clips exist the folder holds a real eval: other settings are refused as before
    assert main(eval_argv(setup, out, "--only-styles", "child")) == 2
    assert "different settings (styles)" in capsys.readouterr().err
