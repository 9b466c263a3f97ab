"""`stylegrpo train` configuration: recipes (YAML + comments), CLI overrides, clear errors."""

import re
from pathlib import Path

import pytest
import yaml

from stylegrpo.errors import StyleGRPOError
from stylegrpo.training.cli import parse_config

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "training" / "recipes").glob("*.yaml"))
ACCELERATE = sorted((ROOT / "training" / "accelerate").glob("*.yaml"))
CPU = {"use_cpu": True, "bf16": False}  # GPU recipes parse on this CPU machine with these two overrides


def test_the_recipes_exist():
    names = {p.name for p in RECIPES}
    assert {"tiny.yaml", "llasa-1b-24gb.yaml", "llasa-1b-24gb-vllm.yaml"} <= names
    assert {p.name for p in ACCELERATE} >= {"ddp.yaml", "zero2.yaml"}


@pytest.mark.parametrize("path", RECIPES + ACCELERATE, ids=lambda p: p.name)
def test_every_key_has_a_comment(path):
    """Each key line of a recipe says why: `key: value  # reason`."""
    missing = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"^\s*[A-Za-z_][\w-]*:", line) and not line.rstrip().endswith(":") and "#" not in line:
            missing.append(f"{n}: {line.strip()}")
        if re.match(r"^\s*[A-Za-z_][\w-]*:\s*$", line):  # a mapping header: its children carry comments
            continue
    assert not missing, f"{path.name}: keys without a comment:\n" + "\n".join(missing)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipes_parse_into_trl_configs(path):
    overrides = {} if path.name == "tiny.yaml" else CPU
    script_args, training_args, model_args, recipe = parse_config(path, overrides)
    loaded = yaml.safe_load(path.read_text())
    assert set(loaded) <= set(recipe)
    assert model_args.use_peft is True
    assert training_args.reward_weights is not None and len(training_args.reward_weights) == len(
        script_args.rewards
    )
    assert training_args.num_generations >= 2
    assert training_args.remove_unused_columns is False  # the reward columns must reach the rewards
    if path.name == "tiny.yaml":
        assert script_args.preset == "tiny" and training_args.use_cpu and not training_args.bf16
        assert training_args.report_to in ([], "none", ["none"]) or not training_args.report_to
    if "vllm" in path.name:
        assert training_args.use_vllm and training_args.vllm_mode == "colocate"
        assert 0 < training_args.vllm_gpu_memory_utilization < 0.5


def test_cli_overrides_win_over_the_recipe(tmp_path):
    from stylegrpo.cli import _parser
    from stylegrpo.training.cli import overrides_from_args

    args = _parser("train").parse_args(
        [
            "train",
            "--config",
            str(ROOT / "training/recipes/tiny.yaml"),
            "--learning_rate",
            "0.25",
            "--output-dir",
            str(tmp_path / "out"),
            "--rewards",
            "cer",
            "acoustic",
            "--reward_weights",
            "2",
            "1",
            "--no_duration_guard",
            "--lora_target_modules",
            "q_proj",
            "v_proj",
            "--styles",
            "my.yaml",
        ]
    )
    overrides = overrides_from_args(args)
    assert overrides == {
        "learning_rate": 0.25,
        "output_dir": str(tmp_path / "out"),
        "rewards": ["cer", "acoustic"],
        "reward_weights": [2.0, 1.0],
        "duration_guard": False,
        "lora_target_modules": ["q_proj", "v_proj"],
        "styles": "my.yaml",
    }  # options not given on the command line are absent: the recipe's values stand
    script_args, training_args, model_args, recipe = parse_config(args.config, overrides)
    assert training_args.learning_rate == 0.25 and training_args.output_dir == str(tmp_path / "out")
    assert script_args.rewards == ["cer", "acoustic"] and training_args.reward_weights == [2.0, 1.0]
    assert script_args.duration_guard is False and script_args.styles == "my.yaml"
    assert model_args.lora_target_modules == ["q_proj", "v_proj"]
    assert training_args.max_steps == 20 and script_args.preset == "tiny"  # from the recipe
    assert recipe["learning_rate"] == 0.25 and recipe["max_steps"] == 20


def test_yaml_strings_are_typed_like_command_line_values(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "learning_rate: 1e-3  # PyYAML reads this as a string\nuse_cpu: true  # cpu\nbf16: false  # cpu\n"
    )
    _, training_args, _, _ = parse_config(recipe, {})
    assert training_args.learning_rate == pytest.approx(1e-3)


def test_recipe_errors_are_clear(tmp_path):
    with pytest.raises(StyleGRPOError, match="recipe not found"):
        parse_config(tmp_path / "nope.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: [1\n")
    with pytest.raises(StyleGRPOError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        parse_config(bad, {})
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("learning_rat: 0.1\nuse_cpu: true\n")
    with pytest.raises(StyleGRPOError, match="unknown key.*learning_rat"):
        parse_config(unknown, {})
    gpu_only = tmp_path / "gpu.yaml"
    gpu_only.write_text("num_generations: 3\nper_device_train_batch_size: 4\nuse_cpu: true\nbf16: false\n")
    with pytest.raises(StyleGRPOError, match="invalid training settings.*divisible"):
        parse_config(gpu_only, {})


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_bundled_recipe_by_name_is_its_file(path, tmp_path, monkeypatch):
    from stylegrpo.training.cli import resolve_recipe

    monkeypatch.chdir(tmp_path)  # not in the checkout: the name alone finds the file in the package
    assert resolve_recipe(path.stem).resolve() == path.resolve()
    overrides = {} if path.stem == "tiny" else CPU
    assert parse_config(path.stem, overrides)[3] == parse_config(path, overrides)[3]


def test_recipe_names_and_paths(tmp_path, monkeypatch, capsys):
    from stylegrpo.cli import main
    from stylegrpo.training.cli import resolve_recipe

    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "tiny"  # a file in the working folder wins over the bundled recipe of that name
    mine.write_text("learning_rate: 0.5  # mine\nuse_cpu: true\n")
    assert resolve_recipe("tiny") == Path("tiny")
    assert parse_config("tiny", {})[1].learning_rate == 0.5
    mine.unlink()
    with pytest.raises(StyleGRPOError) as e:
        parse_config("tinny", {})
    msg = str(e.value)
    assert "'tinny'" in msg and all(p.stem in msg for p in RECIPES) and "--list-recipes" in msg
    with pytest.raises(StyleGRPOError, match=r"sub/tiny.yaml: recipe not found \(bundled recipes: .*tiny"):
        parse_config("sub/tiny.yaml", {})  # a path is a path: never replaced by a bundled recipe

    assert main(["train", "--config", "tinny"]) == 2
    assert "bundled recipes: " in capsys.readouterr().err
    assert main(["train", "--list-recipes"]) == 0
    listed = capsys.readouterr().out.splitlines()
    for path in RECIPES:
        first_comment = next(t for t in path.read_text().splitlines() if t.startswith("#")).lstrip("# ")
        assert any(line.split() and line.split()[0] == path.stem and first_comment in line for line in listed)
    assert list(tmp_path.iterdir()) == []  # listing writes nothing


def test_cli_errors_exit_2_with_the_command_to_run(tmp_path, capsys):
    from stylegrpo.cli import main

    rc = main(
        [
            "train",
            "--config",
            str(ROOT / "training/recipes/tiny.yaml"),
            "--dataset_path",
            str(tmp_path / "missing-prompts"),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "stylegrpo train: error:" in err and f"stylegrpo build --out {tmp_path / 'missing-prompts'}" in err
    assert not (tmp_path / "out").exists()  # checked before anything is written

    rc = main(["train", "--config", str(ROOT / "training/recipes/tiny.yaml"), "--rewards", "style", "bogus"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown reward function(s) 'bogus'" in err and "whisper_nll" in err


def test_output_dir_is_refused_unless_overwrite_or_resume(tmp_path):
    from stylegrpo.outputs import MARK_NAME
    from stylegrpo.training.grpo import prepare_output_dir, resolve_resume

    out = tmp_path / "run"
    out.mkdir()
    (out / "something.txt").write_text("old")
    with pytest.raises(StyleGRPOError, match="--overwrite"):
        prepare_output_dir(str(out), resume=None, overwrite=False, is_main=True)
    with pytest.raises(StyleGRPOError, match="not written by stylegrpo"):  # not ours: never cleared
        prepare_output_dir(str(out), resume=None, overwrite=True, is_main=True)
    assert (out / "something.txt").read_text() == "old"
    (out / MARK_NAME).write_text("{}")  # as if an earlier `stylegrpo train` had written the folder
    prepare_output_dir(str(out), resume=None, overwrite=True, is_main=True)
    assert out.is_dir() and [p.name for p in out.iterdir()] == [MARK_NAME]  # --overwrite starts afresh
    with pytest.raises(StyleGRPOError, match="no checkpoint"):
        resolve_resume("true", out)
    from test_resume import complete_checkpoint

    complete_checkpoint(out / "checkpoint-3", 3)
    complete_checkpoint(out / "checkpoint-12", 12)
    assert resolve_resume("true", out) == str(out / "checkpoint-12")
    assert resolve_resume(str(out / "checkpoint-3"), out) == str(out / "checkpoint-3")
    assert resolve_resume("false", out) is None and resolve_resume(None, out) is None
    with pytest.raises(StyleGRPOError, match="not a complete training checkpoint"):
        resolve_resume(str(tmp_path), out)
    prepare_output_dir(str(out), resume=str(out / "checkpoint-12"), overwrite=False, is_main=True)  # allowed


def test_help_lists_trl_and_stylegrpo_options(capsys):
    from stylegrpo.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--config",
        "--rewards",
        "--reward_weights",
        "--multi_objective_aggregation",
        "--lora_r",
        "--overwrite",
    ):
        assert option in out
