"""Reference speakers in the data path (issue 14): the builder's vectorized prompt column, the training
dataset checks, and a tiny GRPO run whose rollouts continue after the reference codes (which never reach
the decoded audio)."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset
from test_training_run import TINY
from test_training_run import settings as tiny_settings

from stylegrpo.data_builder.prompts import PromptRenderer
from stylegrpo.errors import StyleGRPOError
from stylegrpo.styles import PromptTemplate, Reference, load_catalog
from stylegrpo.training.grpo import load_prompt_dataset
from stylegrpo.training.learning_demo import write_demo_data

REFS = [
    Reference("The first reference voice.", [1, 2, 3, 63, 0] * 24),  # 120 codes
    Reference("Ünïcödé second | voice.", [7] * 60),
]


def test_vectorized_prompt_column_with_references_is_render():
    template = PromptTemplate()
    descriptions = ["calm and slow", "a man whispering"]
    texts = ["Hello there.", "Ünïcödé “quotes” — 中文.", "a | b > c", "  spaces  ", "Last one."]
    desc_ids = np.array([0, 1, 0, 1, 1])
    ref_ids = np.array([0, -1, 1, 0, 1])
    column = PromptRenderer(template, descriptions).render(pa.array(texts), desc_ids, ref_ids, REFS)
    expected = [
        template.render(t, descriptions[d], REFS[r] if r >= 0 else None)
        for t, d, r in zip(texts, desc_ids, ref_ids, strict=True)
    ]
    assert column.to_pylist() == expected
    # without references: the column the builder always wrote
    plain = PromptRenderer(template, descriptions).render(pa.array(texts), desc_ids)
    assert plain.to_pylist() == [
        template.render(t, descriptions[d]) for t, d in zip(texts, desc_ids, strict=True)
    ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refdemo")
    styles, dataset = write_demo_data(folder)
    catalog = load_catalog(styles)
    rows = Dataset.from_parquet(str(dataset / "data" / "train-00000-of-00001.parquet")).to_list()
    for k, row in enumerate(rows):
        ref = REFS[k % 2] if k % 3 else None  # two speakers, and rows without one
        row["reference_text"] = ref.text if ref else ""
        row["reference_codes"] = list(ref.codes) if ref else []
        row["speaker_id"] = f"spk{k % 2}" if ref else ""
        row["prompt"] = catalog.template.render(row["text"], row["description"], ref)
    return styles, rows


def write(tmp_path, rows):
    folder = tmp_path / "prompts"
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(rows).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def test_reference_rows_pass_the_dataset_checks(demo, tmp_path):
    styles, rows = demo
    ds = load_prompt_dataset(str(write(tmp_path, rows)), "train", load_catalog(styles))
    assert sum(bool(c) for c in ds["reference_codes"]) > 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(prompt=PromptTemplate().render(r["text"], r["description"])), "and reference"),
        (lambda r: r.update(reference_codes=[]), "'reference_text' is set but 'reference_codes' is empty"),
        (lambda r: r.update(reference_codes=[1, -3]), "reference code #2"),
        (
            lambda r: r.update(reference_text="a <|eot_id|> b"),
            "column 'reference_text': the reference transcript",
        ),
    ],
)
def test_bad_reference_rows_are_refused(demo, tmp_path, change, message):
    styles, rows = demo
    rows = [dict(r) for r in rows]
    change(rows[1])  # row 1 has a reference
    with pytest.raises(StyleGRPOError) as e:
        load_prompt_dataset(str(write(tmp_path, rows)), "train", load_catalog(styles))
    assert "row 1" in str(e.value) and message in str(e.value)


def test_grpo_rollouts_continue_after_the_reference(demo, tmp_path, monkeypatch):
    from stylegrpo.codec import Codec
    from stylegrpo.llasa import speech_tokens
    from stylegrpo.training.cli import parse_config
    from stylegrpo.training.grpo import build_trainer

    styles, rows = demo
    folder = write(tmp_path, rows)
    cap = 16  # completion tokens: far fewer than a reference's 60-120 codes
    decoded = []
    real = Codec.decode
    monkeypatch.setattr(
        Codec, "decode", lambda self, batch, **kw: decoded.extend(map(len, batch)) or real(self, batch, **kw)
    )
    settings = tiny_settings(
        (styles, folder),
        tmp_path / "run",
        rewards=["acoustic", "cer"],
        max_completion_length=cap,
        max_steps=1,
    )
    s, t, m, _ = parse_config(TINY, settings)
    run = build_trainer(s, t, m)
    trainer, tok = run.trainer, run.trainer.processing_class
    st = speech_tokens(tok)
    # the trainer's prompts end with the reference codes (so TRL's completions exclude them)
    data = trainer.train_dataset
    prompt_ids, _, _ = trainer._tokenize_prompts(list(data["prompt"]))
    for ids, codes in zip(prompt_ids, data["reference_codes"], strict=True):
        tail = list(ids[len(ids) - len(codes) :]) if codes else [ids[-1]]
        assert tail == (st.ids_from_codes(codes) if codes else [st.start_id])
    trainer.train()
    assert decoded and max(decoded) <= cap  # only completions were decoded, never a reference's codes


def test_references_that_leave_no_room_for_the_completion_are_refused(demo, tmp_path):
    from stylegrpo.training.cli import parse_config
    from stylegrpo.training.grpo import build_trainer

    styles, rows = demo
    settings = {
        "styles": str(styles),
        "dataset_path": str(write(tmp_path, rows)),
        "rewards": ["acoustic"],
        "reward_weights": [1.0],
        "max_completion_length": 1950,  # + a prompt of 120 reference codes and the text: over 2048
        "max_steps": 1,
        "save_strategy": "no",
        "output_dir": str(tmp_path / "run"),
    }
    s, t, m, _ = parse_config(TINY, settings)
    with pytest.raises(
        StyleGRPOError, match=r"prompt\(s\) with a reference speaker .* exceeds Llasa's 2048-token"
    ):
        build_trainer(s, t, m)


def test_identity_styles_with_a_reference_are_logged(demo, tmp_path, caplog):
    styles, rows = demo
    marked = tmp_path / "styles.yaml"
    text = Path(styles).read_text()
    marked.write_text(text.replace("  - name: voiced\n", "  - name: voiced\n    identity: true\n", 1))
    with caplog.at_level("WARNING"):
        load_prompt_dataset(str(write(tmp_path, rows)), "train", load_catalog(marked))
    n = sum(1 for r in rows if r["style"] == "voiced" and r["reference_codes"])
    assert n and f"{n} row(s) pair a reference speaker with a style that names who speaks" in caplog.text
