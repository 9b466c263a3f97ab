"""The console policy (stylegrpo.console): what real commands print at each verbosity, folding of repeated
warnings, known library warnings hidden precisely, one-line errors, and eval's dataset from the recipe."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_eval_e2e import make_adapter

from stylegrpo import console
from stylegrpo.cli import COMMANDS, main

EXE = Path(sys.executable).parent / "stylegrpo"
TIMESTAMPED = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ", re.M)
TEXTS = ["The garden looks lovely this morning.", "We walked home along the river."]


def stylegrpo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed command in a fresh process (nothing configured by pytest), one thread."""
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-c", "from stylegrpo.cli import main; main()"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A tiny trained-looking layout: base/run/adapter with a recipe.yaml whose paths are relative to base,
    as `stylegrpo train --dataset_path data --output-dir run` run in base writes them; base/data is the data."""
    base = tmp_path_factory.mktemp("layout")
    folder = make_adapter(base / "run" / "adapter")
    (folder / "recipe.yaml").write_text("dataset_path: data\noutput_dir: run\npreset: tiny\n")
    (base / "data").mkdir()
    pq.write_table(pa.table({"text": TEXTS}), base / "data" / "test-00000.parquet")
    return folder


def test_say_prints_what_matters_at_each_verbosity(tmp_path, adapter):
    wav = tmp_path / "hi.wav"
    common = ["--preset", "tiny", "--adapter", str(adapter), "--style", "whispering", "Hello there."]
    normal = stylegrpo("say", *common, "-o", str(wav))
    assert normal.returncode == 0, normal.stderr
    both = normal.stdout + normal.stderr
    assert "Loading weights" not in both and "FutureWarning" not in both and "warnings.warn(" not in both
    assert not TIMESTAMPED.search(both), both  # plain lines at normal verbosity
    assert "loaded policy tiny:llasa + adapter" in normal.stderr  # our INFO lines stay
    assert f"wrote {wav}" in normal.stdout

    verbose = stylegrpo("say", *common, "-o", str(wav), "--overwrite", "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "Loading weights" in verbose.stderr  # transformers' bars
    assert "FutureWarning: `is_gradient_checkpointing` is deprecated" in verbose.stderr  # a known one, shown
    assert re.search(r"^\d\d:\d\d:\d\d DEBUG stylegrpo\.llasa: ", verbose.stderr, re.M), verbose.stderr

    quiet = stylegrpo("-q", "say", *common, "-o", str(wav), "--overwrite")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no bars, notes, warnings or info lines
    assert quiet.stdout.splitlines() == [quiet.stdout.strip()] and quiet.stdout.startswith(f"wrote {wav} (")


def test_errors_stay_one_line_with_exit_code_2(tmp_path):
    for flags in ([], ["-q"], ["-v"]):
        run = stylegrpo("say", *flags, "--preset", "tiny", "Hello.", "-o", str(tmp_path / "x.txt"))
        assert run.returncode == 2
        assert run.stderr.splitlines() == [
            f"stylegrpo say: error: {tmp_path / 'x.txt'}: the output must be a .wav file"
        ]
        assert run.stdout == ""


def test_a_small_eval_without_dataset_uses_the_recipe_dataset(tmp_path, adapter):
    out = tmp_path / "eval"
    elsewhere = tmp_path / "elsewhere"  # not the folder training ran in: the path comes from output_dir
    elsewhere.mkdir()
    run = stylegrpo(
        "eval",
        *("--preset", "tiny", "--adapter", str(adapter), "--out", str(out)),
        *("--only-styles", "whispering", "--n-per-style", "1", "--max-seconds", "0.3"),
        cwd=elsewhere,
    )
    assert run.returncode == 0, run.stderr
    data = adapter.parent.parent / "data"
    assert f"texts: the test split of {data}, the dataset recorded in {adapter / 'recipe.yaml'}" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1] == f"report: {out / 'report.html'}"  # the results end it
    both = run.stdout + run.stderr
    assert "Loading weights" not in both and "FutureWarning" not in both
    assert not TIMESTAMPED.search(both)
    metrics = json.loads((out / "metrics.json").read_text())
    assert str(data) in json.dumps(metrics)  # the texts' source is recorded


def _refused(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_eval_without_dataset_refuses_clearly(tmp_path, adapter, capsys):
    import shutil

    bare = shutil.copytree(adapter, tmp_path / "bare")
    (bare / "recipe.yaml").unlink()
    common = ["eval", "--preset", "tiny", "--out", str(tmp_path / "ev")]
    line = _refused(capsys, [*common, "--adapter", str(bare)])
    assert f"--adapter {bare}: no recipe.yaml" in line and "pass --dataset DIR" in line
    gone = shutil.copytree(adapter, tmp_path / "gone")
    (gone / "recipe.yaml").write_text(f"dataset_path: {tmp_path / 'deleted'}\n")
    line = _refused(capsys, [*common, "--adapter", str(gone)])
    assert f"{gone / 'recipe.yaml'}: the adapter's training dataset {tmp_path / 'deleted'}" in line
    assert "no longer exists" in line and "pass --dataset DIR" in line
    (gone / "recipe.yaml").write_text("preset: tiny\n")
    line = _refused(capsys, [*common, "--adapter", str(gone)])
    assert "records no dataset_path" in line and "pass --dataset DIR" in line
    assert not (tmp_path / "ev").exists()
    # no adapter, no texts: the old refusal
    assert "no texts to speak" in _refused(capsys, common)


def _warn_cap(logger: logging.Logger, pairs) -> None:
    for n, of in pairs:
        logger.warning("%d of %d clip(s) reached the cap of %d tokens (%.1f s)", n, of, 150, 3.0)


def test_a_repeated_warning_is_folded_into_one_line_with_its_count(capsys):
    log = logging.getLogger("stylegrpo.synth")
    pairs = [(3, 8), (1, 8), (2, 4), (3, 8)]
    with console.session(console.NORMAL):
        _warn_cap(log, pairs)
        log.warning("something else happened")
        logging.getLogger("stylegrpo.x").info("a plain line")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: 3 of 8 clip(s) reached the cap of 150 tokens (3.0 s)",  # the first, when it happens
        "warning: something else happened",
        "a plain line",
        "warning: 1-3 of 4-8 clip(s) reached the cap of 150 tokens (3.0 s) (4 times in all; -v shows each)",
    ]
    with console.session(console.VERBOSE):
        _warn_cap(log, pairs)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(" WARNING stylegrpo.synth: " in ln for ln in err)
    with console.session(console.QUIET):
        _warn_cap(log, pairs)
        log.error("a real problem")
    assert capsys.readouterr().err.splitlines() == ["error: a real problem"]


def test_known_library_warnings_are_hidden_precisely_and_python_warnings_fold(capsys):
    text = "`is_gradient_checkpointing` is deprecated and will be removed in v6."

    def warn(module: str, category=FutureWarning, message=text) -> None:
        warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 3312, module=module)

    with console.session(console.NORMAL):
        warn("transformers.modeling_utils")  # known: hidden
        warn("somelib.models")  # same text from another module: shown
        warn("transformers.modeling_utils", UserWarning)  # another category: shown
        for _ in range(3):
            warn("otherlib.core", message="`x` is deprecated")  # repeated: shown once, then counted
        logging.getLogger("transformers.tokenization_utils_base").warning(
            "The tokenizer has new PAD/BOS/EOS tokens that differ from the model config"
        )
        logging.getLogger("transformers.trainer").warning("a transformers warning we do not know")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"warning: FutureWarning: {text} (somelib/models.py:3312)",
        f"warning: UserWarning: {text} (transformers/modeling_utils.py:3312)",
        "warning: FutureWarning: `x` is deprecated (otherlib/core.py:3312)",
        "warning: transformers.trainer: a transformers warning we do not know",
        "warning: FutureWarning: `x` is deprecated (otherlib/core.py:3312) (3 times in all; -v shows each)",
    ]
    with console.session(console.VERBOSE):
        warn("transformers.modeling_utils")
        logging.getLogger("transformers.tokenization_utils_base").warning("The tokenizer has new PAD/BOS/EOS")
    err = capsys.readouterr().err
    assert f"FutureWarning: {text}" in err and "The tokenizer has new PAD/BOS/EOS" in err


def test_a_session_restores_what_it_changed():
    root = logging.getLogger()
    before = (
        root.level,
        list(root.handlers),
        list(warnings.filters),
        warnings.showwarning,
        list(sys.meta_path),
    )
    with console.session(console.QUIET):
        assert os.environ.get("TQDM_DISABLE") == "1" and console.progress_bar(total=3).disable
    after = (
        root.level,
        list(root.handlers),
        list(warnings.filters),
        warnings.showwarning,
        list(sys.meta_path),
    )
    assert after == before and "TQDM_DISABLE" not in os.environ
    assert console.verbosity() == console.NORMAL


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_takes_v_and_q(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    help_ = capsys.readouterr().out
    assert "-q, --quiet" in help_ and "-v, --verbose" in help_


def test_quiet_styles_check_prints_only_the_result(capsys):
    assert main(["styles", "--check", "-q"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 1 and ": OK, " in out
    from stylegrpo.training.cli import main as train_main  # `python -m stylegrpo.training.cli` takes them too

    assert train_main(["-q", "--list-recipes"]) == 0
    assert "tiny" in capsys.readouterr().out


def _trainer(tmp_path):
    import torch
    from transformers import Trainer, TrainingArguments

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 1)

        def forward(self, x=None, labels=None):
            return {"loss": self.w(x).pow(2).mean()}

    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to=[], use_cpu=True, max_steps=4)
    return Trainer(model=Tiny(), args=args, train_dataset=[{"x": torch.ones(1)}] * 8)


def test_the_training_bar_replaces_the_log_dictionaries(tmp_path, capsys):
    from transformers.trainer_callback import ProgressCallback, TrainerControl, TrainerState

    def kinds(trainer):
        return [type(cb).__name__ for cb in trainer.callback_handler.callbacks]

    with console.session(console.VERBOSE):  # -v: transformers' own bar, which prints every log dictionary
        trainer = _trainer(tmp_path)
        console.trainer_progress(trainer)
        assert "ProgressCallback" in kinds(trainer) and "TrainingBar" not in kinds(trainer)
    with console.session(console.QUIET):
        trainer = _trainer(tmp_path)
        console.trainer_progress(trainer)
        assert "ProgressCallback" not in kinds(trainer) and "TrainingBar" not in kinds(trainer)
    with console.session(console.NORMAL):
        trainer = _trainer(tmp_path)
        console.trainer_progress(trainer)
        assert not any(isinstance(cb, ProgressCallback) for cb in trainer.callback_handler.callbacks)
        (bar,) = [cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "TrainingBar"]
        state, control = TrainerState(max_steps=4), TrainerControl()
        bar.on_train_begin(trainer.args, state, control)
        state.global_step = 2
        bar.on_step_end(trainer.args, state, control)
        bar.on_log(trainer.args, state, control, logs={"loss": 0.123456, "reward": 0.5, "grad_norm": 1.0})
        shown = str(bar.bar)
        bar.on_train_end(trainer.args, state, control)
    assert "2/4" in shown and "loss=0.1235" in shown and "reward=0.5" in shown and "grad_norm" not in shown
    assert "{'loss'" not in capsys.readouterr().out  # no dictionary printed
