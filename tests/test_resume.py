"""Resuming picks the newest COMPLETE checkpoint: half-written ones (a kill during the save) are skipped and
named; an explicit partial checkpoint is refused with what it lacks. The end-to-end resume (killed at a
step, partial checkpoint on disk) is in test_training_run.py."""

import json
import logging

import pytest
import torch
from safetensors.torch import save_file

from stylegrpo.errors import StyleGRPOError
from stylegrpo.training.callbacks import STATE_FILENAME, StyleMetricsCallback
from stylegrpo.training.checkpoints import checkpoint_problem, discard_partial_checkpoints
from stylegrpo.training.grpo import resolve_resume


def complete_checkpoint(folder, step):
    """A checkpoint folder with every file Trainer writes for a LoRA run (small stand-ins)."""
    folder.mkdir(parents=True)
    save_file(
        {"lora_A": torch.zeros(2, 3), "lora_B": torch.ones(3, 2)}, str(folder / "adapter_model.safetensors")
    )
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    torch.save({"python": None}, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


def _cut(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])


# each way a save can stop half-way, as the folder then looks
PARTIAL = {
    "no trainer_state.json": lambda f: (f / "trainer_state.json").unlink(),
    "trainer_state.json cut short": lambda f: _cut(f / "trainer_state.json", 9),
    "no adapter weights": lambda f: (f / "adapter_model.safetensors").unlink(),
    "adapter weights cut short": lambda f: _cut(f / "adapter_model.safetensors", -5),
    "adapter header cut short": lambda f: _cut(f / "adapter_model.safetensors", 20),
    "no adapter_config.json": lambda f: (f / "adapter_config.json").unlink(),
    "no optimizer": lambda f: (f / "optimizer.pt").unlink(),
    "no scheduler": lambda f: (f / "scheduler.pt").unlink(),
}


def test_a_complete_checkpoint_is_complete(tmp_path):
    assert checkpoint_problem(complete_checkpoint(tmp_path / "checkpoint-10", 10)) is None


@pytest.mark.parametrize("damage", list(PARTIAL))
def test_resume_skips_a_partial_newest_checkpoint_and_names_it(tmp_path, caplog, damage):
    out = tmp_path / "run"
    complete_checkpoint(out / "checkpoint-10", 10)
    PARTIAL[damage](complete_checkpoint(out / "checkpoint-20", 20))
    (out / "checkpoint-30").mkdir()  # killed right after the folder was made
    with caplog.at_level(logging.WARNING, logger="stylegrpo.training.checkpoints"):
        assert resolve_resume("true", out) == str(out / "checkpoint-10")
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 2
    assert "checkpoint-30" in skipped[0] and "checkpoint-20" in skipped[1]
    # transformers' own choice is the half-written folder: this is what resuming used to crash on
    from transformers.trainer_utils import get_last_checkpoint

    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-30")


def test_numeric_order_and_save_only_model(tmp_path):
    out = tmp_path / "run"
    complete_checkpoint(out / "checkpoint-9", 9)
    complete_checkpoint(out / "checkpoint-100", 100)
    (out / "checkpoint-100" / "optimizer.pt").unlink()
    (out / "checkpoint-100" / "scheduler.pt").unlink()
    assert resolve_resume("last", out) == str(out / "checkpoint-9")  # 100 > 9 numerically, but partial
    # a run with save_only_model writes no optimizer: its checkpoints are complete without one
    assert resolve_resume("true", out, need_optimizer=False) == str(out / "checkpoint-100")


def test_deepspeed_checkpoint_keeps_optimizer_in_its_own_folder(tmp_path):
    folder = complete_checkpoint(tmp_path / "checkpoint-4", 4)
    (folder / "optimizer.pt").unlink()
    (folder / "scheduler.pt").unlink()
    assert "optimizer" in checkpoint_problem(folder)
    (folder / "global_step4").mkdir()
    assert checkpoint_problem(folder) is None


def test_only_partial_checkpoints_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    PARTIAL["no trainer_state.json"](complete_checkpoint(out / "checkpoint-10", 10))
    with pytest.raises(StyleGRPOError) as e:
        resolve_resume("true", out)
    msg = str(e.value)
    assert "no complete checkpoint" in msg and "checkpoint-10: no trainer_state.json" in msg
    assert "--overwrite" in msg


def test_an_explicit_partial_checkpoint_is_refused_with_what_it_lacks(tmp_path):
    folder = complete_checkpoint(tmp_path / "checkpoint-5", 5)
    assert resolve_resume(str(folder), tmp_path) == str(folder)
    PARTIAL["no optimizer"](folder)
    with pytest.raises(StyleGRPOError, match=r"not a complete training checkpoint \(no optimizer state"):
        resolve_resume(str(folder), tmp_path)


def test_a_torn_style_history_is_rebuilt_from_the_trainer_state(tmp_path):
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    log_history = [
        {"step": 1, "rewards/style/calm": 0.25, "loss": 0.1},
        {"step": 2, "reward_by_style/calm": 0.5},
    ]
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": log_history}))
    (folder / STATE_FILENAME).write_text('{"history": [{"step": 1, "rew')  # killed mid-write
    cb = StyleMetricsCallback(tmp_path, ["calm"])
    cb.restore(folder)
    assert [e["step"] for e in cb.history] == [1, 2]
    assert cb.history[0]["rewards/style/calm"] == 0.25


def test_partial_checkpoints_newer_than_the_resume_point_are_removed(tmp_path):
    out = tmp_path / "run"
    complete_checkpoint(out / "checkpoint-5", 5)  # older partial: not in the way, left alone
    (out / "checkpoint-5" / "optimizer.pt").unlink()
    complete_checkpoint(out / "checkpoint-10", 10)
    PARTIAL["no trainer_state.json"](complete_checkpoint(out / "checkpoint-20", 20))
    (out / "checkpoint-30").mkdir()
    complete_checkpoint(
        out / "checkpoint-40", 40
    )  # complete: never removed (a resume from an explicit older one)
    removed = discard_partial_checkpoints(out, out / "checkpoint-10")
    assert removed == ["checkpoint-30", "checkpoint-20"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-10", "checkpoint-40", "checkpoint-5"]
    assert discard_partial_checkpoints(out, tmp_path / "elsewhere" / "checkpoint-1") == []


def test_a_failed_train_start_does_not_block_the_corrected_command(tmp_path, capsys):
    """A policy that does not load fails after the output folder is marked; the corrected command then
    trains there without --overwrite. A folder holding anything a run wrote is still protected."""
    from pathlib import Path

    from stylegrpo.cli import main
    from stylegrpo.outputs import MARK_NAME
    from stylegrpo.training.grpo import prepare_output_dir
    from stylegrpo.training.learning_demo import write_demo_data

    styles, dataset = write_demo_data(tmp_path / "demo")
    out = tmp_path / "run"
    recipe = Path(__file__).resolve().parent.parent / "training" / "recipes" / "tiny.yaml"
    argv = ["train", "--config", str(recipe), "--styles", str(styles), "--dataset_path", str(dataset)]
    argv += ["--output-dir", str(out), "--max_steps", "1", "--rewards", "acoustic", "--reward_weights", "1"]
    argv += ["--num_generations", "4", "--per_device_train_batch_size", "4", "--max_completion_length", "16"]
    argv += ["--samples_every", "0", "--save_strategy", "no"]
    assert main([*argv, "--model_name_or_path", str(tmp_path / "no-such-model")]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == [MARK_NAME]  # what used to block the next try
    assert main(argv) == 0
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    # a folder with anything a run wrote is refused as before
    with pytest.raises(StyleGRPOError, match="--overwrite"):
        prepare_output_dir(str(out), resume=None, overwrite=False, is_main=True)
