"""The model card (adapter/README.md) and the dataset card (build --out/README.md) follow the Hugging Face
conventions: their YAML headers parse with huggingface_hub's own ModelCard/DatasetCard and carry the fields
the Hub renders and indexes; their usage snippets work as written."""

import argparse
import re
import shlex
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, ModelCard

from stylegrpo.audio import read_wav

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "training" / "recipes"
CPU = {"use_cpu": True, "bf16": False}


def _blocks(card: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)\n```", card, re.S)


def _real_info(tmp_path, **script_overrides):
    """What main() hands the card writer, for the llasa-1b recipe (no model is loaded)."""
    from stylegrpo.presets import get_preset
    from stylegrpo.styles import load_catalog
    from stylegrpo.training.cli import parse_config

    s, t, m, _ = parse_config(
        RECIPES / "llasa-1b-24gb.yaml", {**CPU, "output_dir": str(tmp_path / "run"), **script_overrides}
    )
    catalog = load_catalog(None)
    return {
        "base_model": m.model_name_or_path or get_preset(s.preset).policy,
        "preset": get_preset(s.preset),
        "catalog": catalog,
        "rewards": list(zip(s.rewards, t.reward_weights, strict=True)),
        "training_args": t,
        "model_args": m,
        "dataset_path": s.dataset_path,
        "dataset_hub_id": s.dataset_hub_id,
        "dataset_counts": {"whispering": 4, "shouting": 3},
        "global_step": 10,
        "last_metrics": {},
    }


def test_model_card_metadata_for_a_real_base_model(tmp_path):
    from stylegrpo.say import add_arguments
    from stylegrpo.training.card import write_model_card

    info = _real_info(tmp_path, dataset_hub_id="someone/my-prompts")
    path = tmp_path / "README.md"
    adapter = tmp_path / "run" / "adapter"
    write_model_card(path, info, final_dir=adapter)
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["base_model"] == "HKUSTAudio/Llasa-1B"
    assert data["library_name"] == "peft" and data["pipeline_tag"] == "text-to-speech"
    assert data["license"] == "cc-by-nc-4.0"  # Llasa's own license: the adapter derives from it
    assert data["datasets"] == ["someone/my-prompts"]
    assert {"trl", "grpo", "stylegrpo", "lora", "text-to-speech"} <= set(data["tags"])
    # the usage line is a valid `stylegrpo say` command for a style the run trained
    (block,) = _blocks(card.content, "bash")
    args = shlex.split(block)
    assert args[:2] == ["stylegrpo", "say"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(args[2:])
    assert ns.adapter == str(adapter) and ns.style == "whispering" and ns.preset == "llasa-1b"
    assert ns.styles == str(adapter / "styles.yaml")  # the adapter's own catalog (saved beside it)


def test_model_card_names_no_dataset_or_base_it_cannot_link(tmp_path):
    from stylegrpo.training.card import write_model_card

    info = _real_info(tmp_path, model_name_or_path=str(tmp_path))  # a local folder as the policy
    write_model_card(tmp_path / "README.md", info)
    data = ModelCard.load(tmp_path / "README.md").data.to_dict()
    assert "base_model" not in data and "datasets" not in data  # a local path is not a hub repo
    assert data["license"] == "other" and data["license_name"] == "same-as-base-model"
    (block,) = _blocks((tmp_path / "README.md").read_text(), "bash")
    assert f"--policy {tmp_path}" in block  # the base the run used, not the preset's


def test_tiny_adapter_card_and_its_usage_line_as_written(tmp_path, monkeypatch):
    """Train a tiny adapter, then run the card's `stylegrpo say` line exactly as written."""
    from stylegrpo.cli import main as cli
    from stylegrpo.training.learning_demo import write_demo_data

    styles, dataset = write_demo_data(tmp_path / "demo")
    out = tmp_path / "run"
    argv = ["train", "--config", "tiny", "--styles", str(styles), "--dataset_path", str(dataset)]
    argv += ["--output-dir", str(out), "--max_steps", "1", "--rewards", "acoustic", "--reward_weights", "1"]
    argv += ["--max_completion_length", "16", "--samples_every", "0", "--save_strategy", "no"]
    assert cli(argv) == 0
    card = ModelCard.load(out / "adapter" / "README.md")
    data = card.data.to_dict()
    assert "base_model" not in data  # tiny:llasa is a random twin, no hub model
    assert data["library_name"] == "peft" and data["pipeline_tag"] == "text-to-speech"
    (block,) = _blocks(card.content, "bash")
    monkeypatch.chdir(tmp_path)
    args = shlex.split(block)
    assert args[:2] == ["stylegrpo", "say"] and "--preset" in args
    assert cli(args[1:]) == 0
    assert read_wav(tmp_path / "hello.wav").size > 0


# ------------------------------------------------------------------------------------------ dataset card


def _build(out: Path, *extra: str) -> None:
    from stylegrpo.cli import main as cli

    assert cli(["build", "--out", str(out), "--max-texts", "40", "--test-size", "8", *extra]) == 0


def test_dataset_card_metadata_and_snippets(tmp_path, monkeypatch):
    from stylegrpo.training.cli import add_arguments, overrides_from_args, parse_config, resolve_recipe

    out = tmp_path / "prompts"
    _build(out)
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["task_categories"] == ["text-to-speech"]
    assert data["language"] == ["en"] and data["license"] == "apache-2.0"  # the embedded corpus
    assert data["size_categories"] == ["n<1K"]
    (config,) = data["configs"]
    files = {f["split"]: f["path"] for f in config["data_files"]}
    assert set(files) == {"train", "test"}
    rows = {split: pq.ParquetFile(out / path).metadata.num_rows for split, path in files.items()}
    assert rows["test"] == 8 and rows["train"] == 32
    assert {s["name"]: s["num_examples"] for s in data["dataset_info"]["splits"]} == rows
    assert [f["name"] for f in data["dataset_info"]["features"]][:4] == [
        "prompt",
        "text",
        "style",
        "description",
    ]

    # the python snippet runs as written (from the folder the build ran in) and gives those splits
    (code,) = _blocks(card.content, "python")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(code, scope)
    assert {k: len(v) for k, v in scope["ds"].items()} == rows

    # the training line uses real `stylegrpo train` options and trains on this folder
    train_line = next(b for b in _blocks(card.content, "bash") if b.startswith("stylegrpo train"))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(shlex.split(train_line)[2:])
    s, t, _, _ = parse_config(resolve_recipe(ns.config), {**overrides_from_args(ns), **CPU})
    assert s.dataset_path == str(out) and t.output_dir == "runs/prompts"


def test_a_rebuilt_folder_loads_its_new_rows(tmp_path):
    """With `configs:` declared, `datasets` keys its cache on the card's metadata: the rows and bytes in
    `dataset_info` are what tells a rebuilt folder from the old one."""
    from datasets import load_dataset

    out = tmp_path / "prompts"
    _build(out, "--seed", "1")
    first = load_dataset(str(out))["train"]["text"]
    _build(out, "--seed", "2", "--overwrite")
    again = load_dataset(str(out))["train"]["text"]
    assert len(first) == len(again) and first != again
    assert again == pq.read_table(out / "data" / "train-00000-of-00001.parquet")["text"].to_pylist()


def test_a_dataset_card_of_your_own_corpus_declares_no_language_or_license(tmp_path):
    corpus = tmp_path / "mine.txt"
    corpus.write_text(
        "\n".join(
            f"This is my own sentence number {w} for the test."
            for w in ("one", "two", "three", "four", "five", "six")
        )
    )
    out = tmp_path / "prompts"
    from stylegrpo.cli import main as cli

    assert cli(["build", "--corpus", str(corpus), "--out", str(out), "--test-size", "2"]) == 0
    card = DatasetCard.load(out / "README.md")
    assert "language" not in card.data.to_dict() and "license" not in card.data.to_dict()
    assert "Language and license are not declared" in card.content


@pytest.mark.parametrize(
    "rows,bucket", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (2_000_000, "1M<n<10M")]
)
def test_size_categories(rows, bucket):
    from stylegrpo.data_builder.card import size_category

    assert size_category(rows) == bucket
