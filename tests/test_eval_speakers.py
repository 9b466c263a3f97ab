"""`stylegrpo eval --dataset` on a dataset built with `build --speakers`: each clip of a non-identity style is
spoken with its text's reference speaker from the test split (held-out voices), compared with that
reference decoded by the codec, per style base vs adapter; identity styles get none; `--speaker` overrides."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_build_speakers import corpus, refs, rows  # noqa: F401 - the module fixtures, reused
from test_eval_e2e import make_adapter

from stylegrpo.cli import main
from stylegrpo.scorers.speaker import ReferenceEmbeddings, cosine

N_TEXTS = 3  # texts per style: 3 styles x 3 texts x 2 models = 18 tiny clips


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, corpus, refs):  # noqa: F811 - the fixtures imported above
    out = tmp_path_factory.mktemp("speakers") / "ds"
    argv = ["build", "--styles", str(corpus / "styles.yaml"), "--corpus", str(corpus / "texts.txt")]
    argv += ["--speakers", str(refs), "--codec", "tiny:xcodec2", "--device", "cpu", "--out", str(out)]
    argv += ["--test-size", "0.3", "--test-speakers", "0.4", "--seed", "7"]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return make_adapter(tmp_path_factory.mktemp("adapter") / "adapter")


def eval_argv(corpus, dataset, out, *extra):  # noqa: F811
    argv = ["eval", "--preset", "tiny", "--device", "cpu", "--styles", str(corpus / "styles.yaml")]
    argv += [
        "--dataset",
        str(dataset),
        "--n-per-style",
        str(N_TEXTS),
        "--max-seconds",
        "1",
        "--out",
        str(out),
    ]
    return [*argv, *extra]


def first_reference(test_rows):
    """Text -> (speaker_id, reference_text, reference_codes): its first test row's reference, or (a text
    whose row is of the identity style) the split's distinct references dealt in turn."""
    out, pool = {}, []
    for r in test_rows:
        if r["speaker_id"] and r["text"] not in out:
            out[r["text"]] = (r["speaker_id"], r["reference_text"], r["reference_codes"])
            if out[r["text"]] not in pool:
                pool.append(out[r["text"]])
    bare = [t for t in dict.fromkeys(r["text"] for r in test_rows) if t not in out]
    for k, text in enumerate(bare):
        out[text] = pool[k % len(pool)]
    return out


def records(out):
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


def test_eval_speaks_each_text_with_its_held_out_reference(tmp_path, capsys, corpus, dataset, adapter):  # noqa: F811
    from stylegrpo.audio import read_wav
    from stylegrpo.codec import Codec
    from stylegrpo.presets import get_preset
    from stylegrpo.scorers.speaker import SpeakerScorer

    test_rows, train_rows = rows(dataset, "test"), rows(dataset, "train")
    train_speakers = {r["speaker_id"] for r in train_rows if r["speaker_id"]}
    expected = first_reference(test_rows)
    assert expected and not {s for s, _, _ in expected.values()} & train_speakers  # held-out voices

    out = tmp_path / "eval"
    argv = eval_argv(corpus, dataset, out, "--adapter", str(adapter))
    assert main(argv) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    recs = records(out)
    assert len(recs) == 3 * N_TEXTS * 2
    used = set()
    for r in recs:
        if r["style"] == "child":  # identity style: its own voice, no reference, no similarity
            assert r["speaker_id"] == "" and r["speaker_similarity"] is None
            assert not any(ref_text in r["prompt"] for _, ref_text, _ in expected.values())
            continue
        sid, ref_text, _ = expected[r["text"]]
        assert r["speaker_id"] == sid and sid not in train_speakers
        assert r["prompt"].startswith(f"Convert the text to speech in the style of {r['phrase']}:")
        assert f"{ref_text} {r['text']}" in r["prompt"]  # Llasa's voice prompt: reference transcript + text
        assert r["no_speech"] or -1.0 <= r["speaker_similarity"] <= 1.0
        used.add(sid)
    # the similarity is the cosine to the row's reference CODES decoded by the codec (not some other voice)
    preset = get_preset("tiny")
    codec = Codec.load(preset.codec, "cpu")
    judge = SpeakerScorer(preset.wavlm, "cpu")
    scored = [r for r in recs if r["speaker_id"] and not r["no_speech"]]
    assert scored, "the tiny policy should say something in some clip"
    for r in scored[:4]:
        _, _, ref_codes = expected[r["text"]]
        ref = judge.embeddings([codec.decode([list(ref_codes)])[0]])
        gen = judge.embeddings([read_wav(out / "clips" / r["file_name"])])
        assert r["speaker_similarity"] == pytest.approx(float(cosine(gen, ref)[0]), abs=1e-4)
    # per style, base vs adapter: present for the referenced styles, absent (n = 0) for the identity style
    metrics = json.loads((out / "metrics.json").read_text())
    sim = {(r["style"], r["model"]): r for r in metrics["rows"] if r["metric"] == "speaker_similarity"}
    for model in ("base", "adapter"):
        assert sim[("child", model)]["n"] == 0
        assert sim[("calm", model)]["n"] + sim[("fast", model)]["n"] > 0
    assert sim[("calm", "adapter")]["diff_n"] + sim[("fast", "adapter")]["diff_n"] > 0
    config = metrics["config"]
    assert config["reference_speakers"] == sorted(used)
    assert config["held_out_speakers"] == sorted(used)  # none of them is a training voice
    assert f"reference speakers: {len(used)} of the test split, {len(used)} held out from training" in stdout
    assert "speaker_similarity" in stdout
    html = (out / "report.html").read_text()
    assert f"{len(used)} reference speaker(s) of the test split, {len(used)} held out from training" in html
    import csv

    with (out / "clips" / "metadata.csv").open() as f:  # the clips' metadata names who speaks each one
        meta = {m["file_name"]: m for m in csv.DictReader(f)}
    assert {meta[r["file_name"]]["speaker_id"] for r in recs if r["style"] != "child"} == used
    ident = json.loads((out / "eval_config.json").read_text())["identity"]
    assert {e["speaker_id"] for e in ident["references"] if e} == used  # part of what a clip is

    # the same command resumes: nothing is synthesized or scored again
    assert main(argv) == 0
    assert "resumed eval: 0 clips synthesized, 0 scored" in capsys.readouterr().out


def test_speaker_overrides_the_dataset_references(tmp_path, capsys, corpus, dataset, refs):  # noqa: F811
    out = tmp_path / "eval"
    voice = next(iter(sorted(refs.glob("*.wav"))))
    argv = eval_argv(
        corpus, dataset, out, "--speaker", str(voice), "--speaker-text", "The garden is quiet today."
    )
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert (
        "overrides the" in captured.err + captured.out
        and "reference speaker(s)" in captured.err + captured.out
    )
    test_speakers = {r["speaker_id"] for r in rows(dataset, "test") if r["speaker_id"]}
    for r in records(out):
        assert r["speaker_id"] == ("" if r["style"] == "child" else "speaker")
        assert r["speaker_id"] not in test_speakers
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert "reference_speakers" not in config and config["dataset_speakers_overridden"] >= 1
    assert "references" not in json.loads((out / "eval_config.json").read_text())["identity"]
    assert "overrides the dataset" in (out / "report.html").read_text()  # the report says so too


def test_reference_embeddings_decode_each_reference_once():
    decoded = []

    def decode(codes):
        decoded.append(tuple(codes))
        return np.full(8000, float(sum(codes)), dtype=np.float32)

    def embed(wavs):
        return np.stack([np.array([w[0], 1.0]) for w in wavs])

    cache = ReferenceEmbeddings(decode, embed, max_items=2)
    a = cache.stack(["a", "a", "b", "a"], [[1, 2], [1, 2], [3], [1, 2]])
    assert decoded == [(1, 2), (3,)] and cache.decoded == 2
    np.testing.assert_array_equal(a[0], [3.0, 1.0])
    np.testing.assert_array_equal(a[2], [3.0, 1.0])  # same audio, another reference: its own entry
    cache.get("a", [5])  # a third reference: the least recently used one, ("b", [3]), is dropped
    cache.get("a", [1, 2])
    assert decoded == [(1, 2), (3,), (5,)]
    cache.get("b", [3])
    assert decoded[-1] == (3,)  # dropped earlier, decoded again


# -- reading the dataset's references and the eval's identity (no models) ------------------------------------


def write_split(folder, split, rows_):
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows_).to_parquet(folder / f"{split}.parquet")


def row(text, style, speaker="", ref_text="", codes=()):
    return {
        "text": text,
        "style": style,
        "reference_text": ref_text,
        "reference_codes": list(codes),
        "speaker_id": speaker,
    }


def test_read_dataset_gives_each_text_its_rows_reference_and_the_training_speakers(tmp_path):
    from stylegrpo.eval.run import read_dataset

    d = tmp_path / "ds"
    test_rows = [
        row("One.", "child"),  # identity row first: its text takes the reference of a later row of it
        row("One.", "calm", "ann", "hi from ann", [1, 2, 3]),
        row("Two.", "child"),  # only an identity row: dealt the split's references in turn
        row("Three.", "fast", "bob", "hi from bob", [4, 5]),
        row("Four.", "child"),
        row("Three.", "calm", "ann", "hi from ann", [1, 2, 3]),
    ]
    write_split(d, "test", test_rows)
    write_split(d, "train", [row("Five.", "calm", "cid", "hi from cid", [6]), row("Six.", "child")])
    got = read_dataset(d)
    assert got.texts == [r["text"] for r in test_rows]
    got_refs = {t: (r.speaker_id, r.reference.text, r.reference.codes) for t, r in got.references.items()}
    assert got_refs["One."] == ("ann", "hi from ann", (1, 2, 3))
    assert got_refs["Three."] == ("bob", "hi from bob", (4, 5))  # its first row's, not a later one's
    assert (
        got_refs["Two."] == got_refs["One."] and got_refs["Four."] == got_refs["Three."]
    )  # the distinct references in turn
    assert got.train_speakers == frozenset({"cid"})

    plain = tmp_path / "plain"  # a dataset without reference columns: no references, nothing else read
    write_split(plain, "test", [{"text": "One.", "style": "calm"}])
    assert read_dataset(plain).references == {} and read_dataset(plain).train_speakers is None


def test_a_bad_reference_row_is_one_line_naming_it(tmp_path, capsys):
    d = tmp_path / "ds"
    write_split(d, "test", [row("One.", "calm", "ann", "hi", [1]), row("Two.", "calm", "bob", "hello", [])])
    out = tmp_path / "eval"
    argv = ["eval", "--preset", "tiny", "--device", "cpu", "--dataset", str(d), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "test row 2" in err and "reference_codes" in err and "Traceback" not in err
    assert not out.exists()


def test_the_references_are_part_of_the_eval_identity(tmp_path):
    from stylegrpo.eval.run import EvalSettings, SpeakerReference, identity
    from stylegrpo.presets import get_preset
    from stylegrpo.styles import Reference, parse_catalog

    catalog = parse_catalog(
        "styles:\n  - name: calm\n    phrase: a calm voice\n    descriptions: [a calm voice]\n"
        "  - name: child\n    phrase: a child\n    descriptions: [a child]\n    identity: true\n",
        "styles.yaml",
    )

    def settings(references, **kw):
        return EvalSettings(
            out=tmp_path / "e",
            catalog=catalog,
            texts=["One.", "Two."],
            texts_source="t",
            preset=get_preset("tiny"),
            dataset_references=references,
            **kw,
        )

    ann = {"One.": SpeakerReference("ann", Reference("hi", (1, 2)))}
    base = identity(settings(ann))
    assert base["references"][0]["speaker_id"] == "ann" and base["references"][1] is None
    assert (
        identity(settings({"One.": SpeakerReference("ann", Reference("hi", (1, 3)))})) != base
    )  # other codes
    assert identity(settings({"One.": SpeakerReference("bob", Reference("hi", (1, 2)))})) != base
    assert "references" not in identity(settings({}))  # a dataset without references: as before
    assert "references" not in identity(settings(ann, styles=["child"]))  # identity styles use none
