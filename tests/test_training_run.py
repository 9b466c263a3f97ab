"""GRPO runs on the tiny twins: LoRA trains and the base does not (TRL-style), interrupt + resume with
nothing lost, the adapter folder, samples and per-style logs."""

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerCallback

from stylegrpo.training.cli import parse_config
from stylegrpo.training.grpo import build_trainer, main
from stylegrpo.training.learning_demo import write_demo_data

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "training" / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("demo-data"))


def settings(demo_data, out, **kw):
    styles, dataset = demo_data
    return {
        "styles": str(styles),
        "dataset_path": str(dataset),
        "rewards": ["style", "acoustic"],
        "reward_weights": [1.0, 1.0],
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_completion_length": 32,
        "logging_steps": 1,
        "samples_every": 0,
        "save_strategy": "no",
        "output_dir": str(out),
        **kw,
    }


def test_trainer_prompts_are_exactly_llasas_inference_prompts(tmp_path, demo_data):
    """TRL would render chat prompts with add_generation_prompt=True (a new assistant turn after
    <|SPEECH_GENERATION_START|>); training must feed the same ids as `say`/eval."""
    from stylegrpo.llasa import encode_prompts
    from stylegrpo.styles import load_catalog

    s, t, m, _ = parse_config(TINY, settings(demo_data, tmp_path / "run", max_steps=1))
    run = build_trainer(s, t, m)
    trainer, tok = run.trainer, run.trainer.processing_class
    rows = trainer.train_dataset.select(range(4))
    prompt_ids, _, _ = trainer._tokenize_prompts(list(rows["prompt"]))
    catalog = load_catalog(s.styles)
    for ids, text, desc in zip(prompt_ids, rows["text"], rows["description"], strict=True):
        messages = catalog.template.render(text, desc)
        expected = tok.apply_chat_template(messages, continue_final_message=True, tokenize=True)
        expected = (
            expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
        )
        assert list(ids) == list(expected)
        assert ids[-1] == tok.convert_tokens_to_ids("<|SPEECH_GENERATION_START|>")
        assert ids.count(tok.bos_token_id) == 1
    # the ids `say` and eval generate from (stylegrpo.llasa.generate encodes with encode_prompts)
    assert encode_prompts(tok, [catalog.template.render(rows["text"][0], rows["description"][0])])[0] == list(
        prompt_ids[0]
    )


def test_grpo_step_trains_the_lora_and_not_the_base(tmp_path, demo_data):
    """In the manner of TRL's own GRPO tests: a few steps, then compare parameters."""
    overrides = dict(max_steps=3, learning_rate=1e-2, speech_only_sampling=True)
    s, t, m, _ = parse_config(TINY, settings(demo_data, tmp_path / "run", **overrides))
    run = build_trainer(s, t, m)
    model = run.trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run.trainer.train()
    lora = [n for n in before if "lora_" in n]
    base = [n for n in before if "lora_" not in n]
    assert lora and base
    assert all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters())
    changed = [n for n in lora if not torch.equal(before[n], model.get_parameter(n))]
    assert changed, "no LoRA weight moved"
    assert any("lora_B" in n for n in changed)
    for n in base:
        assert torch.equal(before[n], model.get_parameter(n)), f"base weight {n} changed"
    # speech_only_sampling: every sampled token is a speech token or the end token
    completions = list(run.trainer._logs["completion"])  # string prompts -> string completions
    assert completions and all(
        re.fullmatch(r"(<\|s_\d+\|>)*(<\|SPEECH_GENERATION_END\|>)?", c) for c in completions
    )
    logged = {k for entry in run.trainer.state.log_history for k in entry}
    assert {
        "rewards/style/mean",
        "rewards/acoustic/mean",
        "rewards/style/voiced",
        "rewards/acoustic/whisper",
    } <= logged
    assert {"timing/decode_s", "timing/reward/style_s", "guards/truncated", "duration_s/whisper"} <= logged
    # overlapped rewards (the default) through TRL's async path: the step's wall time beside the sum
    assert {"timing/rewards_wall_s", "timing/rewards_sum_s"} <= logged
    assert all(type(f).__name__ == "OverlappedReward" for f in run.trainer.reward_funcs)
    assert len(run.rewards.batch_timings) >= 3


class Interrupt(Exception):
    pass


class StopAfter(TrainerCallback):
    """Interrupts the run when step ``step`` is done and logged (as a crash at the next step would)."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Interrupt


def test_interrupt_resume_and_adapter_folder(tmp_path, demo_data, capsys, caplog):
    from stylegrpo.cli import main as cli_main

    common = dict(max_steps=4, save_strategy="steps", save_steps=2, samples_every=2, learning_rate=1e-2)

    # Reference: the same run without interruption
    ref_out = tmp_path / "ref"
    s, t, m, recipe = parse_config(TINY, settings(demo_data, ref_out, **common))
    ref_adapter = main(s, t, m, recipe=recipe)

    # Interrupted after step 3 (checkpoint-2 on disk, step 3 logged and lost)
    out = tmp_path / "run"
    s, t, m, _ = parse_config(TINY, settings(demo_data, out, **common))
    run = build_trainer(s, t, m)
    run.trainer.add_callback(StopAfter(3))
    with pytest.raises(Interrupt):
        run.trainer.train()
    assert (out / "checkpoint-2" / "stylegrpo_state.json").is_file()
    assert not (out / "adapter").exists()  # nothing half-written
    steps_logged = [
        json.loads(line)["step"] for line in (out / "style_metrics.jsonl").read_text().splitlines()
    ]
    assert steps_logged == [1, 2, 3]

    # A non-empty output folder is refused without --resume_from_checkpoint / --overwrite
    args = ["train", "--config", str(TINY)]
    for k, v in settings(demo_data, out, **common).items():
        args += [f"--{k}", *(map(str, v) if isinstance(v, list) else [str(v)])]
    assert cli_main(args) == 2
    assert "--overwrite" in capsys.readouterr().err

    # Killed while checkpoint-3 was being written: only its adapter is there (no optimizer, no trainer state)
    partial = out / "checkpoint-3"
    partial.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copyfile(out / "checkpoint-2" / name, partial / name)

    # Resume through the command line: skips the partial checkpoint-3, continues from checkpoint-2 to step 4
    with caplog.at_level(logging.WARNING, logger="stylegrpo.training.checkpoints"):
        assert cli_main([*args, "--resume_from_checkpoint", "true"]) == 0
    warnings = [r.getMessage() for r in caplog.records]
    assert any("skipping checkpoint-3" in w for w in warnings)
    assert any("removing checkpoint-3" in w for w in warnings)
    assert not partial.exists()  # its steps were redone; it no longer takes a save_total_limit place
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]
    steps_logged = [
        json.loads(line)["step"] for line in (out / "style_metrics.jsonl").read_text().splitlines()
    ]
    assert steps_logged == [
        1,
        2,
        3,
        4,
    ]  # the lost step 3 was redone once; history restored from the checkpoint
    restored = json.loads((out / "checkpoint-4" / "stylegrpo_state.json").read_text())["history"]
    assert [e["step"] for e in restored] == [1, 2, 3, 4]

    adapter = out / "adapter"
    at2 = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    final = load_file(adapter / "adapter_model.safetensors")
    assert at2.keys() == final.keys()
    assert any(not torch.equal(at2[k], final[k]) for k in final), "resumed training did not move the adapter"

    # Nothing lost: the optimizer and scheduler continued from the checkpoint (a fresh start would count 2)
    def adam_steps(checkpoint):
        state = torch.load(out / checkpoint / "optimizer.pt", weights_only=False)["state"]
        return {int(st["step"]) for st in state.values()}

    assert adam_steps("checkpoint-2") == {2} and adam_steps("checkpoint-4") == {4}
    scheduler = torch.load(out / "checkpoint-4" / "scheduler.pt", weights_only=False)
    assert scheduler["last_epoch"] == 4
    assert (out / "checkpoint-4" / "rng_state.pth").is_file()
    reference = load_file(ref_adapter / "adapter_model.safetensors")
    assert reference.keys() == final.keys()  # same adapter layout as the uninterrupted run

    # The adapter folder: PEFT weights, card, exact recipe, styles
    names = {p.name for p in adapter.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "recipe.yaml",
        "styles.yaml",
    } <= names
    assert (adapter / "styles.yaml").read_text() == Path(demo_data[0]).read_text()
    card = (adapter / "README.md").read_text()
    assert (
        f"stylegrpo say --preset tiny --adapter {adapter} " in card
    )  # the final folder, not the staging one
    assert ".partial" not in card
    for needle in (
        "tiny:llasa",
        "tiny:xcodec2",
        "| voiced |",
        "| whisper |",
        "| style | 1 |",
        "| acoustic | 1 |",
        "normalize_then_sum",
        str(demo_data[1]),
        "voiced 16",
        "check the base model's license",
        "CC-BY-NC-4.0",
        "Tiny test run",
    ):
        assert needle in card, needle
    saved = yaml.safe_load((adapter / "recipe.yaml").read_text())
    assert (
        saved["rewards"] == ["style", "acoustic"]
        and saved["learning_rate"] == 1e-2
        and saved["preset"] == "tiny"
    )
    assert "resume_from_checkpoint" not in saved
    s2, t2, _, _ = parse_config(adapter / "recipe.yaml", {})  # reusable as a recipe
    assert t2.max_steps == 4 and s2.styles == str(demo_data[0])
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }

    # Samples per style, with their texts
    sample_dirs = sorted(p.name for p in (out / "samples").iterdir())
    assert sample_dirs == ["step-00002", "step-00004"]
    for step in sample_dirs:  # every style seen so far has a clip with its text
        names = {p.name for p in (out / "samples" / step).iterdir()}
        assert {"voiced_0.wav", "voiced_0.txt"} <= names, (step, names)
        assert "text: " in (out / "samples" / step / "voiced_0.txt").read_text()
    names = {p.name for p in (out / "samples" / "step-00004").iterdir()}
    assert {"whisper_0.wav", "whisper_0.txt"} <= names
