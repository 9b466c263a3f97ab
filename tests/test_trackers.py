"""The trackers named in report_to get the per-style curves, the trade-off logs and playable audio samples
per style. One tiny GRPO run reports to TensorBoard, wandb (offline) and trackio (a local folder) at once;
each tracker's own files are then read back with its own reader: TensorBoard's EventAccumulator, the
records of wandb's .wandb file and its media folder, trackio's CLI (`trackio get snapshot --json`)."""

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stylegrpo.audio import SAMPLE_RATE, read_wav
from stylegrpo.errors import StyleGRPOError
from stylegrpo.training import trackers
from stylegrpo.training.callbacks import METRICS_FILENAME, SAMPLES_DIRNAME

STEPS = 2
TRACKERS = ("tensorboard", "wandb", "trackio")
PROJECT = "stylegrpo-test"
PCM_TOL = 2.5 / 32768  # the same float clip as 16-bit PCM in two writers: at most a rounding step apart


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "TRACKIO_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        WANDB_MODE="offline",  # wandb writes its run files locally, never asks for a login
        WANDB_SILENT="true",
        TRACKIO_DIR=str(tmp / "trackio"),  # trackio's local database and media, not ~/.cache
        OMP_NUM_THREADS="1",
    )
    return env


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    for module in TRACKERS:
        pytest.importorskip(module, reason=f"pip install 'stylegrpo[{module}]' (the dev extra has it)")
    from stylegrpo.training.learning_demo import write_demo_data

    tmp = tmp_path_factory.mktemp("trackers")
    styles, dataset = write_demo_data(tmp / "demo")
    out = tmp / "run"
    argv = [sys.executable, "-m", "stylegrpo.cli", "train", "--config", "tiny", "--styles", str(styles)]
    argv += ["--dataset_path", str(dataset), "--output-dir", str(out), "--max_steps", str(STEPS)]
    # two rewards, so the trade-off and dominance diagnostics exist; a sample per style at every step
    argv += ["--rewards", "style", "acoustic", "--reward_weights", "1", "1", "--logging_steps", "1"]
    argv += ["--samples_every", "1", "--samples_per_style", "1", "--save_strategy", "no"]
    argv += ["--max_completion_length", "32", "--project", PROJECT, "--report_to", ",".join(TRACKERS)]
    done = subprocess.run(argv, env=_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    history = [json.loads(line) for line in (out / METRICS_FILENAME).read_text().splitlines()]
    return {"tmp": tmp, "out": out, "history": history, "env": _env(tmp), "cwd": tmp}


def _expected_scalars(history) -> dict[str, dict[int, float]]:
    """What the run logged per style (style_metrics.jsonl), under the Trainer's train/ prefix."""
    out: dict[str, dict[int, float]] = {}
    for entry in history:
        for key, value in entry.items():
            if key != "step":
                out.setdefault(f"train/{key}", {})[entry["step"]] = value
    return out


def _samples(out: Path) -> dict[tuple[int, str], np.ndarray]:
    """{(step, 'samples/<style>_<k>'): waveform} of the wav files the run wrote."""
    got = {}
    for wav in sorted((out / SAMPLES_DIRNAME).glob("step-*/*.wav")):
        style, k = wav.stem.rsplit("_", 1)
        got[(int(wav.parent.name.split("-")[1]), trackers.clip_key(style, int(k)))] = read_wav(wav)
    return got


def _style(key: str) -> str:
    return key.split("/")[1].rsplit("_", 1)[0]  # samples/<style>_<k> -> <style>


def _check_run_shape(run) -> tuple[dict, dict]:
    expected, samples = _expected_scalars(run["history"]), _samples(run["out"])
    styles = {k.rsplit("/", 1)[1] for k in expected if k.startswith("train/reward_by_style/")}
    assert styles == {"voiced", "whisper"}
    assert {_style(key) for _, key in samples} == styles
    assert {step for step, _ in samples} == set(range(1, STEPS + 1))
    # the trade-off logs and the variance shares are there to be compared
    assert any(k.startswith("train/tradeoff/style~acoustic/") for k in expected)
    assert any(k.startswith("train/dominance/acoustic/") for k in expected)
    return expected, samples


def test_tensorboard_has_per_style_curves_and_playable_audio(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    expected, samples = _check_run_shape(tracked_run)
    (logdir,) = (tracked_run["out"] / "runs").iterdir()
    events = EventAccumulator(str(logdir), size_guidance={"audio": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for key, by_step in expected.items():
        assert key in tags["scalars"], key
        got = {e.step: e.value for e in events.Scalars(key)}
        assert got == pytest.approx(by_step, rel=1e-5), key
    assert sorted(tags["audio"]) == sorted({key for _, key in samples})
    for key in tags["audio"]:
        entries = events.Audio(key)
        assert sorted(e.step for e in entries) == sorted(step for step, k in samples if k == key)
        for e in entries:
            assert e.content_type == "audio/wav" and e.sample_rate == SAMPLE_RATE
            wav, rate = sf.read(io.BytesIO(e.encoded_audio_string), dtype="float32")
            assert rate == SAMPLE_RATE and e.length_frames == len(wav) > 0
            np.testing.assert_allclose(wav, samples[(e.step, key)], atol=PCM_TOL)
        assert f"{key}/text_summary" in tags["tensors"]  # the caption beside it


WANDB_BLOCK = 32768  # the .wandb file is LevelDB's log format: 32 KiB blocks of framed records
WANDB_HEADER = 7  # ":W&B" + magic + version


def _wandb_history(path: Path) -> list[dict]:
    """The history rows of a .wandb file, decoded with wandb's own protobuf Record (wandb 0.31 ships no
    Python reader of the file: its Go core writes and syncs it)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending, rows = WANDB_HEADER, b"", []
    while pos + 7 <= len(data):
        if WANDB_BLOCK - pos % WANDB_BLOCK < 7:  # a block's tail too short for a header is padding
            pos += WANDB_BLOCK - pos % WANDB_BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 2):  # full, first
            pending = chunk
        elif kind in (3, 4):  # middle, last
            pending += chunk
        if kind not in (1, 4):
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
    return rows


def test_wandb_offline_run_has_per_style_curves_and_audio(tracked_run):
    expected, samples = _check_run_shape(tracked_run)
    (run_dir,) = (tracked_run["out"] / "wandb").glob(
        "offline-run-*"
    )  # WANDB_DIR defaults to the output folder
    rows = _wandb_history(next(run_dir.glob("run-*.wandb")))
    for key, by_step in expected.items():
        got = {r["train/global_step"]: r[key] for r in rows if key in r}
        assert got == pytest.approx(by_step, rel=1e-5), key
    clips = {}
    for r in rows:
        for key in {k.rsplit("/", 1)[0] for k in r if k.startswith(trackers.SAMPLES_PREFIX + "/")}:
            assert r[f"{key}/_type"] == "audio-file" and r[f"{key}/caption"].startswith(_style(key))
            clips[(r["train/global_step"], key)] = run_dir / "files" / r[f"{key}/path"]
    assert clips.keys() == samples.keys()
    for where, path in clips.items():
        np.testing.assert_allclose(read_wav(path), samples[where], atol=PCM_TOL)


def _trackio(run, *args: str) -> dict:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "trackio"), *args, "--json"],
        env=run["env"],
        cwd=run["cwd"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_trackio_has_per_style_curves_and_audio_at_the_optimizer_steps(tracked_run):
    expected, samples = _check_run_shape(tracked_run)
    (name,) = _trackio(tracked_run, "list", "runs", "--project", PROJECT)["runs"]
    got: dict[str, dict[int, object]] = {}
    for step in range(1, STEPS + 1):
        snapshot = _trackio(
            tracked_run, "get", "snapshot", "--project", PROJECT, "--run", name, "--step", str(step)
        )
        for key, entries in snapshot["metrics"].items():
            for e in entries:
                got.setdefault(key, {})[e["step"]] = e["value"]
    for key, by_step in expected.items():  # trackio's step is the optimizer step (StepTrackioCallback)
        assert got[key] == pytest.approx(by_step, rel=1e-5), key
    clips = {
        (step, key): v for key, vals in got.items() if key.startswith("samples/") for step, v in vals.items()
    }
    assert clips.keys() == samples.keys()
    media = Path(tracked_run["env"]["TRACKIO_DIR"]) / "media"
    for where, value in clips.items():
        assert value["_type"] == "trackio.audio"
        # handed over as 16-bit PCM: trackio stores it as is (a float array would be peak-normalised)
        np.testing.assert_allclose(read_wav(media / value["file_path"]), samples[where], atol=PCM_TOL)


# ---------------------------------------------------------------------------------------- report_to checks


def test_report_to_names_are_split_and_none_dropped():
    assert trackers.named_trackers(None) == [] and trackers.named_trackers([]) == []
    assert trackers.named_trackers("none") == [] and trackers.named_trackers(["none"]) == []
    assert trackers.named_trackers(["tensorboard,trackio", " wandb", "trackio"]) == [
        "tensorboard",
        "trackio",
        "wandb",
    ]


def test_an_unknown_tracker_is_refused_with_the_known_ones():
    with pytest.raises(
        StyleGRPOError, match=r"unknown tracker\(s\) 'tensorbord'; known: .*tensorboard.*trackio"
    ):
        trackers.check_report_to(["tensorbord"])


def test_a_named_tracker_that_is_not_installed_names_its_extra(monkeypatch):
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(
        trackers.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("trackio", "wandb") else real(name, *a),
    )
    with pytest.raises(
        StyleGRPOError,
        match=r"names trackio, wandb, which are not installed: pip install 'stylegrpo\[trackio,wandb\]'",
    ):
        trackers.check_report_to("tensorboard,trackio,wandb")
    assert trackers.check_report_to("tensorboard") == ["tensorboard"]


def test_train_refuses_an_unknown_tracker_before_the_output_exists(tmp_path, capsys):
    from stylegrpo.cli import main
    from stylegrpo.training.learning_demo import write_demo_data

    styles, dataset = write_demo_data(tmp_path / "demo")
    out = tmp_path / "run"
    argv = ["train", "--config", "tiny", "--styles", str(styles), "--dataset_path", str(dataset)]
    assert main([*argv, "--output-dir", str(out), "--report_to", "tensorboard,wnadb"]) == 2
    err = capsys.readouterr().err  # (the demo data's writer prints progress bars there too)
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "tracker" in line] == [
        next(line for line in err.splitlines() if "unknown tracker(s) 'wnadb'; known: " in line)
    ]
    assert not out.exists()


def test_wandb_without_an_api_key_is_refused_before_anything_loads(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="pip install 'stylegrpo[wandb]' (the dev extra has it)")
    for var in [v for v in os.environ if v.startswith("WANDB_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no wandb settings
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(StyleGRPOError, match=r"wandb has no API key: run `wandb login`.*WANDB_MODE=offline"):
        trackers.check_report_to("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # offline needs no account
    assert trackers.check_report_to("wandb") == ["wandb"]
