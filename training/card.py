"""The model card (README.md) and the resolved recipe written beside the final adapter."""

from __future__ import annotations

import datetime as _dt
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

import stylegrpo

# GRPO settings the card states (they decide what was optimised and how).
_CARD_GRPO_FIELDS = (
    "learning_rate",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "max_completion_length",
    "temperature",
    "top_p",
    "beta",
    "loss_type",
    "scale_rewards",
    "multi_objective_aggregation",
    "num_iterations",
    "use_vllm",
    "seed",
)
_CARD_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "dtype")


def _yaml_value(value: Any) -> Any:
    if hasattr(value, "value"):  # enums (e.g. SchedulerType)
        return value.value
    if isinstance(value, (list, tuple)):
        return [_yaml_value(v) for v in value]
    return value


def write_recipe(path: Path, recipe: dict[str, Any], info: dict[str, Any]) -> None:
    """The recipe as run: the YAML recipe with the command-line overrides applied, reusable with --config."""
    args = info["training_args"]
    resolved = {k: _yaml_value(v) for k, v in recipe.items()}
    resolved["output_dir"] = str(args.output_dir)
    resolved.pop("resume_from_checkpoint", None)  # a property of one invocation, not of the recipe
    header = (
        f"# Resolved recipe of this adapter (stylegrpo {stylegrpo.__version__}, "
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}):\n"
        "# the YAML recipe with the command-line overrides applied. Train again with\n"
        f"#   stylegrpo train --config {path.name} --output-dir NEW_DIR\n"
        "# (the styles file it names is copied beside it as styles.yaml).\n"
    )
    path.write_text(header + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))


# The licenses the base models' own cards state (an adapter is a derivative of its base model)
BASE_MODEL_LICENSES = {
    "HKUSTAudio/Llasa-1B": "cc-by-nc-4.0",
    "HKUSTAudio/Llasa-3B": "cc-by-nc-4.0",
    "HKUSTAudio/Llasa-8B": "cc-by-nc-4.0",
}
CARD_TAGS = ["text-to-speech", "llasa", "lora", "peft", "trl", "grpo", "stylegrpo"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name (a hub repo id), not a path or tiny:KIND


def _hub_id(spec: Any) -> str | None:
    """``spec`` when it names a Hugging Face repo (not a local folder or a tiny twin), else None."""
    text = str(spec or "")
    return text if _HUB_ID.match(text) and not Path(text).exists() else None


def card_metadata(info: dict[str, Any]) -> dict[str, Any]:
    """The model card's YAML header, in the Hub's conventions (what it renders, indexes and links)."""
    base = _hub_id(info["base_model"])
    license_ = BASE_MODEL_LICENSES.get(str(info["base_model"]), "other")
    meta: dict[str, Any] = {}
    if base:  # a local folder or a tiny twin is not a hub model the Hub could link
        meta["base_model"] = base
    meta.update(library_name="peft", pipeline_tag="text-to-speech", license=license_)
    if license_ == "other":
        meta["license_name"] = "same-as-base-model"  # the section "License" in the card says which
    dataset = _hub_id(info.get("dataset_hub_id"))
    if dataset:
        meta["datasets"] = [dataset]
    meta["tags"] = list(CARD_TAGS)
    return meta


def say_command(info: dict[str, Any], adapter: Path, style: str) -> str:
    """The `stylegrpo say` line that speaks with this adapter: its preset, plus the models the run overrode."""
    from stylegrpo.presets import get_preset

    from .grpo import STYLES_FILENAME

    preset = info["preset"]
    named = get_preset(preset.name)
    args = ["stylegrpo", "say", "--preset", preset.name]
    if str(info["base_model"]) != str(named.policy):
        args += ["--policy", str(info["base_model"])]
    if str(preset.codec) != str(named.codec):
        args += ["--codec", str(preset.codec)]
    args += ["--adapter", str(adapter)]
    catalog = info["catalog"]
    if catalog.path is not None and Path(catalog.path).is_file():  # copied beside the adapter (save_adapter)
        args += ["--styles", str(Path(adapter) / STYLES_FILENAME)]  # its styles, not the default catalog's
    args += ["--style", style, "Hello there.", "-o", "hello.wav"]
    return shlex.join(args)


def write_model_card(path: Path, info: dict[str, Any], final_dir: Path | None = None) -> None:
    """``final_dir``: where the adapter will live once moved into place (``path`` may be in staging)."""
    args = info["training_args"]
    model_args = info["model_args"]
    preset = info["preset"]
    catalog = info["catalog"]
    rewards = info["rewards"]
    counts = info["dataset_counts"]
    tiny = bool(getattr(preset, "random_weights", False))
    trained = [s.name for s in catalog if counts.get(s.name, 0)] or catalog.names
    lines = [
        "---",
        yaml.safe_dump(card_metadata(info), sort_keys=False, allow_unicode=True).strip(),
        "---",
        "",
        f"# stylegrpo adapter: {len(catalog)} speaking styles in one LoRA",
        "",
        f"A LoRA adapter for **{info['base_model']}** trained with GRPO (TRL) by stylegrpo "
        f"{stylegrpo.__version__} so that one adapter speaks every style below; the style is chosen by its "
        "description in the prompt.",
        "",
    ]
    if tiny:
        lines += [
            "> **Tiny test run.** The base model, codec and judges were random-weight twins: this adapter "
            "proves the plumbing and learning mechanics only, not speech or style quality.",
            "",
        ]
    lines += [
        "## Use",
        "",
        "With stylegrpo installed, speak in any style below (this folder, or a copy of it: from the Hub, "
        "`hf download REPO_ID --local-dir ADAPTER_DIR` and pass that folder):",
        "",
        "```bash",
        say_command(info, final_dir or path.parent, trained[0]),
        "```",
        "",
        f"`--style` takes any of: {', '.join(f'`{n}`' for n in trained)}; `stylegrpo say --help` for the rest "
        "(seed, temperature, a file of lines).",
        "",
        "## Models",
        "",
        "| role | model |",
        "|---|---|",
        f"| policy (base) | {info['base_model']} |",
        f"| codec | {preset.codec} |",
        f"| CLAP (style) | {preset.clap} |",
        f"| ASR (cer) | {preset.asr} |",
        f"| Whisper (whisper_nll) | {preset.whisper} |",
        "",
        "## Styles trained",
        "",
        "| style | phrase | training prompts | last logged rewards (training batches) |",
        "|---|---|---|---|",
    ]
    last = info.get("last_metrics") or {}
    for style in catalog:
        got = last.get(style.name, {})
        shown = ", ".join(f"{k} {v:.3f}" for k, v in sorted(got.items())) or "-"
        lines.append(f"| {style.name} | {style.phrase} | {counts.get(style.name, 0)} | {shown} |")
    lines += [
        "",
        "## Rewards",
        "",
        "| reward | weight |",
        "|---|---|",
        *[f"| {name} | {weight:g} |" for name, weight in rewards],
        "",
        f"Aggregation: `multi_objective_aggregation: {args.multi_objective_aggregation}`, "
        f"`scale_rewards: {args.scale_rewards}`, `loss_type: {args.loss_type}`, `beta: {args.beta}`. "
        "Guards (no speech tokens, cut at the length cap, silence, implausible duration) give a completion "
        "the lowest value of every reward.",
        "",
        "## Training",
        "",
        f"- dataset: `{info['dataset_path']}` ({sum(counts.values())} training prompts: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + ")",
        f"- optimizer steps: {info['global_step']}",
        *[f"- {k}: {_yaml_value(getattr(args, k, None))}" for k in _CARD_GRPO_FIELDS],
        *[f"- {k}: {_yaml_value(getattr(model_args, k, None))}" for k in _CARD_LORA_FIELDS],
        "",
        "The exact recipe is `recipe.yaml` and the style catalog `styles.yaml`, both in this folder.",
        "",
        "## License",
        "",
        "This adapter is derived from its base model: check the base model's license before any use "
        "(Llasa's model card states CC-BY-NC-4.0, non-commercial). The XCodec2 codec and the judge models "
        "have their own licenses; check them likewise. stylegrpo itself is Apache-2.0.",
        "",
    ]
    path.write_text("\n".join(lines))
