"""Pre-flight checks of the `speaker` reward against a dataset's reference speakers (issue 14), before any
model loads: refused when named on a split without references, a warning when references come without it,
and a warning naming the non-identity styles left without references while others have them."""

import logging
from pathlib import Path

import pytest
from datasets import Dataset, load_dataset
from test_training_checks import CPU, RECIPES

from stylegrpo.errors import StyleGRPOError
from stylegrpo.styles import Reference, load_catalog
from stylegrpo.training.checks import SPEAKER_README, check_speaker_reward, reference_coverage
from stylegrpo.training.cli import parse_config
from stylegrpo.training.grpo import load_prompt_dataset

ROOT = Path(__file__).resolve().parent.parent
STYLES = ROOT / "styles.yaml"
REFS = [
    Reference("The first reference voice.", (1, 2, 3, 63, 0) * 24),
    Reference("A second voice.", (7,) * 60),
]
TEXT = "Good morning to you."
LOGGER = "stylegrpo.training.checks"
WHERE = "data: split 'train'"
STOCK = ["llasa-1b-24gb", "llasa-1b-24gb-vllm", "tiny"]


def write(folder: Path, rows: list[tuple[str, int | None]]) -> Path:
    """A train split of `(style, reference index or None)` rows, as `build [--speakers]` writes them."""
    catalog = load_catalog(STYLES)
    records = []
    for style, k in rows:
        d = catalog.get(style).descriptions[0]
        ref = REFS[k] if k is not None else None
        records.append(
            {
                "prompt": catalog.template.render(TEXT, d, ref),
                "text": TEXT,
                "style": style,
                "description": d,
                "reference_text": ref.text if ref else "",
                "reference_codes": list(ref.codes) if ref else [],
                "speaker_id": f"spk{k}" if ref else "",
            }
        )
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(records).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def load(folder: Path):
    return load_prompt_dataset(str(folder), "train", load_catalog(STYLES))  # the prompt checks pass first


def rewards_of(recipe: str) -> list[str]:
    return list(parse_config(RECIPES / f"{recipe}.yaml", CPU)[0].rewards)


# whispering/excited with references from two speakers, child (an identity style) without: as build does
SPEAKERS_ROWS = [("whispering", 0), ("whispering", 1), ("excited", 0), ("excited", 1), ("child", None)]
PLAIN_ROWS = [("whispering", None), ("excited", None), ("child", None)]


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_coverage_counts_rows_speakers_and_styles_and_follows_select(tmp_path):
    ds = load(write(tmp_path / "d", SPEAKERS_ROWS))
    cov = reference_coverage(ds)
    assert (cov.rows, cov.referenced, cov.speakers) == (5, 4, 2)
    assert cov.by_style == {"whispering": (2, 2), "excited": (2, 2), "child": (0, 1)}
    picked = reference_coverage(ds.select([0, 4]))  # an index mapping (max_train_samples, overlong drop)
    assert (picked.rows, picked.referenced, picked.speakers) == (2, 1, 1)
    assert reference_coverage(ds.select([4])).referenced == 0
    plain = load_dataset(str(write(tmp_path / "p", PLAIN_ROWS)))["train"].remove_columns(
        ["reference_text", "reference_codes", "speaker_id"]
    )
    assert (reference_coverage(plain).referenced, reference_coverage(plain).speakers) == (0, 0)


@pytest.mark.parametrize("recipe", STOCK)
def test_a_stock_recipe_on_a_plain_dataset_says_nothing(tmp_path, caplog, recipe):
    names = rewards_of(recipe)
    assert "speaker" not in names  # the decision: the recipes do not list it (see their comment)
    ds = load(write(tmp_path / "d", PLAIN_ROWS))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        check_speaker_reward(ds, load_catalog(STYLES), names, WHERE)
    assert warnings(caplog) == []


@pytest.mark.parametrize("recipe", STOCK)
def test_a_stock_recipe_on_a_speakers_dataset_warns_once_how_to_add_it(tmp_path, caplog, recipe):
    ds = load(write(tmp_path / "d", SPEAKERS_ROWS))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        check_speaker_reward(ds, load_catalog(STYLES), rewards_of(recipe), WHERE)
    (line,) = warnings(caplog)  # one line: the coverage is complete (child is an identity style)
    assert "\n" not in line and line.startswith(WHERE)
    assert "4 of 5 row(s) carry a reference speaker from 2 speaker(s)" in line
    assert "do not include 'speaker'" in line
    assert "rewards: [..., speaker], reward_weights: [..., W]" in line and SPEAKER_README in line


def test_the_readme_section_the_warning_names_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = SPEAKER_README.split(", ")[-1].strip('"')
    assert f"**{section}.**" in readme and "## Train one LoRA for every style" in readme


def test_speaker_named_on_a_dataset_without_references_is_refused(tmp_path):
    ds = load(write(tmp_path / "d", PLAIN_ROWS))
    with pytest.raises(StyleGRPOError) as e:
        check_speaker_reward(ds, load_catalog(STYLES), ["style", "speaker"], WHERE)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(WHERE)
    assert "none of its 3 row(s) has a reference speaker" in msg
    assert "None for every row, so its weight trains nothing" in msg
    assert "remove 'speaker' from rewards" in msg and "stylegrpo build --speakers DIR" in msg
    # the same split without the reference columns at all (a dataset built before issue 14)
    bare = load_dataset(str(tmp_path / "d"))["train"].remove_columns(["reference_codes", "speaker_id"])
    with pytest.raises(StyleGRPOError, match="none of its 3 row"):
        check_speaker_reward(bare, load_catalog(STYLES), ["speaker"], WHERE)


def test_speaker_named_with_full_coverage_says_nothing(tmp_path, caplog):
    ds = load(write(tmp_path / "d", SPEAKERS_ROWS))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        cov = check_speaker_reward(ds, load_catalog(STYLES), ["style", "speaker"], WHERE)
    assert cov.referenced == 4 and warnings(caplog) == []


def test_styles_left_without_references_are_named_in_one_line(tmp_path, caplog):
    rows = [*SPEAKERS_ROWS, ("sad", None), ("sad", None), ("angry", None), ("deep_male", None)]
    ds = load(write(tmp_path / "d", rows))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        check_speaker_reward(ds, load_catalog(STYLES), ["style", "speaker"], WHERE)
    (line,) = warnings(caplog)
    assert "\n" not in line
    assert "style(s) angry, sad have no row with a reference speaker while 2 other style(s) do" in line
    assert "(excited, whispering)" in line and "the speaker reward never scores them" in line
    assert "child" not in line and "deep_male" not in line  # identity styles get no reference on purpose
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        check_speaker_reward(ds, load_catalog(STYLES), ["style"], WHERE)
    missing, coverage = warnings(caplog)  # without the reward: both lines, the coverage one without it
    assert "do not include 'speaker'" in missing and "4 of 9 row(s)" in missing
    assert "angry, sad" in coverage and "never scores" not in coverage


def test_train_refuses_speaker_on_a_plain_dataset_before_any_model_loads(tmp_path, capsys, monkeypatch):
    import stylegrpo.llasa
    from stylegrpo.cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("the policy was loaded before the speaker reward was checked")

    monkeypatch.setattr(stylegrpo.llasa, "load_policy", no_model)
    folder = write(tmp_path / "d", PLAIN_ROWS)
    out = tmp_path / "run"
    argv = ["train", "--config", "tiny", "--styles", str(STYLES), "--dataset_path", str(folder)]
    argv += ["--rewards", "style", "speaker", "--reward_weights", "1.0", "0.25", "--output-dir", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "rewards name 'speaker' but none of its 3 row(s) has a reference speaker" in err
    assert "Traceback" not in err and not out.exists()


def test_train_prints_the_missing_reward_warning_before_the_policy_loads(tmp_path, capsys, monkeypatch):
    import stylegrpo.llasa
    from stylegrpo.cli import main

    def stop(*args, **kwargs):
        raise StyleGRPOError("stopped at the policy in this test")

    monkeypatch.setattr(stylegrpo.llasa, "load_policy", stop)
    folder = write(tmp_path / "d", SPEAKERS_ROWS)
    argv = ["train", "--config", "tiny", "--styles", str(STYLES), "--dataset_path", str(folder)]
    argv += ["--report_to", "none", "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "stopped at the policy in this test" in err
    assert "4 of 5 row(s) carry a reference speaker from 2 speaker(s)" in err
    assert err.index("carry a reference speaker") < err.index("stopped at the policy")
