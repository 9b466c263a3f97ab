"""`stylegrpo build --speakers DIR`: the pairing rule (balanced over speakers, seeded, held-out speakers for the
test split, identity styles get no reference), the reference columns and prompts, and bad reference folders."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from stylegrpo.cli import main
from stylegrpo.data_builder.speakers import (
    METADATA,
    ReferencePairer,
    SpeakerClip,
    read_metadata,
    split_speakers,
)
from stylegrpo.data_builder.writer import split_file
from stylegrpo.errors import StyleGRPOError

CATALOG = """
styles:
  - name: calm
    phrase: a calm voice
    descriptions: [a calm voice, a relaxed voice]
  - name: fast
    phrase: a fast voice
    descriptions: [someone speaking fast]
  - name: child
    phrase: a child speaking
    descriptions: [a young child talking]
    identity: true
"""
SENTENCES = [
    f"Sentence number {w} is spoken here today." for w in ("one", "two", "three", "four", "five")
] + [
    f"Another line about the {w} we saw."
    for w in ("river", "garden", "station", "mountain", "harbour", "market")
]


def clips(spec: dict[str, int]) -> list[SpeakerClip]:
    """Reference clips with given codes: speaker -> number of clips."""
    out = []
    for s, n in spec.items():
        for k in range(n):
            out.append(SpeakerClip(s, f"{s}_{k}.wav", f"hello from {s}", tuple(range(k + 1, k + 6))))
    return out


# -- the pairing function on given code lists ----------------------------------------------------------------


def test_references_are_balanced_over_speakers_and_their_clips():
    refs = clips({"a": 1, "b": 2, "c": 3})
    pairer = ReferencePairer(refs, ["a", "b", "c"], seed=0, split="train")
    idx = np.concatenate([pairer.assign(np.zeros(n, dtype=bool)) for n in (7, 13, 40)])  # batch after batch
    assert (idx >= 0).all()
    per_speaker = Counter(refs[i].speaker_id for i in idx)
    assert (
        sorted(per_speaker) == ["a", "b", "c"] and max(per_speaker.values()) - min(per_speaker.values()) <= 1
    )
    per_clip_c = Counter(refs[i].file_name for i in idx if refs[i].speaker_id == "c")
    assert len(per_clip_c) == 3 and max(per_clip_c.values()) - min(per_clip_c.values()) <= 1


def test_identity_styles_get_no_reference():
    refs = clips({"a": 2, "b": 2})
    identity = np.array([True, False, False, True, False, True, False, False])
    idx = ReferencePairer(refs, ["a", "b"], seed=3, split="train").assign(identity)
    assert (idx[identity] == -1).all() and (idx[~identity] >= 0).all()
    cols = ReferencePairer(refs, ["a", "b"], seed=3, split="train").columns(idx)
    text, codes, speaker = (c.to_pylist() for c in cols)
    for i in np.flatnonzero(identity):
        assert (text[i], codes[i], speaker[i]) == ("", [], "")
    for i in np.flatnonzero(~identity):
        assert codes[i] == list(refs[idx[i]].codes) and speaker[i] == refs[idx[i]].speaker_id


def test_pairing_is_seeded():
    refs = clips({"a": 2, "b": 3, "c": 1, "d": 2})

    def run(seed, split="train"):
        return ReferencePairer(refs, ["a", "b", "c", "d"], seed=seed, split=split).assign(np.zeros(30, bool))

    assert (run(5) == run(5)).all()
    assert not (run(5) == run(6)).all()
    assert not (run(5) == run(5, "test")).all()  # each split has its own stream


def test_held_out_speakers():
    ids = [f"spk{i}" for i in range(10)]
    train, test = split_speakers(ids * 2, 0.2, seed=0)  # repeated ids (several clips) count once
    assert len(test) == 2 and len(train) == 8 and not set(train) & set(test)
    assert set(train) | set(test) == set(ids)
    assert split_speakers(list(reversed(ids)), 0.2, seed=0) == (train, test)  # order-independent
    assert split_speakers(ids, 0.2, seed=1) != (train, test)  # seeded
    assert len(split_speakers(ids, 0.01, seed=0)[1]) == 1  # at least one held out
    assert split_speakers(["x", "y"], 0.9, seed=0)[0] != []  # at least one left for training
    assert split_speakers(["x"], 0, seed=0) == (["x"], ["x"])  # 0: both splits share every speaker
    with pytest.raises(StyleGRPOError, match="at least 2"):
        split_speakers(["x"], 0.2, seed=0)
    with pytest.raises(StyleGRPOError, match="fraction"):
        split_speakers(ids, 1.5, seed=0)


# -- metadata.csv ----------------------------------------------------------------------------------------------


def write_meta(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METADATA).write_text(text, encoding="utf-8")
    return folder


def test_metadata_rows_and_default_speaker(tmp_path):
    folder = write_meta(tmp_path / "r", "file_name,text\nanna.wav, Hello   there. \nsub/bob.wav,Hi.\n")
    rows = read_metadata(folder)
    assert [(r.file_name, r.text, r.speaker_id, r.line) for r in rows] == [
        ("anna.wav", "Hello there.", "anna", 2),
        ("sub/bob.wav", "Hi.", "bob", 3),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("name,text\na.wav,hi\n", r"metadata.csv:1: missing column\(s\) file_name"),
        ("file_name,text\na.wav,\n", r"metadata.csv:2: field 'text' is empty"),
        ("file_name,text\n,hi\n", r"metadata.csv:2: field 'file_name' is empty"),
        ("file_name,text\n../x.wav,hi\n", r"metadata.csv:2: file_name '../x.wav' must be a path inside"),
        ("file_name,text\n/etc/x.wav,hi\n", r"must be a path inside"),
        (
            "file_name,text\na.wav,hi\na.wav,ho\n",
            r"metadata.csv:3: 'a.wav' is listed twice \(first on line 2\)",
        ),
        ("file_name,text\n", r"no clips listed"),
    ],
)
def test_bad_metadata_is_one_named_line(tmp_path, content, message):
    with pytest.raises(StyleGRPOError, match=message):
        read_metadata(write_meta(tmp_path / "r", content))


def test_missing_folder_or_metadata(tmp_path):
    with pytest.raises(StyleGRPOError, match="not a folder"):
        read_metadata(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StyleGRPOError, match=r"no metadata.csv in it"):
        read_metadata(tmp_path / "empty")


# -- the whole build (tiny XCodec2, espeak-ng voices) -------------------------------------------------------


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng): these checks need real speech")
    folder = tmp_path_factory.mktemp("refs")
    lines = ["file_name,text,speaker_id"]
    for voice, speaker in (("m1", "anna"), ("f3", "bob"), ("m7", "carl"), ("f2", "dora"), ("m3", "emil")):
        for k, text in enumerate(("The garden is quiet today.", "We walked along the shore.")):
            name = f"{voice}_{k}.wav"
            subprocess.run([exe, "-v", f"en+{voice}", "-w", str(folder / name), text], check=True, timeout=60)
            lines.append(f"{name},{text},{speaker}")
    (folder / METADATA).write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "styles.yaml").write_text(CATALOG)
    (folder / "texts.txt").write_text("\n".join(SENTENCES) + "\n")
    return folder


def build(capsys, corpus, refs, out, *extra):
    argv = ["build", "--styles", str(corpus / "styles.yaml"), "--corpus", str(corpus / "texts.txt")]
    argv += ["--speakers", str(refs), "--codec", "tiny:xcodec2", "--device", "cpu", "--out", str(out), *extra]
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


def rows(out, split):
    return pq.read_table(out / split_file(split)).to_pylist()


def test_build_with_speakers(capsys, tmp_path, corpus, refs):
    from stylegrpo.styles import Reference, load_catalog

    out = tmp_path / "ds"
    rc, err = build(capsys, corpus, refs, out, "--test-size", "0.3", "--test-speakers", "0.4", "--seed", "7")
    assert rc == 0, err
    train, test = rows(out, "train"), rows(out, "test")
    assert train and test
    train_speakers = {r["speaker_id"] for r in train if r["speaker_id"]}
    test_speakers = {r["speaker_id"] for r in test if r["speaker_id"]}
    assert test_speakers and not train_speakers & test_speakers  # held-out voices
    assert len(train_speakers | test_speakers) <= 5
    catalog = load_catalog(corpus / "styles.yaml")
    for r in train + test:
        if r["style"] == "child":  # identity style: no reference
            assert (r["reference_text"], r["reference_codes"], r["speaker_id"]) == ("", [], "")
            assert r["prompt"] == catalog.template.render(r["text"], r["description"])
        else:
            assert r["speaker_id"] and r["reference_codes"] and r["reference_text"]
            ref = Reference(r["reference_text"], r["reference_codes"])
            assert r["prompt"] == catalog.template.render(r["text"], r["description"], ref)
    referenced = [r for r in train if r["speaker_id"]]
    counts = Counter(r["speaker_id"] for r in referenced)
    assert max(counts.values()) - min(counts.values()) <= 1  # balanced over the training speakers
    assert "--speakers" in (out / "README.md").read_text()  # the card's command line reproduces it
    # seeded: the same command gives the same files
    again = tmp_path / "ds2"
    assert (
        build(capsys, corpus, refs, again, "--test-size", "0.3", "--test-speakers", "0.4", "--seed", "7")[0]
        == 0
    )
    assert rows(again, "train") == train and rows(again, "test") == test


def test_bad_reference_clips_stop_the_build_naming_the_file(capsys, tmp_path, corpus, refs):
    bad = tmp_path / "bad"
    shutil.copytree(refs, bad)
    (bad / "m1_0.wav").write_bytes(b"not a wav file at all")
    rc, err = build(capsys, corpus, bad, tmp_path / "o1")
    assert rc == 2 and "m1_0.wav" in err and "cannot read it as audio" in err
    assert err.count("error") == 1 and "loaded codec" not in err  # one line, before the codec loads
    assert not (tmp_path / "o1").exists()  # nothing written

    import soundfile as sf

    sf.write(bad / "m1_0.wav", np.zeros(32000, dtype=np.float32), 16000)  # 2 s of silence
    rc, err = build(capsys, corpus, bad, tmp_path / "o2")
    assert rc == 2 and "m1_0.wav" in err and "silent" in err

    (bad / "m1_0.wav").unlink()
    rc, err = build(capsys, corpus, bad, tmp_path / "o3")
    assert rc == 2 and "m1_0.wav: file not found" in err

    (bad / METADATA).unlink()
    rc, err = build(capsys, corpus, bad, tmp_path / "o4")
    assert rc == 2 and "no metadata.csv" in err and str(bad) in err


def test_a_tiny_grpo_step_on_a_speakers_dataset_scores_only_referenced_rows(capsys, tmp_path, corpus, refs):
    """build --speakers, then train the speaker reward through TRL: logged per style for the styles with a
    reference, never for the identity style (None: not applicable), and the run completes."""
    import json

    out = tmp_path / "ds"
    assert build(capsys, corpus, refs, out, "--test-size", "0")[0] == 0
    run = tmp_path / "run"
    argv = ["train", "--config", "tiny", "--dataset_path", str(out), "--styles", str(corpus / "styles.yaml")]
    argv += ["--output-dir", str(run), "--max_steps", "2", "--logging_steps", "1", "--save_strategy", "no"]
    argv += ["--rewards", "speaker", "acoustic", "--reward_weights", "1.0", "1.0", "--report_to", "none"]
    argv += ["--max_train_samples", "8", "--shuffle_dataset", "false"]
    rc = main(argv)
    assert rc == 0, capsys.readouterr().err
    keys = set()
    for line in (run / "style_metrics.jsonl").read_text().splitlines():
        keys |= set(json.loads(line))
    assert "rewards/acoustic/child" in keys  # the identity style was trained...
    logged = {k for k in keys if k.startswith("rewards/speaker/")}
    assert logged and "rewards/speaker/child" not in logged  # ...without a speaker reward
    assert logged <= {"rewards/speaker/calm", "rewards/speaker/fast"}
