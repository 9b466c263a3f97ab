"""`stylegrpo audit` on real audio: espeak-ng speaks styles that differ measurably, and the audit must find
the acoustic judge (and DNSMOS, for reverberation) separating them; plus the tiny end-to-end run, the report
in a real headless browser, the dataset input, and bad input (one line, exit 2, nothing lost)."""

import csv
import json

import numpy as np
import pandas as pd
import pytest

from stylegrpo.audio import SAMPLE_RATE, write_wav
from stylegrpo.cli import main
from stylegrpo.errors import StyleGRPOError
from stylegrpo.eval import browser
from stylegrpo.eval.audit_report import TINY_AUDIO_WARNING, report_problems
from stylegrpo.outputs import MARK_NAME

TEXTS = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
]
# espeak-ng settings per style (the same four texts in each). Measured on these texts (acoustic.measure):
# default voice 3.7-6.0 syllables/s, ~103 Hz, -21 dBFS, voiced 0.6-0.9; -s 340 7.2+ syl/s; -s 90 ~2 syl/s;
# -p 85 ~146 Hz; -p 30 84-90 Hz (voiced 0.4-0.5: pYIN loses some of espeak's low
# voice; -p 25 left one clip at 0.16 voiced, 92 Hz); -a 200 ~-15 dBFS; -a 25 ~-33 dBFS; the whisper voice voiced 0.00.
ESPEAK = {
    "fast": ["-s", "340"],
    "slow": ["-s", "90"],
    "high": ["-p", "85"],
    "low": ["-p", "30"],
    "loud": ["-a", "200"],
    "soft": ["-a", "25"],
    "whispered": ["-v", "en+whisper"],
}
ACOUSTIC_CATALOG = """
styles:
  - {name: fast, phrase: fast, descriptions: [someone speaking fast], targets: {speaking_rate: [7.0, 14.0]}}
  - {name: slow, phrase: slow, descriptions: [someone speaking slowly], targets: {speaking_rate: [1.0, 3.0]}}
  - {name: high, phrase: high, descriptions: [a high voice], targets: {pitch_median_hz: [125, 220]}}
  - {name: low, phrase: low, descriptions: [a low voice], targets: {pitch_median_hz: [50, 92]}}
  - {name: loud, phrase: loud, descriptions: [a loud voice], targets: {loudness_dbfs: [-17, 0]}}
  - {name: soft, phrase: soft, descriptions: [a soft voice], targets: {loudness_dbfs: [-45, -28]}}
  - {name: whispered, phrase: whisper, descriptions: [a whisper], targets: {voiced_fraction: [0.0, 0.2]}}
"""
# bak_target 5.0 (the top of the scale): clean_score stays linear in BAK, so every clip is ranked (at 4.0
# clean speech would saturate at 1 and tie with the lightest reverberation)
QUALITY_CATALOG = """
styles:
  - {name: clean, phrase: clean, descriptions: [a clean studio recording], quality: {bak_target: 5.0}}
  - {name: reverberant, phrase: hall, descriptions: [speech in a large hall], quality: {clean: false}}
"""
RT60_S = 1.2  # reverberation time of the synthetic room (DNSMOS BAK ~1.2-2 against ~3.8 clean)
SEPARATED = 0.9  # the AUC the audit must find on these clearly different styles


def write_set(folder, items):
    """items: (file_name, style, text, wav) -> wavs + metadata.csv (the audiofolder layout eval writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "style", "text"])
        for name, style, text, wav in items:
            write_wav(folder / name, wav)
            w.writerow([name, style, text])
    return folder


def audit(*args):
    return main(["audit", *map(str, args)])


def load(out):
    return json.loads((out / "audit.json").read_text())


def room_impulse_response(rt60, rng):
    """Exponentially decaying noise (a diffuse tail, -60 dB at rt60) after a unit direct path."""
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    h = rng.standard_normal(t.size) * np.exp(-6.908 * t / rt60)
    h[0] = 1.0
    return h / np.sqrt(np.sum(h**2))


@pytest.fixture(scope="module")
def acoustic_audit(speak, tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-acoustic")
    items = [
        (f"{style}-{i}.wav", style, text, speak(text, *args))
        for style, args in ESPEAK.items()
        for i, text in enumerate(TEXTS)
    ]
    clips = write_set(root / "clips", items)
    styles = root / "styles.yaml"
    styles.write_text(ACOUSTIC_CATALOG)
    out = root / "out"
    assert audit("--clips", clips, "--styles", styles, "--judges", "acoustic", "--out", out) == 0
    return out, load(out)


def test_acoustic_judge_separates_espeak_styles(acoustic_audit, capsys):
    _, data = acoustic_audit
    res = data["judges"]["acoustic"]
    rows = res["styles"]
    assert res["applies_to"] == list(ESPEAK)
    assert data["texts_known"] is True  # the speaking rate needs the words: read from metadata.csv
    for style in ("fast", "slow", "high", "low", "loud", "soft"):
        assert rows[style]["auc"] >= SEPARATED, (style, rows[style])
        assert rows[style]["verdict"].startswith("judge acoustic separates this style: AUC")
    for style in ("slow", "high", "low", "loud", "soft", "whispered"):
        assert rows[style]["accuracy"] >= 0.75, (style, rows[style])
    # whispered vs every voiced style. (pYIN finds no voicing in espeak's 340 wpm speech either, so the
    # fast clips also look whispered: the audit names that pair, which is what it is for.)
    for other in ("slow", "high", "low", "loud", "soft"):
        assert rows["whispered"]["pair_auc"][other] >= SEPARATED, (other, rows["whispered"])
    # inside its ranges the target score is exactly 1 for every clip: the audit flags that flat signal
    assert rows["loud"]["flat"] and rows["soft"]["flat"] and rows["loud"]["own_std"] == 0
    assert not rows["slow"]["flat"]  # its rates fall partly outside the range: the score varies
    assert res["mean_auc"] >= SEPARATED


def test_quality_judge_separates_clean_from_reverberant(speak, tmp_path):
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(0)
    items = []
    for i, text in enumerate(TEXTS):
        wav = speak(text)
        wet = fftconvolve(wav, room_impulse_response(RT60_S, rng))[: wav.size + SAMPLE_RATE // 2]
        wet *= np.sqrt(np.mean(wav**2) / np.mean(wet**2))  # same level: only the room differs
        items += [(f"clean-{i}.wav", "clean", text, wav), (f"reverb-{i}.wav", "reverberant", text, wet)]
    clips = write_set(tmp_path / "clips", items)
    styles = tmp_path / "styles.yaml"
    styles.write_text(QUALITY_CATALOG)
    out = tmp_path / "out"
    assert audit("--clips", clips, "--styles", styles, "--judges", "quality,acoustic", "--out", out) == 0
    data = load(out)
    q = data["judges"]["quality"]
    assert q["applies_to"] == ["clean"]  # the reverberant style opts out of the clean reward
    assert q["styles"]["clean"]["auc"] >= SEPARATED
    assert q["styles"]["clean"]["accuracy"] is None  # one style scored: top-1 means nothing (JSON null)
    assert q["styles"]["reverberant"]["verdict_kind"] == "not_scored"
    assert data["skipped_judges"] == {"acoustic": "applies to no style of the catalog"}


def test_audit_outputs_and_report_in_headless_chromium(acoustic_audit, tmp_path):
    out, data = acoustic_audit
    assert (out / MARK_NAME).is_file()
    table = pd.read_csv(out / "audit.csv")
    assert list(table["style"]) == list(ESPEAK) and set(table["judge"]) == {"acoustic"}
    assert table.set_index("style")["auc"].to_dict() == pytest.approx(
        {s: r["auc"] for s, r in data["judges"]["acoustic"]["styles"].items()}
    )
    scores = pd.read_csv(out / "clip_scores.csv")
    assert len(scores) == len(ESPEAK) * len(TEXTS) and {"clip", "style", *ESPEAK} <= set(scores.columns)
    assert (out / "plots" / "auc.png").is_file() and (out / "plots" / "confusion_acoustic.png").is_file()
    html = (out / "report.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    if browser.chromium_path() is None:
        pytest.skip(
            f"no Chromium at {browser.DEFAULT_CHROMIUM} or on PATH (Debian: apt-get install chromium)"
        )
    seen = browser.check_report(out / "report.html", screenshot=tmp_path / "audit.png")
    assert report_problems(seen) == []
    assert len(seen.images) == 2 and not seen.broken_images
    assert "judge acoustic separates this style: AUC 1.00" in seen.text
    assert "cannot tell `whispered` from `fast`" in seen.text
    assert "tiny" not in seen.text.lower()  # real judge on real speech: no plumbing warning
    assert (tmp_path / "audit.png").stat().st_size > 10_000


def test_synthesize_tiny_end_to_end(tmp_path, capsys):
    """`stylegrpo audit --synthesize 2 --preset tiny`: every default judge runs; the report says it is
    plumbing; the clips it keeps are an input for the next audit."""
    out = tmp_path / "audit"
    assert audit("--synthesize", 2, "--preset", "tiny", "--device", "cpu", "--out", out) == 0
    printed = capsys.readouterr().out
    data = load(out)
    assert data["n_clips"] == 2 * 11 and set(data["clips_per_style"].values()) == {2}
    assert "clap:tiny:clap" in data["judges"] and "acoustic" in data["judges"]
    assert "quality" in data["judges"] and "ast:tiny:ast" in data["judges"]  # the AudioSet classifier's twin
    assert data["judges"]["ast:tiny:ast"]["applies_to"]  # the catalog's styles with classifier_labels
    assert data["skipped_judges"] == {}
    assert data["tiny_audio"] is True and "clap:tiny:clap" in data["tiny_judges"]
    assert data["descriptions"]["clap:tiny:clap"]["rows"]  # CLAP's paraphrase geometry
    assert TINY_AUDIO_WARNING in printed
    html = (out / "report.html").read_text()
    assert 'id="tiny-audio-warning"' in html and 'id="tiny-warning"' in html
    meta = pd.read_csv(out / "clips" / "metadata.csv")
    assert len(meta) == 22 and {"file_name", "style", "text"} <= set(meta.columns)
    assert not (out / "records").exists()
    again = tmp_path / "again"
    assert audit("--clips", out / "clips", "--judges", "acoustic", "--out", again) == 0
    assert load(again)["n_clips"] == 22
    only = tmp_path / "only-base"  # an eval folder lists base and adapter clips: --where picks one model
    # (--clips out: the folder above clips/, like an eval's --out, is found too)
    assert audit("--clips", out, "--where", "model=base", "--judges", "acoustic", "--out", only) == 0
    assert load(only)["n_clips"] == 22
    assert (
        audit(
            "--clips",
            out / "clips",
            "--where",
            "model=adapter",
            "--judges",
            "acoustic",
            "--out",
            tmp_path / "none",
        )
        == 2
    )
    assert "no row has model=adapter" in capsys.readouterr().err
    if browser.chromium_path() is not None:
        seen = browser.check_report(out / "report.html")
        assert report_problems(seen) == []
        assert "RANDOM weights" in seen.text


def test_dataset_input_with_class_labels_and_style_map(tmp_path):
    """A datasets audio set (parquet with an Audio feature and ClassLabel labels), mapped to catalog styles."""
    import datasets

    def tone(freq, amp):
        t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    files = []
    for i, (label, amp) in enumerate([("LOUD", 0.5)] * 3 + [("quiet", 0.01)] * 3):
        path = tmp_path / "src" / f"{i}.wav"
        write_wav(path, tone(150 + 10 * i, amp))
        files.append((label, path.read_bytes()))
    ds = datasets.Dataset.from_dict(
        {"speech": [{"bytes": b, "path": None} for _, b in files], "emotion": [lab for lab, _ in files]}
    )
    # an Audio feature and ClassLabel labels, as hub sets have (cast, not encoded: no torchcodec needed)
    ds = ds.cast_column("speech", datasets.Audio()).class_encode_column("emotion")
    assert isinstance(ds.features["emotion"], datasets.ClassLabel)
    (tmp_path / "ds").mkdir()
    ds.to_parquet(str(tmp_path / "ds" / "train.parquet"))
    styles = tmp_path / "styles.yaml"
    styles.write_text(ACOUSTIC_CATALOG)
    out = tmp_path / "out"
    args = ["--dataset", tmp_path / "ds", "--audio-column", "speech", "--style-column", "emotion"]
    assert audit(*args, "--styles", styles, "--judges", "acoustic", "--out", out) == 2  # labels unmapped
    assert not out.exists()
    code = audit(
        *args, "--style-map", "LOUD=loud,quiet=soft", "--styles", styles, "--judges", "acoustic", "--out", out
    )
    assert code == 0
    rows = load(out)["judges"]["acoustic"]["styles"]
    assert rows["loud"]["n_clips"] == 3 and rows["loud"]["auc"] == 1.0 and rows["soft"]["auc"] == 1.0


# -- bad input: one line, exit 2, nothing written or lost ---------------------------------------------------
@pytest.fixture
def small_set(tmp_path):
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    items = [(f"{s}-{i}.wav", s, "Hello there.", 0.1 * np.sin(2 * np.pi * (120 + i) * t)) for s in ("loud", "soft")
             for i in range(2)]  # fmt: skip
    clips = write_set(tmp_path / "clips", items)
    styles = tmp_path / "styles.yaml"
    styles.write_text(ACOUSTIC_CATALOG)
    return clips, styles


def rewrite_metadata(clips, rows, header=("file_name", "style", "text")):
    with open(clips / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.mark.parametrize(
    "case, expect",
    [
        ("unknown_style", "metadata.csv line 3: style 'sleepy' is not in the catalog"),
        ("missing_column", "missing column(s) style"),
        ("unreadable", "metadata.csv line 2: cannot read audio 'broken.wav'"),
        ("outside", "points outside"),
        ("no_metadata", "no metadata.csv"),
        ("one_style", "an audit needs clips of at least two styles"),
        ("unknown_judge", "unknown style judge 'nosuch'; valid judges: clap, acoustic, quality"),
        ("where_column", "--where speaker=x: "),
        ("judge_cannot_load", "judge clap:/no/such/clap: cannot load CLAP model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(small_set, tmp_path, capsys, case, expect):
    clips, styles = small_set
    judges = "acoustic"
    if case == "unknown_style":
        rewrite_metadata(clips, [("loud-0.wav", "loud", "a"), ("soft-0.wav", "sleepy", "a")])
    elif case == "missing_column":
        rewrite_metadata(clips, [("loud-0.wav", "a")], header=("file_name", "text"))
    elif case == "unreadable":
        (clips / "broken.wav").write_bytes(b"RIFF0000WAVEnot really audio")
        rewrite_metadata(clips, [("broken.wav", "loud", "a"), ("soft-0.wav", "soft", "a")])
    elif case == "outside":
        rewrite_metadata(clips, [("../styles.yaml", "loud", "a")])
    elif case == "no_metadata":
        (clips / "metadata.csv").unlink()
    elif case == "one_style":
        rewrite_metadata(clips, [("loud-0.wav", "loud", "a"), ("loud-1.wav", "loud", "a")])
    elif case == "unknown_judge":
        judges = "acoustic,nosuch"
    elif case == "judge_cannot_load":
        judges = "acoustic,clap:/no/such/clap"
    extra = ["--where", "speaker=x"] if case == "where_column" else []
    before = sorted(p.name for p in clips.iterdir())
    out = tmp_path / "out"
    assert audit("--clips", clips, "--styles", styles, "--judges", judges, "--out", out, *extra) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "stylegrpo audit" in line]  # (progress bars aside)
    assert len(lines) == 1 and lines[0].startswith("stylegrpo audit: error: ") and "Traceback" not in err
    assert expect in lines[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert sorted(p.name for p in clips.iterdir()) == before  # the input is untouched


def test_existing_output_is_refused_and_overwrite_replaces_only_ours(small_set, tmp_path, capsys):
    clips, styles = small_set
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    base = ["--clips", clips, "--styles", styles, "--judges", "acoustic"]
    for extra in ([], ["--overwrite"]):
        assert audit(*base, "--out", theirs, *extra) == 2
        assert (theirs / "notes.txt").read_text() == "keep me"
    out = tmp_path / "out"
    assert audit(*base, "--out", out) == 0
    assert audit(*base, "--out", out) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert audit(*base, "--out", out, "--overwrite") == 0 and (out / "report.html").is_file()
    assert audit(*base, "--out", clips / "inside") == 2  # inside an input
    assert "lies inside the input --clips" in capsys.readouterr().err


def test_clips_are_read_a_chunk_at_a_time_not_held(tmp_path):
    """A folder of clips is checked once on reading, then held as file names: memory does not grow with
    the number of clips, each judge reads one chunk at a time, and a clip that vanishes meanwhile is a
    one-line error naming it."""
    import tracemalloc

    from stylegrpo.eval.audit_run import ClipAudio, read_metadata_folder, score_judge
    from stylegrpo.styles import load_catalog

    catalog = load_catalog(None)
    rng = np.random.default_rng(0)
    seconds = 10
    write_set(
        tmp_path,
        [
            (f"c{i}.wav", catalog.names[i % 3], "a text", 0.1 * rng.standard_normal(seconds * SAMPLE_RATE))
            for i in range(24)
        ],
    )
    total = 24 * seconds * SAMPLE_RATE * 4  # float32 bytes of all the clips: ~15 MB
    tracemalloc.start()
    try:
        clips = read_metadata_folder(tmp_path, catalog)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(clips.wavs, ClipAudio) and len(clips) == 24
    assert held < total / 8, (held, total)
    assert clips.wavs[-1].shape == (seconds * SAMPLE_RATE,)

    class Probe:  # a judge that records how many clips it is given at once
        name = "probe"
        calls: list[int] = []

        def style_scores(self, wavs, styles, texts=None):
            self.calls.append(len(wavs))
            return np.zeros((len(wavs), len(styles)))

    judge = Probe()
    assert score_judge(judge, clips, catalog, chunk=5).shape == (24, len(catalog.names))
    assert judge.calls == [5, 5, 5, 5, 4]
    (tmp_path / "c3.wav").unlink()
    with pytest.raises(StyleGRPOError, match=r"line 5: cannot read audio 'c3.wav'"):
        clips.wavs[3]
