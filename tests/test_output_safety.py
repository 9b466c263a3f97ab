"""Outputs never destroy input: no output is, holds or lies in an input; --overwrite replaces only what
stylegrpo wrote (the mark); a corpus walk skips our own outputs; one writer per destination (the lock); a
SIGTERM-ed build leaves no temporary folder and stale ones of dead processes are swept; the umask holds."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from stylegrpo.audio import write_wav
from stylegrpo.cli import SIGTERM_EXIT, Terminated, main, sigterm_as_interrupt
from stylegrpo.errors import StyleGRPOError
from stylegrpo.outputs import (
    MARK_NAME,
    atomic_output_dir,
    atomic_write_bytes,
    check_not_input,
    is_marked,
    lock_path,
    output_lock,
)
from stylegrpo.styles import _REPO_ROOT

ROOT = Path(__file__).resolve().parent.parent
STYLES = str(_REPO_ROOT / "styles.yaml")
TINY_RECIPE = str(ROOT / "training" / "recipes" / "tiny.yaml")
FAST = ["--preset", "tiny", "--device", "cpu", "--max-seconds", "0.4"]
SENTENCES = [
    "The first sentence is here.",
    "A second one follows it closely.",
    "Where is the third sentence hiding?",
    "The fourth sentence ends with joy!",
    "Number five is short but fine.",
]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: what must survive."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def user_folder(tmp_path: Path, name: str = "D") -> Path:
    """A user's folder with a corpus, lines to speak and other files of theirs."""
    d = tmp_path / name
    d.mkdir()
    (d / "corpus.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    (d / "lines.txt").write_text("Hello there.\nGood night.\n", encoding="utf-8")
    (d / "notes.md").write_text("my notes, not stylegrpo's\n", encoding="utf-8")
    return d


@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if a command gets as far as loading a model: refusals must come first."""
    import stylegrpo.llasa
    import stylegrpo.synth

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the output was refused")

    monkeypatch.setattr(stylegrpo.synth, "Synthesizer", boom)
    monkeypatch.setattr(stylegrpo.llasa, "load_policy", boom)


# --- an input survives every command's --overwrite pointed at it -------------------------------------


def test_build_refuses_an_output_that_is_holds_or_lies_in_its_corpus(tmp_path, capsys):
    d = user_folder(tmp_path)
    before = snapshot(d)
    link = tmp_path / "link"
    link.symlink_to(d, target_is_directory=True)
    cases = [
        (["--corpus", str(d), "--out", str(d)], "is the input --corpus"),
        (["--corpus", str(d), "--out", str(link)], "is the input --corpus"),  # symlinks are resolved
        (["--corpus", str(d / "corpus.txt"), "--out", str(d)], "contains the input --corpus"),
        (["--corpus", str(d), "--out", str(d / "sub" / "ds")], "lies inside the input --corpus"),
        (["--corpus", str(d), "--out", str(d / ".." / "D")], "is the input --corpus"),  # .. is resolved
        (["--corpus", str(d / "corpus.txt"), "--styles", str(d / "st.yaml"), "--out", str(d)], "contains"),
    ]
    (d / "st.yaml").write_text(Path(STYLES).read_text(encoding="utf-8"), encoding="utf-8")
    before = snapshot(d)
    for args, message in cases:
        if "--styles" not in args:
            args = ["--styles", STYLES, *args]
        assert main(["build", *args, "--overwrite", "--test-size", "0"]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "choose an output outside every input" in err, err
        assert snapshot(d) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D", "link"]  # nothing written beside it
    # relative paths are resolved too
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert main(["build", "--styles", STYLES, "--corpus", "D", "--out", "./D/../D", "--overwrite"]) == 2
        assert "is the input --corpus" in capsys.readouterr().err
    finally:
        os.chdir(cwd)
    assert snapshot(d) == before


def test_train_refuses_an_output_dir_that_is_or_holds_its_dataset_or_recipe(tmp_path, capsys, no_models):
    d = user_folder(tmp_path)
    before = snapshot(d)
    base = ["train", "--config", TINY_RECIPE, "--styles", STYLES, "--overwrite"]
    assert main([*base, "--dataset_path", str(d), "--output-dir", str(d)]) == 2
    err = capsys.readouterr().err
    assert "--output-dir" in err and "is the input --dataset_path" in err
    assert main([*base, "--dataset_path", str(d), "--output-dir", str(d / "run")]) == 2
    assert "lies inside the input --dataset_path" in capsys.readouterr().err
    recipe = d / "recipe.yaml"
    recipe.write_text(Path(TINY_RECIPE).read_text(encoding="utf-8"), encoding="utf-8")
    before = snapshot(d)
    argv = ["train", "--config", str(recipe), "--styles", STYLES, "--output-dir", str(d), "--overwrite"]
    assert main([*argv, "--dataset_path", str(tmp_path / "elsewhere")]) == 2
    assert "contains the input --config" in capsys.readouterr().err
    assert snapshot(d) == before


def test_say_refuses_outputs_that_are_or_hold_or_lie_in_its_inputs(tmp_path, capsys, no_models):
    d = user_folder(tmp_path)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    before, before_adapter = snapshot(d), snapshot(adapter)
    argv = ["say", "--input-file", str(d / "lines.txt"), "--output-dir", str(d), "--overwrite", *FAST]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--output-dir" in err and "contains the input --input-file" in err
    assert main(["say", "Hi there.", "--adapter", str(adapter), "-o", str(adapter / "x.wav"), *FAST]) == 2
    assert "lies inside the input --adapter" in capsys.readouterr().err
    assert snapshot(d) == before and snapshot(adapter) == before_adapter


def test_eval_refuses_an_out_that_is_or_holds_its_inputs(tmp_path, capsys, no_models):
    d = user_folder(tmp_path)
    before = snapshot(d)
    assert main(["eval", "--dataset", str(d), "--out", str(d), "--overwrite", *FAST[:4]]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is the input --dataset" in err
    assert main(["eval", "--texts", str(d / "lines.txt"), "--out", str(d), "--overwrite", *FAST[:4]]) == 2
    assert "contains the input --texts" in capsys.readouterr().err
    train_dir = tmp_path / "run"
    train_dir.mkdir()
    argv = ["eval", "--texts", str(d / "lines.txt"), "--training-dir", str(train_dir)]
    assert main([*argv, "--out", str(train_dir / "eval"), *FAST[:4]]) == 2
    assert "lies inside the input --training-dir" in capsys.readouterr().err
    assert snapshot(d) == before and not any(train_dir.iterdir())


def test_check_not_input_ignores_what_is_not_on_disk(tmp_path):
    out = tmp_path / "o"
    check_not_input(out, [("--policy", "HKUSTAudio/Llasa-1B"), ("--codec", "tiny:xcodec2"), ("--x", None)])
    check_not_input(out, [("--corpus", tmp_path / "o2")])  # a sibling with a common prefix is no input
    (tmp_path / "o2").mkdir()
    check_not_input(out, [("--corpus", tmp_path / "o2")])
    with pytest.raises(StyleGRPOError, match="contains the input --corpus"):
        check_not_input(tmp_path, [("--corpus", tmp_path / "o2")])


# --- --overwrite replaces only a folder stylegrpo wrote ----------------------------------------------


def test_overwrite_never_clears_a_folder_without_the_mark(tmp_path, capsys, no_models):
    d = user_folder(tmp_path)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(SENTENCES), encoding="utf-8")
    lines = tmp_path / "lines.txt"
    lines.write_text("Hello there.\n", encoding="utf-8")
    before = snapshot(d)
    commands = [
        ["build", "--styles", STYLES, "--corpus", str(corpus), "--out", str(d)],
        ["say", "--input-file", str(lines), "--output-dir", str(d), *FAST],
        ["eval", "--texts", str(lines), "--out", str(d), *FAST[:4]],
    ]
    for argv in commands:
        assert main([*argv, "--overwrite"]) == 2, argv
        err = capsys.readouterr().err
        assert "not written by stylegrpo" in err and "refusing to replace it" in err, err
        assert snapshot(d) == before and not is_marked(d)


def test_train_overwrite_clears_only_a_marked_folder(tmp_path, capsys, no_models):
    data = tmp_path / "data"
    assert main(["build", "--styles", STYLES, "--out", str(data), "--max-texts", "40"]) == 0
    d = user_folder(tmp_path)
    before = snapshot(d)
    argv = ["train", "--config", TINY_RECIPE, "--styles", STYLES, "--dataset_path", str(data)]
    capsys.readouterr()
    assert main([*argv, "--output-dir", str(d), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "not written by stylegrpo" in err and "refusing to replace it" in err
    assert snapshot(d) == before
    # a folder that carries the mark is cleared (then training starts: here it stops at the model load)
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / MARK_NAME).write_text("{}")
    (ours / "checkpoint-1").mkdir()
    with pytest.raises(AssertionError, match="a model was loaded"):
        main([*argv, "--output-dir", str(ours), "--overwrite"])
    assert [p.name for p in ours.iterdir()] == [MARK_NAME]


def test_outputs_carry_the_mark_and_stay_loadable(tmp_path):
    import datasets

    out = tmp_path / "ds"
    assert main(["build", "--styles", STYLES, "--out", str(out), "--max-texts", "30"]) == 0
    assert is_marked(out) and "stylegrpo build" in (out / MARK_NAME).read_text()
    ds = datasets.load_dataset(str(out))  # the mark is invisible to the loader
    assert set(ds) == {"train", "test"} and ds["train"].num_rows + ds["test"].num_rows == 30
    assert main(["build", "--styles", STYLES, "--out", str(out), "--max-texts", "20", "--overwrite"]) == 0
    assert is_marked(out) and len(datasets.load_dataset(str(out))["train"]) < 30  # ours: replaced


def test_say_overwrite_replaces_only_a_wav_file(tmp_path, capsys):
    text_file = tmp_path / "important.wav"
    text_file.write_text("not audio: a user's file with a .wav name")
    assert main(["say", "Hello there.", "-o", str(text_file), "--overwrite", *FAST]) == 2
    assert "is not a WAV file; --overwrite replaces only WAV files" in capsys.readouterr().err
    assert text_file.read_text().startswith("not audio")
    wav = tmp_path / "old.wav"
    write_wav(wav, np.zeros(320, dtype=np.float32))
    before = wav.read_bytes()
    assert main(["say", "Hello there.", "-o", str(wav), "--overwrite", *FAST]) == 0
    assert wav.read_bytes() != before


# --- a corpus walk skips our own outputs -------------------------------------------------------------


def test_a_build_output_inside_the_corpus_folder_is_skipped(tmp_path, caplog):
    import logging

    import pyarrow.parquet as pq

    corpus = tmp_path / "F"
    corpus.mkdir()
    (corpus / "mine.txt").write_text("\n".join(SENTENCES), encoding="utf-8")
    other = tmp_path / "other.txt"
    other.write_text("A sentence from somewhere else entirely.\nAnd one more from there too.\n")
    assert main(["build", "--styles", STYLES, "--corpus", str(other), "--out", str(corpus / "ds")]) == 0
    train_dir = corpus / "run"  # a training folder in there too: marked, so skipped as well
    train_dir.mkdir()
    (train_dir / MARK_NAME).write_text("{}")
    (train_dir / "style_metrics.jsonl").write_text('{"text": "A logged line that is no corpus at all."}\n')
    with caplog.at_level(logging.INFO):
        argv = ["build", "--styles", STYLES, "--corpus", str(corpus), "--out", str(tmp_path / "o")]
        assert main([*argv, "--test-size", "0"]) == 0
    texts = pq.read_table(tmp_path / "o" / "data" / "train-00000-of-00001.parquet")["text"].to_pylist()
    assert sorted(texts) == sorted(SENTENCES)
    assert f"{corpus / 'ds'}: skipped (a folder written by stylegrpo" in caplog.text
    assert f"{train_dir}: skipped" in caplog.text


# --- one writer per destination ----------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_first(tmp_path, capsys):
    out = tmp_path / "o"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from stylegrpo.outputs import output_lock\n"
            f"with output_lock({str(out)!r}):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        corpus = tmp_path / "c.txt"
        corpus.write_text("\n".join(SENTENCES), encoding="utf-8")
        assert main(["build", "--styles", STYLES, "--corpus", str(corpus), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"process {holder.pid} is writing this output right now" in err
        assert not out.exists()
        with (
            pytest.raises(StyleGRPOError, match=f"process {holder.pid}"),
            atomic_output_dir(out, command="t"),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its process (even SIGKILL): the next writer gets it
    assert main(["build", "--styles", STYLES, "--corpus", str(corpus), "--out", str(out)]) == 0
    assert not lock_path(out).exists()  # released and removed


def test_the_lock_nests_in_one_process(tmp_path):
    out = tmp_path / "o"
    with output_lock(out):
        with atomic_output_dir(out, command="test") as tmp:
            (tmp / "f").write_text("x")
        assert lock_path(out).exists()
    assert (out / "f").read_text() == "x" and not lock_path(out).exists()


# --- interrupted builds: no temporary folder left, stale ones swept ----------------------------------

SLOW_BUILD = textwrap.dedent(
    """
    import sys, time
    import stylegrpo.data_builder.build as build
    import stylegrpo.data_builder.corpora as corpora

    corpora.CHUNK_BYTES = 2048  # many small batches (~90) ...
    clean = build._clean_batch

    def slow_clean(*args, **kwargs):  # ... each a little slow: the build is mid-way for seconds
        time.sleep(0.2)
        return clean(*args, **kwargs)

    build._clean_batch = slow_clean
    from stylegrpo.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _big_corpus(path: Path, n: int = 4000) -> Path:
    words = ["apple", "river", "stone", "cloud", "lamp", "garden", "window", "music", "silver", "quiet"]
    path.write_text(
        "\n".join(
            f"Line {words[i % 10]} {words[i // 10 % 10]} {words[i // 100 % 10]} number {i}." for i in range(n)
        ),
        encoding="utf-8",
    )
    return path


def test_sigterm_mid_build_leaves_no_temporary_folder(tmp_path, capsys):
    corpus = _big_corpus(tmp_path / "big.txt")
    out = tmp_path / "o"
    script = tmp_path / "slow_build.py"
    script.write_text(SLOW_BUILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        str(script),
        "build",
        "--styles",
        STYLES,
        "--corpus",
        str(corpus),
        "--out",
        str(out),
    ]
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".o.tmp-*")):  # the build has started writing into its temp folder
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the build never started writing"
            time.sleep(0.02)
        time.sleep(0.5)  # mid-way through reading and cleaning (the whole build takes several seconds)
        (tmp_dir,) = tmp_path.glob(".o.tmp-*")
        assert f".o.tmp-{child.pid}-" in tmp_dir.name  # the owner's pid is in the name
        # meanwhile a second build into the same --out is refused, naming the first
        assert main(["build", "--styles", STYLES, "--corpus", str(corpus), "--out", str(out)]) == 2
        assert f"process {child.pid} is writing this output right now" in capsys.readouterr().err
        assert child.poll() is None, "the build ended before it could be interrupted"
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == SIGTERM_EXIT, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "slow_build.py"]  # no .o.tmp-*, no lock


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_sigterm_inside_numbas_compiler_callback_is_delivered_again_afterwards():
    """Python drops an exception raised in a ctypes callback (llvmlite calls back while numba compiles the
    builder's kernels on their first use), so a SIGTERM landing there was lost and the build ran to its end
    (exit 0). The handler must let it pass there and deliver it again once outside."""
    fake_callback = compile(
        "handler(signal.SIGTERM, sys._getframe())", "/venv/site-packages/llvmlite/binding/fake.py", "exec"
    )
    with sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        try:
            exec(fake_callback, {"handler": handler, "signal": signal, "sys": sys})
        except Terminated:
            pytest.fail("Terminated raised inside the C callback, where ctypes drops it")
        with pytest.raises(Terminated):  # ... but the signal comes back within a moment, outside it
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
        assert (
            signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        )  # raised once: the clean-up is not broken again


def test_a_later_build_sweeps_temporary_folders_of_dead_processes_only(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(SENTENCES), encoding="utf-8")
    dead, alive = _dead_pid(), os.getppid()
    stale_tmp = tmp_path / f".o.tmp-{dead}-abc123"
    stale_old = tmp_path / f".o.old-{dead}"
    live_tmp = tmp_path / f".o.tmp-{alive}-xyz789"
    other = tmp_path / f".other.tmp-{dead}-abc123"  # another destination's: not ours to judge here
    for p in (stale_tmp, stale_old, live_tmp, other):
        (p / "data").mkdir(parents=True)
        (p / "data" / "train-00000-of-00001.parquet").write_bytes(b"x" * 1000)
    assert main(["build", "--styles", STYLES, "--corpus", str(corpus), "--out", str(tmp_path / "o")]) == 0
    assert not stale_tmp.exists() and not stale_old.exists()
    assert live_tmp.is_dir() and other.is_dir()  # a live process's folder is never removed


def test_sigterm_becomes_a_keyboard_interrupt_and_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted at once
    assert isinstance(Terminated(), KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) == before


# --- permissions follow the umask --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("umask", "folder_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)]
)
def test_outputs_follow_the_umask(tmp_path, umask, folder_mode, file_mode):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(SENTENCES), encoding="utf-8")
    old = os.umask(umask)
    try:
        out = tmp_path / "o"
        assert main(["build", "--styles", STYLES, "--corpus", str(corpus), "--out", str(out)]) == 0
        atomic_write_bytes(tmp_path / "f.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == folder_mode
    assert stat.S_IMODE((out / "data").stat().st_mode) == folder_mode
    assert stat.S_IMODE((out / "README.md").stat().st_mode) == file_mode
    assert stat.S_IMODE((out / MARK_NAME).stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == file_mode
