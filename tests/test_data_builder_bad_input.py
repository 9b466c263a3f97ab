"""`stylegrpo build` on damaged or unexpected corpus files: a named message or a named skip, never a traceback.

Truncated .gz files stop the build naming the file; broken symbolic links in a corpus folder and binary
files with a text name are skipped with a warning naming them (binary: an error with --strict); UTF-16
and UTF-32 text is decoded (from its byte-order mark, or from its NUL pattern for UTF-16 without one).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from stylegrpo.cli import main
from stylegrpo.data_builder.corpora import binary_reason, sniff_encoding
from stylegrpo.data_builder.writer import split_file
from stylegrpo.styles import _REPO_ROOT

STYLES = str(_REPO_ROOT / "styles.yaml")
SENTENCES = [
    "The garden looks lovely this morning.",
    "She walked home slowly after the long day.",
    "We will meet again at the station tomorrow.",
    "Nobody expected the old clock to work again.",
    "The river was calm and silver in the evening.",
    "Please bring a warm coat for the mountain trip.",
]


def build(
    capsys, tmp_path: Path, *corpora: Path, extra: tuple[str, ...] = (), name: str = "out"
) -> tuple[int, str, Path]:
    out = tmp_path / name
    argv = ["build", "--styles", STYLES, "--test-size", "0", "--out", str(out), *extra]
    for c in corpora:
        argv += ["--corpus", str(c)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err, out


def texts(out: Path) -> list[str]:
    return pq.read_table(out / split_file("train")).column("text").to_pylist()


def _truncated(data: bytes) -> bytes:
    z = gzip.compress(data)
    return z[: len(z) // 2]


LINES = "\n".join(SENTENCES * 50) + "\n"
TRUNCATED = {
    "c.txt.gz": LINES,
    "c.jsonl.gz": "\n".join(json.dumps({"text": s}) for s in SENTENCES * 50) + "\n",
    "c.json.gz": json.dumps([{"text": s} for s in SENTENCES * 50]),
    "c.csv.gz": "text\n" + LINES,
}


@pytest.mark.parametrize("name", sorted(TRUNCATED))
def test_a_truncated_gz_is_named(tmp_path, capsys, name):
    f = tmp_path / name
    f.write_bytes(_truncated(TRUNCATED[name].encode()))
    rc, err, out = build(capsys, tmp_path, f)
    assert rc == 2 and not out.exists()
    assert f"stylegrpo build: error: {f}: cannot read: Compressed file ended" in err
    assert "truncated or damaged .gz file" in err


def test_a_file_that_is_not_gzip_is_named(tmp_path, capsys):
    f = tmp_path / "c.csv.gz"
    f.write_bytes(b"text\nnot compressed at all\n")
    rc, err, _ = build(capsys, tmp_path, f)
    assert rc == 2 and f"{f}: cannot read: Not a gzipped file" in err


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_broken_links_in_a_corpus_folder_are_skipped_by_name(tmp_path, capsys, caplog):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "good.txt").write_text("\n".join(SENTENCES) + "\n")
    (folder / "dangling.txt").symlink_to("gone.txt")
    (folder / "loop1.txt").symlink_to("loop2.txt")
    (folder / "loop2.txt").symlink_to("loop1.txt")
    with caplog.at_level(logging.WARNING, logger="stylegrpo.data_builder.corpora"):
        rc, err, out = build(capsys, tmp_path, folder)
    assert rc == 0, err
    assert sorted(texts(out)) == sorted(SENTENCES)
    warnings = caplog.text
    assert (
        f"{folder / 'dangling.txt'}: skipped, a symbolic link to gone.txt, which does not exist" in warnings
    )
    assert f"{folder / 'loop1.txt'}: skipped, a loop of symbolic links" in warnings
    # given directly, a broken link is an error naming it
    rc, err, _ = build(capsys, tmp_path, folder / "dangling.txt", name="out2")
    assert (
        rc == 2 and f"{folder / 'dangling.txt'}: cannot read the corpus: a symbolic link to gone.txt" in err
    )


def _binary() -> bytes:
    ls = shutil.which("ls")
    return Path(ls).read_bytes()[:200_000] if ls else bytes(range(256)) * 400


def test_a_binary_file_with_a_txt_name_is_skipped_or_refused(tmp_path, capsys, caplog):
    """A copy of /bin/ls named .txt became 42 training rows."""
    good, binary = tmp_path / "good.txt", tmp_path / "ls.txt"
    good.write_text("\n".join(SENTENCES) + "\n")
    binary.write_bytes(_binary())
    with caplog.at_level(logging.WARNING, logger="stylegrpo.data_builder.corpora"):
        rc, err, out = build(capsys, tmp_path, good, binary)
    assert rc == 0, err
    assert sorted(texts(out)) == sorted(SENTENCES)  # nothing from the binary file
    assert f"{binary}: not a text file (it holds NUL bytes" in caplog.text and "skipped" in caplog.text
    assert "skipped: not a text file" in (out / "README.md").read_text()
    rc, err, out = build(capsys, tmp_path, good, binary, extra=("--strict",), name="out2")
    assert rc == 2 and not out.exists()
    assert f"stylegrpo build: error: {binary}: not a text file (it holds NUL bytes" in err


def test_binary_detection_thresholds():
    assert binary_reason(b"\x7fELF\x02\x01\x01\x00") == "it holds NUL bytes"
    assert "are not text" in binary_reason(bytes(range(1, 32)) * 10 + b"abc")
    assert binary_reason("Caf\u00e9 cr\u00e8me, na\u00efve.\n".encode()) is None  # UTF-8 text
    assert (
        binary_reason("Caf\u00e9 is nice and so are long lines.\n".encode("latin-1")) is None
    )  # a few bad bytes


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("name", ["c.txt", "c.csv", "c.jsonl.gz"])
def test_utf16_and_utf32_text_is_decoded(tmp_path, capsys, encoding, name):
    """UTF-16 was read as broken UTF-8 line by line; now it is decoded (BOM, or NUL pattern for UTF-16)."""
    body = {
        "c.txt": "\n".join(SENTENCES) + "\n",
        "c.csv": "text\n" + "\n".join(SENTENCES) + "\n",
        "c.jsonl.gz": "\n".join(json.dumps({"text": s}, ensure_ascii=False) for s in SENTENCES) + "\n",
    }[name].encode(encoding)
    f = tmp_path / name
    f.write_bytes(gzip.compress(body) if name.endswith(".gz") else body)
    rc, err, out = build(capsys, tmp_path, f)
    assert rc == 0, err
    assert sorted(texts(out)) == sorted(SENTENCES)


def test_encoding_sniffing():
    text = "Hello there, a plain sentence.\n"
    assert sniff_encoding(text.encode("utf-16")) == ("utf-16", "byte-order mark")
    assert sniff_encoding(text.encode("utf-32"))[0] == "utf-32"
    assert sniff_encoding(text.encode("utf-16-le"))[0] == "utf-16-le"
    assert sniff_encoding(text.encode("utf-16-be"))[0] == "utf-16-be"
    assert sniff_encoding(text.encode("utf-8")) == (None, "")
    assert sniff_encoding(b"\xef\xbb\xbf" + text.encode()) == (None, "")  # UTF-8 BOM: read as UTF-8
    assert sniff_encoding(_binary()[:4096]) == (None, "")  # ELF: NULs in both halves


def test_invalid_utf16_is_named(tmp_path, capsys):
    f = tmp_path / "c.txt"
    f.write_bytes("\n".join(SENTENCES).encode("utf-16") + b"\x00\xd8\x41\x00")  # a lone high surrogate
    rc, err, _ = build(capsys, tmp_path, f)
    assert rc == 2 and f"{f}: read as utf-16 (byte-order mark), but it is not valid utf-16" in err
