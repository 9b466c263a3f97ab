"""Bad input gets one clear line, a non-zero exit and no traceback, before any model loads (issue 9).

Everything runs through the real command (``stylegrpo.cli.main``); each case also checks that nothing was
left behind (no output folder, no file).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from stylegrpo.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "training" / "recipes" / "tiny.yaml")


def refused(capsys, argv: list[str]) -> str:
    """Run the command; it must fail with exit code 2 and a single `stylegrpo CMD: error:` line."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse refuses bad option values itself (exit code 2, usage + one line)
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"stylegrpo {argv[0]}: error: "), err
    assert len(lines[0]) < 600, lines[0]
    return lines[0]


# --- train: settings and recipes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, needle",
    [
        (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295 (got -1)"),
        (["--learning_rate=-1e-3"], "--learning_rate must be a positive number"),
        (["--learning_rate", "nan"], "--learning_rate must be a positive number"),
        (["--max_completion_length", "0"], "--max_completion_length must be at least 1"),
        (["--max_train_samples", "0"], "--max_train_samples must be at least 1"),
        (["--temperature", "0"], "--temperature must be a positive number"),
        (["--judge_batch_size", "0"], "--judge_batch_size must be at least 1"),
        (
            ["--num_generations", "3"],
            "generation_batch_size (8) must be divisible by num_generations (3)",
        ),
        (["--min_syllables_per_second", "20"], "--min_syllables_per_second (20) must be below"),
    ],
)
def test_train_refuses_impossible_settings_before_creating_anything(tmp_path, capsys, option, needle):
    out = tmp_path / "run"
    argv = ["train", "--config", TINY, "--dataset_path", str(tmp_path / "ds"), "--output-dir", str(out)]
    msg = refused(capsys, argv + option)
    assert needle in msg
    assert not out.exists()  # nothing is created before the settings pass


def _recipe(tmp_path, content: str | bytes) -> str:
    p = tmp_path / "recipe.yaml"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(p)


def test_train_refuses_a_binary_recipe(tmp_path, capsys):
    recipe = _recipe(tmp_path, Path(shutil.which("ls") or "/bin/ls").read_bytes()[:4096])
    msg = refused(capsys, ["train", "--config", recipe, "--output-dir", str(tmp_path / "run")])
    assert f"{recipe}: not a text file" in msg and "a recipe is a YAML file" in msg
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_recipe_that_is_not_a_mapping(tmp_path, capsys):
    recipe = _recipe(tmp_path, "- learning_rate\n- 1e-5\n")
    msg = refused(capsys, ["train", "--config", recipe])
    assert f"{recipe}:1: a recipe is a mapping of option: value, not a list" in msg
    recipe = _recipe(tmp_path, "use_cpu: true\nlearning_rat: 1\n")
    assert f"{recipe}:2: unknown key(s) learning_rat" in refused(capsys, ["train", "--config", recipe])


def test_train_refuses_a_recipe_alias_bomb_at_once(tmp_path, capsys):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    recipe = _recipe(tmp_path, "\n".join(lines) + "\nlora_target_modules: *a8\n")
    msg = refused(capsys, ["train", "--config", recipe])
    assert f"{recipe}:2: the YAML aliases (*name) expand to" in msg and "write the values out" in msg


def test_train_names_unknown_dataset_styles_quoted(tmp_path):
    """An empty style name used to be invisible: "style(s)  are not in the catalog"."""
    import datasets

    from stylegrpo.errors import StyleGRPOError
    from stylegrpo.styles import load_catalog
    from stylegrpo.training.grpo import load_prompt_dataset

    row = {"prompt": [[{"role": "user", "content": "x"}]], "text": ["x"], "description": ["d"]}
    ds = datasets.DatasetDict({"train": datasets.Dataset.from_dict({**row, "style": [""]})})
    ds.save_to_disk(tmp_path / "ds")
    with pytest.raises(StyleGRPOError, match=r"style\(s\) '' are not in the catalog"):
        load_prompt_dataset(str(tmp_path / "ds"), "train", load_catalog(ROOT / "styles.yaml"))


# --- say / eval / build: seeds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["say", "Hello there.", "--preset", "tiny", "--seed", "-1"],
        ["eval", "--texts", "T", "--preset", "tiny", "--out", "OUT", "--seed", "-1"],
        ["build", "--out", "OUT", "--seed", "-1"],
    ],
    ids=["say", "eval", "build"],
)
def test_negative_seed_is_refused_by_the_parser(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "T").write_text("Hello there, my friend.\n")
    msg = refused(capsys, argv)
    assert "argument --seed: -1 is out of range: a seed is an integer from 0 to 4294967295" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T"]


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "soon"])
@pytest.mark.parametrize(
    "argv",
    [
        ["say", "Hello there.", "--preset", "tiny"],
        ["eval", "--texts", "T", "--preset", "tiny", "--out", "OUT"],
        ["audit", "--synthesize", "1", "--preset", "tiny", "--out", "OUT"],
        ["app", "--preset", "tiny"],
        ["build", "--out", "OUT"],
    ],
    ids=["say", "eval", "audit", "app", "build"],
)
def test_max_seconds_must_be_a_finite_duration(tmp_path, capsys, monkeypatch, argv, value):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "T").write_text("Hello there, my friend.\n")
    msg = refused(capsys, [*argv, "--max-seconds", value])
    assert "argument --max-seconds:" in msg and "number of seconds" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T"]


@pytest.mark.parametrize("value", ["0", "-3", "two"])
@pytest.mark.parametrize(
    "argv, option",
    [
        (["say", "Hello there.", "--preset", "tiny"], "--batch-size"),
        (["eval", "--texts", "T", "--preset", "tiny", "--out", "OUT"], "--batch-size"),
        (["eval", "--texts", "T", "--preset", "tiny", "--out", "OUT"], "--n-per-style"),
        (["eval", "--texts", "T", "--preset", "tiny", "--out", "OUT"], "--judge-batch-size"),
        (["audit", "--preset", "tiny", "--out", "OUT"], "--synthesize"),
        (["audit", "--synthesize", "1", "--preset", "tiny", "--out", "OUT"], "--judge-batch-size"),
    ],
    ids=["say-batch", "eval-batch", "eval-n", "eval-judge-batch", "audit-synthesize", "audit-judge-batch"],
)
def test_counts_must_be_at_least_one(tmp_path, capsys, monkeypatch, argv, option, value):
    """eval took --judge-batch-size 0 and ran with the judges' default; every count is now refused by the parser."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "T").write_text("Hello there, my friend.\n")
    msg = refused(capsys, [*argv, option, value])
    assert f"argument {option}:" in msg and ("at least 1" in msg or "not an integer" in msg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T"]


def test_max_seconds_gives_one_token_cap_everywhere():
    """say, app, eval and audit turn --max-seconds into the cap by one rule (speech_time), end token included."""
    from stylegrpo.speech_time import END_TOKENS, tokens_for_seconds

    assert tokens_for_seconds(1.0) == 50 + END_TOKENS
    assert tokens_for_seconds(0.01) == 1 + END_TOKENS
    for path in ["stylegrpo/say.py", "stylegrpo/app.py", "eval/cli.py", "eval/audit_cli.py"]:
        source = (ROOT / path).read_text()
        assert "tokens_for_seconds(" in source and "CODEC_TOKENS_PER_SECOND" not in source, path


# --- adapters ----------------------------------------------------------------------------------------

OTHER_CATALOG = """
styles:
  - name: voiced
    phrase: a clear voiced speaker
    descriptions: [a clear voiced speaker]
  - name: whisper
    phrase: someone whispering
    descriptions: [someone whispering]
"""


def _adapter(tmp_path, config: str = '{"peft_type": "LORA", "r": 8}', styles: str | None = OTHER_CATALOG):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(config)
    if styles is not None:
        (folder / "styles.yaml").write_text(textwrap.dedent(styles))
    return folder


@pytest.mark.parametrize("command", ["say", "eval"])
def test_a_broken_adapter_config_is_named(tmp_path, capsys, command):
    adapter = _adapter(tmp_path, config='{"peft_type": "LORA",\n')
    (tmp_path / "t.txt").write_text("Hello there, my friend.\n")
    argv = {
        "say": ["say", "Hello.", "--preset", "tiny", "-o", str(tmp_path / "x.wav")],
        "eval": [
            "eval",
            "--texts",
            str(tmp_path / "t.txt"),
            "--preset",
            "tiny",
            "--out",
            str(tmp_path / "ev"),
        ],
    }[command]
    msg = refused(capsys, [*argv, "--adapter", str(adapter)])
    assert f"{adapter / 'adapter_config.json'}:2:1: the adapter's config is not valid JSON" in msg
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "ev").exists()


def test_say_with_a_style_the_adapter_never_learned(tmp_path, capsys):
    adapter = _adapter(tmp_path)
    argv = ["say", "Hello.", "--preset", "tiny", "-o", str(tmp_path / "x.wav"), "--adapter", str(adapter)]
    msg = refused(capsys, [*argv, "--style", "robotic"])  # in the repository's catalog, not the adapter's
    assert f"--style 'robotic': the adapter {adapter} was never trained on this style" in msg
    assert f"it knows voiced, whisper (its catalog: {adapter / 'styles.yaml'}; pass --styles" in msg
    assert not (tmp_path / "x.wav").exists()


def test_eval_with_styles_the_adapter_never_learned(tmp_path, capsys):
    adapter = _adapter(tmp_path)
    (tmp_path / "t.txt").write_text("Hello there, my friend.\n")
    argv = ["eval", "--texts", str(tmp_path / "t.txt"), "--preset", "tiny", "--out", str(tmp_path / "ev")]
    msg = refused(capsys, [*argv, "--adapter", str(adapter), "--only-styles", "robotic,child"])
    assert "style(s) 'robotic', 'child': the adapter" in msg and "it knows voiced, whisper" in msg
    assert not (tmp_path / "ev").exists()


def test_say_with_an_empty_style_name_is_refused_quoted(tmp_path, capsys):
    """`--style ""` used to fall back to the plain prompt silently."""
    msg = refused(capsys, ["say", "Hello.", "--preset", "tiny", "-o", str(tmp_path / "x.wav"), "--style", ""])
    assert "unknown style '' in" in msg and "known styles: whispering" in msg
    assert not (tmp_path / "x.wav").exists()
