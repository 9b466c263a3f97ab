"""Checks `stylegrpo train` makes before any model loads: vLLM sampling vs IS correction, overlong prompts."""

import logging
from pathlib import Path

import pytest

from stylegrpo.errors import StyleGRPOError
from stylegrpo.speech_time import DEFAULT_SLOWEST_SYLLABLES_PER_SECOND, slowest_rates
from stylegrpo.training.checks import apply_overlong_rule, check_vllm_sampling, overlong_prompts
from stylegrpo.training.cli import parse_config

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "training" / "recipes"
VLLM = RECIPES / "llasa-1b-24gb-vllm.yaml"
CPU = {"use_cpu": True, "bf16": False}  # GPU recipes parse on this CPU machine with these two overrides
SHORT = "Good morning to you."
LONG = " ".join(["The wonderful elephant remembered everything about the marvellous afternoon."] * 3)


def test_the_vllm_recipe_passes_the_sampling_check():
    script_args, training_args, _, _ = parse_config(VLLM, CPU)
    assert training_args.use_vllm
    assert training_args.vllm_importance_sampling_mode == "token_truncate"
    check_vllm_sampling(training_args, script_args.speech_only_sampling)  # no error


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"top_k": 50}, "top_k=50"),
        ({"top_k": 0, "top_p": 0.9}, "top_p=0.9"),
        ({"top_k": 0, "min_p": 0.05}, "min_p=0.05"),
        ({"top_k": 0, "generation_kwargs": {"top_k": 20}}, "top_k=20"),
        ({"top_k": 0, "speech_only_sampling": True}, "speech_only_sampling"),
    ],
)
def test_vllm_with_is_correction_and_truncated_sampling_is_refused(overrides, named):
    script_args, training_args, _, _ = parse_config(
        VLLM, {**CPU, "vllm_importance_sampling_correction": True, **overrides}
    )
    with pytest.raises(StyleGRPOError) as e:
        check_vllm_sampling(training_args, script_args.speech_only_sampling)
    msg = str(e.value)
    assert named in msg and "vllm_importance_sampling_correction" in msg and "use_vllm" in msg


def test_is_correction_with_the_whole_vocabulary_or_without_vllm_is_allowed():
    _, whole, _, _ = parse_config(VLLM, {**CPU, "vllm_importance_sampling_correction": True, "top_k": 0})
    check_vllm_sampling(whole)
    _, no_vllm, _, _ = parse_config(
        VLLM, {**CPU, "use_vllm": False, "vllm_importance_sampling_correction": True, "top_k": 50}
    )
    check_vllm_sampling(no_vllm)


def test_train_refuses_before_loading_anything_or_creating_the_output(tmp_path, capsys):
    from stylegrpo.training.cli import main

    out = tmp_path / "run"
    rc = main(
        [
            "--config",
            str(VLLM),
            "--use_cpu",
            "true",
            "--bf16",
            "false",
            "--vllm_importance_sampling_correction",
            "true",
            "--dataset_path",
            str(tmp_path / "no-such-dataset"),
            "--output-dir",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "top_k=50" in err and "vllm_importance_sampling_correction" in err
    assert "Traceback" not in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------- overlong


def _write_dataset(folder: Path, rows: list[tuple[str, str]]) -> Path:
    from datasets import Dataset

    from stylegrpo.styles import load_catalog

    catalog = load_catalog(None)
    records = []
    for text, style in rows:
        d = catalog.get(style).descriptions[0]
        records.append(
            {"prompt": catalog.template.render(text, d), "text": text, "style": style, "description": d}
        )
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(records).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def test_slowest_rates_come_from_the_speaking_rate_targets(repo_styles):
    rates = slowest_rates(repo_styles)
    for style in repo_styles.styles:
        target = style.targets.get("speaking_rate")
        assert rates[style.name] == (target[0] if target else DEFAULT_SLOWEST_SYLLABLES_PER_SECOND)


def test_a_long_text_fits_a_fast_style_but_not_a_slow_one():
    rates = {"slow": 2.5, "fast": 7.0}
    texts, styles = [LONG, LONG, SHORT], ["slow", "fast", "slow"]
    # LONG has 3 x 23 = 69 syllables: 27.6 s = 1381 tokens at 2.5 syl/s, 9.9 s = 494 tokens at 7 syl/s
    report = overlong_prompts(texts, styles, rates, 1000, 50)
    assert report.overlong == {"slow": 1} and report.totals == {"slow": 2, "fast": 1}
    assert report.keep == [1, 2]
    assert overlong_prompts(texts, styles, rates, 1400, 50).n_overlong == 0


def test_the_real_recipe_drops_overlong_prompts_and_reports_them_per_style(tmp_path, caplog):
    from datasets import load_dataset

    from stylegrpo.styles import load_catalog

    folder = _write_dataset(
        tmp_path / "d", [(LONG, "calm_narrator"), (SHORT, "calm_narrator"), (LONG, "excited")]
    )
    script_args, training_args, _, _ = parse_config(
        RECIPES / "llasa-1b-24gb.yaml", {**CPU, "dataset_path": str(folder)}
    )
    assert script_args.overlong_prompts == "drop"
    ds = load_dataset(str(folder))["train"]
    with caplog.at_level(logging.INFO, logger="stylegrpo.training.checks"):
        kept = apply_overlong_rule(
            ds, load_catalog(None), training_args.max_completion_length, script_args.overlong_prompts
        )
    assert kept["text"] == [SHORT, LONG] and kept["style"] == ["calm_narrator", "excited"]
    text = caplog.text
    assert "calm_narrator" in text and "1 of     2 cannot fit" in text
    assert "excited" in text and "0 of     1 cannot fit" in text
    assert "left out 1 prompt(s)" in text


def test_train_reports_and_refuses_overlong_prompts_before_the_output_exists(tmp_path, capsys, caplog):
    from stylegrpo.training.cli import main

    folder = _write_dataset(tmp_path / "d", [(LONG, "calm_narrator"), (SHORT, "whispering")])
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="stylegrpo.training.checks"):
        rc = main(
            [
                "--config",
                str(RECIPES / "llasa-1b-24gb.yaml"),  # the real recipe (cap 1000), on this CPU
                "--use_cpu",
                "true",
                "--bf16",
                "false",
                "--report_to",
                "none",
                "--dataset_path",
                str(folder),
                "--overlong_prompts",
                "refuse",
                "--output-dir",
                str(out),
            ]
        )
    err = capsys.readouterr().err
    assert rc == 2 and "1 prompt(s) cannot be spoken within max_completion_length 1000" in err
    assert "calm_narrator 1" in err and not out.exists()
    assert "completion cap 1000 tokens" in caplog.text and "whispering" in caplog.text


def test_the_tiny_recipe_keeps_every_prompt():
    script_args, training_args, _, _ = parse_config(RECIPES / "tiny.yaml", {})
    assert script_args.overlong_prompts == "keep" and training_args.max_completion_length == 64


def test_an_unknown_rule_is_refused(tmp_path):
    from datasets import load_dataset

    from stylegrpo.styles import load_catalog

    folder = _write_dataset(tmp_path / "d", [(SHORT, "whispering")])
    ds = load_dataset(str(folder))["train"]
    with pytest.raises(StyleGRPOError, match="overlong_prompts: 'truncate' is not one of drop, refuse, keep"):
        apply_overlong_rule(ds, load_catalog(None), 600, "truncate")


def test_build_max_seconds_makes_data_and_completion_cap_agree(tmp_path, capsys):
    """`build --max-seconds S` keeps only texts every selected style can speak in S s; `train`'s rule with a cap
    of S x 50 (+ end) tokens then finds none too long (one rule: stylegrpo.speech_time)."""
    from datasets import load_dataset

    from stylegrpo.cli import main
    from stylegrpo.speech_time import tokens_for_seconds
    from stylegrpo.styles import load_catalog

    seconds = 5.0
    assert main(["build", "--out", str(tmp_path / "all")]) == 0
    assert main(["build", "--out", str(tmp_path / "short"), "--max-seconds", str(seconds)]) == 0
    everything = load_dataset(str(tmp_path / "all"))
    short = load_dataset(str(tmp_path / "short"))
    n_all = sum(len(s) for s in everything.values())
    n_short = sum(len(s) for s in short.values())
    assert 0 < n_short < n_all
    card = (tmp_path / "short" / "README.md").read_text()
    assert "too_long_to_speak" in card
    catalog = load_catalog(None)
    cap = tokens_for_seconds(seconds)
    rates = slowest_rates(catalog)
    for split in short.values():
        assert overlong_prompts(split["text"], split["style"], rates, cap, 50).n_overlong == 0
    long_split = everything["train"]
    assert overlong_prompts(long_split["text"], long_split["style"], rates, cap, 50).n_overlong > 0
