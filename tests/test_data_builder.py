"""`stylegrpo build` end to end: corpus formats, bad input, splits, pairing, determinism, the output layout."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shlex
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stylegrpo.cli import main
from stylegrpo.data_builder import BuildConfig, ReadOptions, build_dataset, default_corpus_path
from stylegrpo.data_builder.writer import split_file
from stylegrpo.errors import StyleGRPOError
from stylegrpo.styles import _REPO_ROOT, load_catalog

STYLES = str(_REPO_ROOT / "styles.yaml")
SENTENCES = [
    "The first sentence is here.",
    "A second one follows it closely.",
    "Where is the third sentence hiding?",
    "The fourth sentence ends with joy!",
    "Number five is short but fine.",
    "Six comes after five in this list.",
    "Seven sentences make a small corpus.",
    "The eighth line closes the file.",
]


def build(tmp_path: Path, corpora: list[str | Path], name: str = "out", **kw) -> tuple[BuildConfig, object]:
    kw.setdefault("styles", STYLES)
    kw.setdefault("test_size", 0)
    config = BuildConfig(out=tmp_path / name, corpora=[str(c) for c in corpora], progress=False, **kw)
    return config, build_dataset(config)


def rows(out: Path, split: str = "train") -> list[dict]:
    return pq.read_table(out / split_file(split)).to_pylist()


def texts(out: Path, split: str = "train") -> list[str]:
    return [r["text"] for r in rows(out, split)]


def cli(*args: str) -> int:
    return main(["build", "--styles", STYLES, *args])


# --- formats -----------------------------------------------------------------------------------------


def test_txt_one_sentence_per_line(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("\n".join(SENTENCES[:4]) + "\n\n" + "\n".join(SENTENCES[4:]) + "\n", encoding="utf-8")
    config, result = build(tmp_path, [f])
    got = rows(config.out)
    assert [r["text"] for r in got] == SENTENCES
    assert [r["line"] for r in got] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert {r["source"] for r in got} == {str(f)}
    assert result.sources[0].detail.startswith("lines")


def test_txt_paragraphs_detected_and_split(tmp_path):
    f = tmp_path / "book.txt"
    f.write_text(
        "It was a cold morning when Dr. Smith walked into the\n"
        "village. Nobody greeted him! Why would they?\n"
        "\n"
        "The baker, Mrs. Jones, opened her shop at seven. She sold\n"
        "bread to J. R. Miller, who paid in coins.\n",
        encoding="utf-8",
    )
    config, result = build(tmp_path, [f])
    assert texts(config.out) == [
        "It was a cold morning when Dr. Smith walked into the village.",
        "Nobody greeted him!",
        "Why would they?",
        "The baker, Mrs. Jones, opened her shop at seven.",
        "She sold bread to J. R. Miller, who paid in coins.",
    ]
    assert [r["line"] for r in rows(config.out)] == [1, 1, 1, 4, 4]
    assert result.sources[0].detail.startswith("paragraphs")
    # the flag overrides the detection: one item per line
    config2, _ = build(tmp_path, [f], name="lines", read=ReadOptions(text_mode="lines"))
    assert texts(config2.out)[0] == "It was a cold morning when Dr. Smith walked into the"


def test_jsonl_with_bad_record_skipped_and_counted(tmp_path, caplog):
    f = tmp_path / "c.jsonl"
    lines = [json.dumps({"id": i, "text": s}) for i, s in enumerate(SENTENCES[:3])]
    lines.insert(1, '{"text": "broken json')
    lines.append(json.dumps({"id": 9}))
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        config, result = build(tmp_path, [f])
    assert texts(config.out) == SENTENCES[:3]
    assert [r["line"] for r in rows(config.out)] == [1, 3, 4]
    assert result.drops["unparsable"] == 1 and result.drops["no_text"] == 1
    assert f"{f}:2: invalid JSON" in caplog.text
    assert f"{f}:5: field 'text' is missing" in caplog.text


def test_jsonl_strict_stops_at_bad_record(tmp_path, capsys):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"text": SENTENCES[0]}) + "\nnot json\n", encoding="utf-8")
    assert cli("--corpus", str(f), "--out", str(tmp_path / "o"), "--strict") == 2
    err = capsys.readouterr().err
    assert f"{f}:2: invalid JSON" in err and "--strict" in err
    assert not (tmp_path / "o").exists()


def test_json_array_and_column_choice(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps([{"utterance": s, "speaker": "x"} for s in SENTENCES[:2]]), encoding="utf-8")
    config, _ = build(tmp_path, [f], read=ReadOptions(column="utterance"))
    assert texts(config.out) == SENTENCES[:2]
    with pytest.raises(
        StyleGRPOError, match=r"c.json:1: no field 'nope' in the first record; fields: utterance, spe"
    ):
        build(tmp_path, [f], name="o2", read=ReadOptions(column="nope"))


def test_csv_and_tsv(tmp_path):
    c = tmp_path / "c.csv"
    c.write_text(
        'id,text,mood\n1,"Hello, dear friend, how are you?",happy\n2,"She said ""goodbye"" and left slowly.",sad\n'
        '3,"A line that spans\ntwo rows of the file.",calm\n',
        encoding="utf-8",
    )
    t = tmp_path / "c.tsv"
    t.write_text("sentence\nThe tab separated line is here.\n", encoding="utf-8")  # a single column is used
    config, result = build(tmp_path, [c, t])
    assert texts(config.out)[:3] == [
        "Hello, dear friend, how are you?",
        'She said "goodbye" and left slowly.',
        "A line that spans two rows of the file.",
    ]
    assert texts(config.out)[3] == "The tab separated line is here."
    assert [r["line"] for r in rows(config.out)] == [2, 3, 5, 2]  # the line where each record ends
    assert result.sources[1].detail == "column 'sentence'"


def test_csv_without_text_column_is_an_error(tmp_path):
    c = tmp_path / "c.csv"
    c.write_text("a,b\nHello there my friend.,x\n", encoding="utf-8")
    with pytest.raises(
        StyleGRPOError, match=rf"{re.escape(str(c))}:1: no column 'text'; choose one with --column"
    ):
        build(tmp_path, [c])
    config, _ = build(tmp_path, [c], name="o2", read=ReadOptions(column="a"))
    assert texts(config.out) == ["Hello there my friend."]


def test_parquet_picks_the_only_text_column(tmp_path):
    f = tmp_path / "c.parquet"
    pq.write_table(pa.table({"n": list(range(3)), "sentence": [SENTENCES[0], None, SENTENCES[1]]}), f)
    config, result = build(tmp_path, [f])
    assert texts(config.out) == SENTENCES[:2]
    assert [r["line"] for r in rows(config.out)] == [1, 3]
    assert result.drops["no_text"] == 1


def test_folder_of_corpora(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text(SENTENCES[0] + "\n", encoding="utf-8")
    (d / "sub" / "b.jsonl").write_text(json.dumps({"text": SENTENCES[1]}) + "\n", encoding="utf-8")
    with gzip.open(d / "sub" / "c.txt.gz", "wt", encoding="utf-8") as g:
        g.write(SENTENCES[2] + "\n")
    (d / "notes.md").write_text("# not a corpus file\n", encoding="utf-8")
    (d / ".hidden.txt").write_text(SENTENCES[3] + "\n", encoding="utf-8")
    config, result = build(tmp_path, [d])
    assert texts(config.out) == SENTENCES[:3]
    assert [s.label for s in result.sources] == [
        str(d / "a.txt"),
        str(d / "sub/b.jsonl"),
        str(d / "sub/c.txt.gz"),
    ]


def test_save_to_disk_datasets(tmp_path, capsys):
    import datasets

    ds = datasets.Dataset.from_dict({"text": SENTENCES[:3], "n": [1, 2, 3]})
    ds.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": ds, "validation": ds.select([2])}).save_to_disk(str(tmp_path / "dict"))
    config, _ = build(tmp_path, [tmp_path / "single"], name="o1")
    assert texts(config.out) == SENTENCES[:3]
    config, _ = build(tmp_path, [tmp_path / "dict"], name="o2", read=ReadOptions(split="validation"))
    assert texts(config.out) == SENTENCES[2:3]
    # a folder holding a saved dataset and a text file reads both
    (tmp_path / "mixed").mkdir()
    ds.select([0]).save_to_disk(str(tmp_path / "mixed" / "saved"))
    (tmp_path / "mixed" / "z.txt").write_text(SENTENCES[5] + "\n", encoding="utf-8")
    config, _ = build(tmp_path, [tmp_path / "mixed"], name="o3")
    assert texts(config.out) == [SENTENCES[0], SENTENCES[5]]
    assert cli("--corpus", str(tmp_path / "dict"), "--split", "test", "--out", str(tmp_path / "o4")) == 2
    assert "no split 'test'; splits: train, validation (choose with --split)" in capsys.readouterr().err


def test_bom_crlf_and_cr_line_ends(tmp_path):
    f = tmp_path / "win.txt"
    f.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(SENTENCES[:3]).encode() + b"\r\n")
    g = tmp_path / "mac.txt"
    g.write_bytes("\r".join(SENTENCES[3:6]).encode())  # old Mac line ends, no final newline
    config, _ = build(tmp_path, [f, g])
    got = rows(config.out)
    assert [r["text"] for r in got] == SENTENCES[:6]  # no BOM, no stray "\r"
    assert [r["line"] for r in got] == [1, 2, 3, 1, 2, 3]
    c = tmp_path / "bom.csv"
    c.write_bytes(b"\xef\xbb\xbftext\r\n" + SENTENCES[6].encode() + b"\r\n")
    config, _ = build(tmp_path, [c], name="csv")
    assert texts(config.out) == [SENTENCES[6]]


def test_hub_name_offline_gives_a_clear_error(tmp_path, capsys):
    assert cli("--corpus", "hf:nobody/no-such-dataset", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "hf:nobody/no-such-dataset: loading the Hugging Face dataset (split 'train') failed" in err
    assert cli("--corpus", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")) == 2
    assert f"{tmp_path / 'missing.txt'}: corpus not found" in capsys.readouterr().err


# --- bad input ---------------------------------------------------------------------------------------


def test_undecodable_line_is_skipped_with_its_location(tmp_path, caplog):
    f = tmp_path / "c.txt"
    f.write_bytes(
        SENTENCES[0].encode() + b"\nBad \xff\xfe bytes in this line.\n" + SENTENCES[1].encode() + b"\n"
    )
    with caplog.at_level(logging.WARNING):
        config, result = build(tmp_path, [f])
    assert texts(config.out) == SENTENCES[:2]
    assert [r["line"] for r in rows(config.out)] == [1, 3]
    assert result.drops["undecodable"] == 1
    assert f"{f}:2: not valid UTF-8 (byte 0xff at column 5); skipped" in caplog.text
    assert "| undecodable | 1 |" in (config.out / "README.md").read_text()


def test_undecodable_line_stops_with_strict(tmp_path, capsys):
    f = tmp_path / "c.txt"
    f.write_bytes(SENTENCES[0].encode() + b"\nBad \xff line here.\n")
    assert cli("--corpus", str(f), "--out", str(tmp_path / "o"), "--strict") == 2
    assert f"error: {f}:2: not valid UTF-8 (byte 0xff at column 5)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o")]  # no temporary folder left


def test_error_after_row_groups_were_written_leaves_nothing(tmp_path, capsys, monkeypatch):
    from stylegrpo.data_builder import writer

    monkeypatch.setattr(writer, "ROW_GROUP_ROWS", 7)
    good = _corpus(tmp_path, 100)
    bad = tmp_path / "z_bad.txt"
    bad.write_bytes(b"Fine line number one here.\nBad \xff line here.\n")
    assert cli("--corpus", str(good), "--corpus", str(bad), "--out", str(tmp_path / "o"), "--strict") == 2
    assert f"{bad}:2: not valid UTF-8" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.txt", "z_bad.txt"]
    # the same small row groups, without the bad file: many row groups, read back whole and in order
    config, _ = build(tmp_path, [good], test_size=0.1)
    assert pq.ParquetFile(config.out / split_file("train")).num_row_groups == 13  # 90 rows / 7
    assert len(texts(config.out, "train")) == 90 and len(texts(config.out, "test")) == 10
    assert texts(config.out) == sorted(texts(config.out), key=lambda t: int(t.split()[-1][:-1]))


def test_unreadable_file(tmp_path, capsys):
    f = tmp_path / "c.txt.gz"
    f.write_bytes(b"this is not gzip data at all")
    assert cli("--corpus", str(f), "--out", str(tmp_path / "o")) == 2
    assert f"{f}: cannot read" in capsys.readouterr().err
    if os.geteuid() != 0:  # root reads anything
        g = tmp_path / "locked.txt"
        g.write_text(SENTENCES[0], encoding="utf-8")
        g.chmod(0)
        assert cli("--corpus", str(g), "--out", str(tmp_path / "o")) == 2
        assert f"{g}: cannot read" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_empty_result_after_filtering(tmp_path, capsys):
    f = tmp_path / "junk.txt"
    f.write_text("https://example.com/a\n<div>x</div>\n12 34 56 78\nHi\n", encoding="utf-8")
    assert cli("--corpus", str(f), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "no text left after cleaning 4 records from" in err and str(f) in err
    assert "url 1" in err and "markup 1" in err and "not_prose 1" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.txt"]  # nothing half-written


def test_existing_output_folder(tmp_path, capsys):
    f = tmp_path / "c.txt"
    f.write_text("\n".join(SENTENCES), encoding="utf-8")
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli("--corpus", str(f), "--out", str(out)) == 2
    assert "output folder exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    assert cli("--corpus", str(f), "--out", str(out), "--overwrite", "--test-size", "0") == 2
    err = capsys.readouterr().err
    assert "not written by stylegrpo" in err and "refusing to replace it" in err  # not ours
    assert (out / "keep.txt").read_text() == "mine"
    out2 = tmp_path / "o2"
    assert cli("--corpus", str(f), "--out", str(out2), "--test-size", "0") == 0
    (out2 / "keep.txt").write_text("added later")
    assert (
        cli("--corpus", str(f), "--out", str(out2), "--overwrite", "--test-size", "0") == 0
    )  # ours: replaced
    assert not (out2 / "keep.txt").exists() and texts(out2) == SENTENCES


# --- splits, pairing, determinism --------------------------------------------------------------------


def _corpus(tmp_path: Path, n: int) -> Path:
    f = tmp_path / "many.txt"
    words = ["apple", "river", "stone", "cloud", "lamp", "garden", "window", "music", "silver", "quiet"]
    f.write_text(
        "\n".join(
            f"Line {words[i % 10]} {words[i // 10 % 10]} {words[i // 100 % 10]} number {i}." for i in range(n)
        ),
        encoding="utf-8",
    )
    return f


def test_cross_pairing_split_by_text_without_leakage(tmp_path):
    f = _corpus(tmp_path, 300)
    config, result = build(
        tmp_path, [f], pairing="cross", test_size=0.2, styles_subset=["whispering", "shouting", "sad"]
    )
    train, test = rows(config.out, "train"), rows(config.out, "test")
    train_texts, test_texts = {r["text"] for r in train}, {r["text"] for r in test}
    assert not train_texts & test_texts
    assert len(test_texts) == 60 and len(train_texts) == 240  # exact fraction
    assert len(train) == 3 * 240 and len(test) == 3 * 60
    per_text = Counter((r["text"], r["style"]) for r in train + test)
    assert set(per_text.values()) == {1}
    assert {s for _, s in per_text} == {"whispering", "shouting", "sad"}
    assert result.splits["test"].style_rows.tolist() == [60, 60, 60]


def test_test_size_as_a_count(tmp_path):
    f = _corpus(tmp_path, 200)
    config, _ = build(tmp_path, [f], test_size=17)
    test = texts(config.out, "test")
    assert len(test) == 17 and not set(test) & set(texts(config.out, "train"))
    assert len(texts(config.out, "train")) == 183
    with pytest.raises(StyleGRPOError, match="leaves no training text"):
        build(tmp_path, [f], name="o2", test_size=500)


def test_balanced_and_random_pairing_counts(tmp_path):
    f = _corpus(tmp_path, 1000)
    catalog = load_catalog(STYLES)
    config, result = build(tmp_path, [f], test_size=0.1)
    for split, n in (("train", 900), ("test", 100)):
        got = rows(config.out, split)
        assert len(got) == n
        counts = Counter(r["style"] for r in got)
        assert set(counts) == set(catalog.names)
        assert max(counts.values()) - min(counts.values()) <= 1
        for r in got:
            assert r["description"] in catalog.get(r["style"]).descriptions
    descs = Counter((r["style"], r["description"]) for r in rows(config.out))
    for style in catalog.styles:  # every paraphrase of a style is used (near) equally often
        used = [descs[(style.name, d)] for d in style.descriptions]
        assert max(used) - min(used) <= 1
    config, _ = build(tmp_path, [f], name="random", pairing="random", seed=3)
    got = rows(config.out)
    assert len(got) == 1000 and len(Counter(r["style"] for r in got)) == len(catalog)


def test_same_seed_same_files_other_seed_differs(tmp_path):
    f = _corpus(tmp_path, 400)
    a, _ = build(tmp_path, [f], name="a", test_size=0.25, seed=7)
    b, _ = build(tmp_path, [f], name="b", test_size=0.25, seed=7)
    c, _ = build(tmp_path, [f], name="c", test_size=0.25, seed=8)
    for split in ("train", "test"):
        assert (a.out / split_file(split)).read_bytes() == (b.out / split_file(split)).read_bytes()
    assert set(texts(a.out, "test")) != set(texts(c.out, "test"))
    assert [r["style"] for r in rows(a.out)] != [r["style"] for r in rows(c.out)][: len(rows(a.out))]


def test_styles_subset(tmp_path, capsys):
    f = _corpus(tmp_path, 40)
    config, _ = build(tmp_path, [f], styles_subset=["sad", "child"])
    assert Counter(r["style"] for r in rows(config.out)) == {"sad": 20, "child": 20}
    assert cli("--corpus", str(f), "--out", str(tmp_path / "o"), "--styles-subset", "sad,happyish") == 2
    err = capsys.readouterr().err
    assert "unknown style 'happyish'" in err and "known styles: whispering, shouting" in err


def test_max_texts(tmp_path):
    f = _corpus(tmp_path, 100)
    config, result = build(tmp_path, [f], max_texts=30)
    assert len(texts(config.out)) == 30 and result.splits["train"].texts == 30
    assert [r["line"] for r in rows(config.out)] == list(range(1, 31))


# --- output layout, card, catalog --------------------------------------------------------------------


def test_load_dataset_gives_train_and_test_with_prompts_from_render(tmp_path):
    import datasets

    config, _ = build(tmp_path, [default_corpus_path()], test_size=0.1)
    cache = str(tmp_path / "hf-cache")
    dd = datasets.load_dataset(str(config.out), cache_dir=cache)
    assert set(dd) == {"train", "test"}
    for split in dd.values():
        assert {"prompt", "text", "style", "description", "source", "line"} <= set(split.column_names)
    catalog = load_catalog(STYLES)
    n = 0
    for split in dd.values():
        for r in split:
            assert r["prompt"] == catalog.template.render(r["text"], r["description"])
            n += 1
    assert n == 492  # every sentence of the embedded corpus is kept
    # rebuilt in place, the folder loads the new rows (no stale cache)
    build(tmp_path, [default_corpus_path()], test_size=0.1, max_texts=100, overwrite=True)
    dd = datasets.load_dataset(str(config.out), cache_dir=cache)
    assert {k: v.num_rows for k, v in dd.items()} == {"train": 90, "test": 10}


def test_card_reports_counts_drops_and_a_command_that_reproduces(tmp_path, capsys):
    f = tmp_path / "c.txt"
    f.write_text(
        "\n".join(SENTENCES + SENTENCES[:2] + ["Visit www.example.org today please."]), encoding="utf-8"
    )
    out = tmp_path / "o"
    assert cli("--corpus", str(f), "--out", str(out), "--test-size", "0.25", "--seed", "5") == 0
    printed = capsys.readouterr().out
    assert "train 6 rows (6 texts), test 2 rows (2 texts)" in printed and "duplicate 2" in printed
    card = (out / "README.md").read_text()
    assert card.startswith("---\ntask_categories:\n- text-to-speech\n")
    assert "| duplicate | 2 |" in card and "| url | 1 |" in card and "| **kept** | 8 |" in card
    assert "| train | chars |" in card and "| test | seconds |" in card
    command = re.search(r"```bash\n(.+)\n```", card).group(1)
    args = shlex.split(command)
    assert args[:2] == ["stylegrpo", "build"] and "--seed" in args
    again = tmp_path / "again"
    args[args.index("--out") + 1] = str(again)
    assert main(args[1:]) == 0
    for split in ("train", "test"):
        assert (out / split_file(split)).read_bytes() == (again / split_file(split)).read_bytes()


def test_a_style_added_to_a_copy_of_the_catalog_appears(tmp_path):
    text = Path(STYLES).read_text(encoding="utf-8")
    block = re.search(r"\n  - name: robotic\n.*", text, re.S).group(0)
    new = block.replace("name: robotic", "name: pirate").replace(
        "a flat, monotone robotic voice", "a pirate captain"
    )
    styles = tmp_path / "styles.yaml"
    styles.write_text(text + new, encoding="utf-8")
    f = _corpus(tmp_path, 120)
    config, _ = build(tmp_path, [f], styles=str(styles))
    got = [r for r in rows(config.out) if r["style"] == "pirate"]
    assert len(got) == 10  # 120 texts / 12 styles
    assert {r["description"] for r in got} <= {
        "a pirate captain",
        "a synthetic robot voice with no emotion",
        "a mechanical, monotonous voice",
    }
    assert "in the style of a pirate captain" in str([r["prompt"] for r in got])


def test_push_to_hub_offline_fails_clearly_but_keeps_the_dataset(tmp_path, capsys):
    # Pushing needs the network and a token: only the failure path can be tested offline.
    f = tmp_path / "c.txt"
    f.write_text("\n".join(SENTENCES), encoding="utf-8")
    out = tmp_path / "o"
    assert cli("--corpus", str(f), "--out", str(out), "--push-to-hub", "me/my-prompts") == 2
    err = capsys.readouterr().err
    assert "could not push" in err and "the dataset is written locally" in err
    assert (out / split_file("train")).exists()
