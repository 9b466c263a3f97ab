"""`stylegrpo say` end to end on the tiny preset (offline, random weights)."""

import csv

import numpy as np
import pytest
import soundfile as sf

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.cli import main
from stylegrpo.outputs import MARK_NAME

FAST = ["--preset", "tiny", "--device", "cpu", "--max-seconds", "0.6"]  # 31 tokens at most: seconds on CPU


def test_say_writes_a_16k_wav(tmp_path, capsys):
    out = tmp_path / "hello.wav"
    assert main(["say", "Hello there, how are you?", "--style", "whispering", "-o", str(out), *FAST]) == 0
    info = sf.info(str(out))
    assert info.samplerate == SAMPLE_RATE and info.channels == 1
    wav, _ = sf.read(str(out), dtype="float32")
    assert len(wav) % 320 == 0 and 0 < len(wav) <= 30 * 320
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "noise" in printed
    assert f"wrote {out}" in printed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_same_seed_same_audio_and_overwrite_rules(tmp_path, capsys):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    assert main(["say", "Same words.", "-o", str(a), "--seed", "3", *FAST]) == 0
    assert main(["say", "Same words.", "-o", str(b), "--seed", "3", *FAST]) == 0
    np.testing.assert_array_equal(sf.read(str(a))[0], sf.read(str(b))[0])
    capsys.readouterr()
    before = a.read_bytes()
    assert main(["say", "Other words.", "-o", str(a), *FAST]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert a.read_bytes() == before
    assert main(["say", "Other words.", "-o", str(a), "--seed", "4", "--overwrite", *FAST]) == 0


def test_batch_mode_writes_one_wav_per_line_and_metadata(tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("First line to speak.\n\n  Second line.  \nThird, and last.\n", encoding="utf-8")
    out = tmp_path / "clips"
    argv = [
        "say",
        "--input-file",
        str(lines),
        "--output-dir",
        str(out),
        "--style",
        "excited",
        "--batch-size",
        "2",
    ]
    assert main([*argv, *FAST]) == 0
    names = ["0001.wav", "0002.wav", "0003.wav", "metadata.csv"]
    assert sorted(p.name for p in out.iterdir()) == [MARK_NAME, *names]  # the folder says who wrote it
    with open(out / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == ["First line to speak.", "Second line.", "Third, and last."]
    assert {r["style"] for r in rows} == {"excited"} and rows[0]["preset"] == "tiny"
    for r in rows:
        wav, sr = sf.read(str(out / r["file"]))
        assert sr == SAMPLE_RATE and len(wav) == int(r["num_codes"]) * 320
    assert "wrote 3 wav files" in capsys.readouterr().out
    assert main([*argv, *FAST]) == 2  # the folder exists now
    assert "--overwrite" in capsys.readouterr().err


def test_unknown_style_is_rejected_with_the_list(tmp_path, capsys):
    out = tmp_path / "x.wav"
    assert main(["say", "Hello.", "--style", "yodeling", "-o", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "stylegrpo say: error: unknown style 'yodeling'" in err
    assert "whispering" in err and "shouting" in err
    assert not out.exists()


def test_list_styles(capsys):
    assert main(["say", "--list-styles"]) == 0
    out = capsys.readouterr().out
    assert "whispering" in out and "news_anchor" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["say"], "nothing to say"),
        (["say", "   "], "text is empty"),
        (["say", "Hi.", "--input-file", "x.txt"], "not both"),
        (["say", "--input-file", "lines.txt"], "needs --output-dir"),
        (["say", "Hi.", "--adapter", "no-such-folder"], "not an adapter folder"),
        (["say", "Hi.", "-o", "out.mp3"], "must be a .wav"),
        (
            ["say", "--input-file", "missing.txt", "--output-dir", "o"],
            "--input-file missing.txt: file not found",
        ),
    ],
)
def test_user_errors_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--preset", "tiny"]) == 2
    assert message in capsys.readouterr().err
