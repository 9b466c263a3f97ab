"""`train` trains only on what `stylegrpo build` writes for its catalog: a prompt dataset whose prompts, texts
or descriptions are not the catalog's is refused before any model loads, naming folder, split, row, column."""

from pathlib import Path

import pytest
from datasets import Dataset

from stylegrpo.cli import main
from stylegrpo.errors import StyleGRPOError
from stylegrpo.styles import PromptTemplate, load_catalog
from stylegrpo.training.grpo import load_prompt_dataset
from stylegrpo.training.learning_demo import write_demo_data

ROW = 3  # the row every case spoils
TINY = Path(__file__).resolve().parent.parent / "training" / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    styles, dataset = write_demo_data(tmp_path_factory.mktemp("demo"))
    return styles, Dataset.from_parquet(str(dataset / "data" / "train-00000-of-00001.parquet")).to_list()


def write(tmp_path, rows):
    folder = tmp_path / "prompts"
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(rows).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def spoiled(rows, **changes):
    rows = [dict(r) for r in rows]
    rows[ROW].update(changes)
    return rows


def refusal(tmp_path, styles, rows):
    folder = write(tmp_path, rows)
    with pytest.raises(StyleGRPOError) as e:
        load_prompt_dataset(str(folder), "train", load_catalog(styles))
    return str(e.value), folder


def test_the_demo_dataset_is_ours(demo, tmp_path):
    styles, rows = demo
    ds = load_prompt_dataset(str(write(tmp_path, rows)), "train", load_catalog(styles))
    assert len(ds) == len(rows)


def test_plain_string_prompts_are_refused(demo, tmp_path):
    styles, rows = demo
    flat = [{**r, "prompt": r["prompt"][0]["content"] + r["prompt"][1]["content"]} for r in rows]
    msg, folder = refusal(tmp_path, styles, flat)
    assert f"{folder}: split 'train' column 'prompt' holds string" in msg
    assert "chat messages" in msg and "stylegrpo build" in msg


def test_a_prompt_from_another_template_is_refused(demo, tmp_path):
    styles, rows = demo
    other = PromptTemplate()  # Llasa's default template, not the demo catalog's own
    rows = spoiled(rows, prompt=other.render(rows[ROW]["text"], rows[ROW]["description"]))
    msg, folder = refusal(tmp_path, styles, rows)
    assert f"{folder}: split 'train' row {ROW}: column 'prompt'" in msg
    assert "another template or catalog" in msg and "--styles FILE" in msg


def test_an_empty_description_is_refused(demo, tmp_path):
    styles, rows = demo
    template = load_catalog(styles).template
    for empty in ("", "   ", None):
        rows2 = spoiled(rows, description=empty, prompt=template.render(rows[ROW]["text"], empty))
        msg, _ = refusal(tmp_path / repr(empty), styles, rows2)
        assert f"row {ROW}: column 'description' is empty" in msg


def test_a_description_that_is_not_the_styles_is_refused(demo, tmp_path):
    styles, rows = demo
    template = load_catalog(styles).template
    other_style = next(r for r in rows if r["style"] != rows[ROW]["style"])["description"]
    for description in ("a pirate singing", other_style):
        rows2 = spoiled(rows, description=description, prompt=template.render(rows[ROW]["text"], description))
        msg, _ = refusal(tmp_path / description.replace(" ", "_"), styles, rows2)
        assert f"row {ROW}: column 'description' {description!r} is not one of style" in msg


def test_an_empty_text_is_refused(demo, tmp_path):
    styles, rows = demo
    template = load_catalog(styles).template
    rows = spoiled(rows, text=" ", prompt=template.render(" ", rows[ROW]["description"]))
    msg, _ = refusal(tmp_path, styles, rows)
    assert f"row {ROW}: column 'text' is empty" in msg


def test_train_refuses_before_any_model_loads(demo, tmp_path, capsys, monkeypatch):
    import stylegrpo.llasa

    def no_model(*args, **kwargs):
        raise AssertionError("the policy was loaded before the dataset was checked")

    monkeypatch.setattr(stylegrpo.llasa, "load_policy", no_model)
    styles, rows = demo
    folder = write(tmp_path, [{**r, "prompt": r["prompt"][0]["content"]} for r in rows])
    argv = ["train", "--config", str(TINY), "--styles", str(styles)]
    argv += ["--dataset_path", str(folder), "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "column 'prompt' holds string" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
