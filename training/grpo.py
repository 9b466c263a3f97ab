"""GRPO training of one LoRA for every style: a short main() around TRL's GRPOTrainer (open-r1 style).

``main(script_args, training_args, model_args)`` takes the three dataclasses TrlParser fills from a YAML
recipe plus command-line overrides (see ``training/cli.py``): our :class:`ScriptArguments` (data, styles,
models, rewards, guards, samples), TRL's ``GRPOConfig`` (optimisation, generation, reward aggregation) and
TRL's ``ModelConfig`` (policy override, dtype, LoRA). It works the same under ``accelerate launch``.

Output folder layout (``output_dir``)::

    checkpoint-N/            TRL/Trainer checkpoints (adapter, optimizer, scheduler, RNG, trainer state,
                             stylegrpo_state.json with the per-style history); resume from them
    samples/step-XXXXX/      a few decoded training samples per style (<style>_k.wav + .txt)
    style_metrics.jsonl      per-style rewards and measured properties, one line per logging step
    adapter/                 the final adapter (written whole at the end): adapter_model.safetensors,
                             adapter_config.json, README.md (model card), recipe.yaml, styles.yaml
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylegrpo.errors import StyleGRPOError, quote
from stylegrpo.llasa import ADAPTER_RECIPE

log = logging.getLogger(__name__)

DEFAULT_DATASET = "data/prompts"  # where `stylegrpo build` writes by default
ADAPTER_DIRNAME = "adapter"  # the final adapter inside output_dir
RECIPE_FILENAME = ADAPTER_RECIPE  # eval reads its dataset_path back (stylegrpo.llasa.adapter_dataset)
STYLES_FILENAME = "styles.yaml"
REQUIRED_COLUMNS = ("prompt", "text", "style", "description")
DEFAULT_REWARDS = ("style", "style_contrastive", "cer", "acoustic")  # whisper_nll is opt-in (memory, time)


@dataclass
class ScriptArguments:
    """stylegrpo's own settings (TRL's GRPOConfig and ModelConfig hold the rest)."""

    dataset_path: str = field(
        default=DEFAULT_DATASET,
        metadata={"help": "prompt dataset folder written by `stylegrpo build` (parquet, train/test splits)"},
    )
    dataset_hub_id: str | None = field(
        default=None,
        metadata={
            "help": "the prompt dataset's Hugging Face repo id (e.g. what `build --push-to-hub` uploaded), for the "
            "model card's `datasets:` metadata; None: not declared (a local folder has no hub id)"
        },
    )
    dataset_train_split: str = field(default="train", metadata={"help": "split to train on"})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "use only the first N training prompts (quick runs); None = all"}
    )
    styles: str | None = field(
        default=None,
        metadata={"help": "style catalog (default: $STYLEGRPO_STYLES, ./styles.yaml, or the bundled one)"},
    )
    preset: str = field(
        default="llasa-1b",
        metadata={"help": "named model set (stylegrpo.presets): tiny, llasa-1b, llasa-3b, ..."},
    )
    codec: str | None = field(
        default=None, metadata={"help": "override the preset's codec (hub id/folder/tiny:)"}
    )
    clap: str | None = field(default=None, metadata={"help": "override the preset's CLAP model"})
    asr: str | None = field(default=None, metadata={"help": "override the preset's ASR model"})
    whisper: str | None = field(default=None, metadata={"help": "override the preset's Whisper (NLL) model"})
    wavlm: str | None = field(
        default=None, metadata={"help": "override the preset's speaker judge (WavLM x-vector)"}
    )
    judge_device: str = field(
        default="auto",
        metadata={"help": "device of the codec and judges; auto = this process's training device"},
    )
    judge_batch_size: int = field(default=16, metadata={"help": "clips per judge forward pass"})
    style_classifier: str | None = field(
        default=None,
        metadata={
            "help": "style judge of the style_classifier reward: ast, ast:MODEL or another judge spec "
            "(stylegrpo.scorers.judges); default: ast (tiny:ast with a tiny preset)"
        },
    )
    style_classifier_device: str = field(
        default="auto", metadata={"help": "device of the style_classifier judge; auto = judge_device"}
    )
    codec_batch_size: int = field(default=16, metadata={"help": "sequences per codec decode pass"})
    decode_exact: bool = field(
        default=True,
        metadata={"help": "decode equal lengths together (exact audio); False pads (faster, approximate)"},
    )
    rewards: list[str] = field(
        default_factory=lambda: list(DEFAULT_REWARDS),
        metadata={
            "help": "reward functions: style, style_contrastive, cer, whisper_nll, acoustic, clean, speaker, "
            "style_classifier"
        },
    )
    nll_temperature: float = field(
        default=3.0, metadata={"help": "tau of the whisper_nll reward exp(-NLL/tau)"}
    )
    drop_group_cer_above: float | None = field(
        default=None,
        metadata={
            "help": "drop a group (no advantage for any rollout) when even its best CER is above this, e.g. "
            "0.5: the ASR is the noise there, not the policy; None (default) keeps every group"
        },
    )
    overlap_rewards: bool = field(
        default=True,
        metadata={
            "help": "run the CPU-bound rewards (acoustic; clean on CPU) beside the model judges instead of "
            "after them (same values; timing/rewards_wall_s vs timing/rewards_sum_s shows the gain); false: "
            "one after another"
        },
    )
    silence_dbfs: float = field(
        default=-60.0, metadata={"help": "guard: a clip below this RMS level is silent"}
    )
    min_syllables_per_second: float = field(
        default=1.0, metadata={"help": "guard: audio longer than the text at this rate (+ slack) is rejected"}
    )
    max_syllables_per_second: float = field(
        default=12.0,
        metadata={"help": "guard: audio shorter than the text at this rate (- slack) is rejected"},
    )
    duration_slack_s: float = field(default=1.0, metadata={"help": "guard: seconds of slack on both sides"})
    duration_guard: bool = field(default=True, metadata={"help": "apply the duration guard"})
    speech_only_sampling: bool = field(
        default=False,
        metadata={"help": "sample only speech tokens and the end token (masks text tokens during rollouts)"},
    )
    samples_every: int = field(
        default=50, metadata={"help": "save a few decoded samples per style every N steps (0: never)"}
    )
    samples_per_style: int = field(default=2, metadata={"help": "samples kept per style each time"})
    overlong_prompts: str = field(
        default="drop",
        metadata={
            "help": "prompts whose text cannot be spoken within max_completion_length at the style's slowest "
            "rate: drop (default), refuse (error) or keep; train reports the counts per style either way"
        },
    )
    asr_dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the Parakeet ASR judge: auto (its default, stylegrpo.scorers.asr.ASR_DTYPE), "
            "float32 or bfloat16"
        },
    )
    whisper_dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the Whisper NLL judge: auto (its default, stylegrpo.scorers.whisper_nll."
            "WHISPER_DTYPE), float32 or bfloat16"
        },
    )


# ---------------------------------------------------------------------------------------------- helpers


def resolve_resume(value: str | bool | None, output_dir: Path, *, need_optimizer: bool = True) -> str | None:
    """``--resume_from_checkpoint``: None/false -> no resume; true/last -> the newest COMPLETE checkpoint
    (newer half-written ones are skipped with a warning, see training/checkpoints.py); else a path, which
    must be a complete checkpoint. ``need_optimizer`` False for runs with ``save_only_model``."""
    from .checkpoints import check_checkpoint, last_complete_checkpoint

    if value is None or value is False:
        return None
    text = str(value).strip()
    if text.lower() in ("", "false", "no", "none", "0"):
        return None
    if text.lower() in ("true", "yes", "last", "1"):
        return str(last_complete_checkpoint(output_dir, need_optimizer=need_optimizer))
    return str(check_checkpoint(Path(text), need_optimizer=need_optimizer))


def prepare_output_dir(output_dir: str | None, *, resume: str | None, overwrite: bool, is_main: bool) -> Path:
    """Refuse a non-empty output folder unless resuming or --overwrite (which clears it, if stylegrpo wrote it).

    The folder is marked as ours before anything is written into it (checkpoints come progressively), so
    a later --overwrite may clear it, and a corpus walk skips it.
    """
    from stylegrpo.outputs import MARK_NAME, check_output_dir, clear_output_dir, is_marked, write_mark

    if not output_dir:
        raise StyleGRPOError("no output folder: set output_dir in the recipe or pass --output-dir DIR")
    out = Path(output_dir)
    # a start that failed before training wrote anything (e.g. a policy that does not load) leaves only
    # the mark: that blocks nothing, the corrected command starts there without --overwrite
    failed_start = out.is_dir() and is_marked(out) and all(p.name == MARK_NAME for p in out.iterdir())
    if resume is None and not failed_start:
        # raises unless empty, missing, or --overwrite of a folder carrying stylegrpo's mark
        check_output_dir(out, overwrite, option="--output-dir")
        if overwrite and is_main and out.is_dir() and any(out.iterdir()):
            log.warning("--overwrite: clearing %s", out)
            clear_output_dir(out, "train")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_mark(out, "train")
    return out


def load_prompt_dataset(path: str, split: str, catalog: Any, max_samples: int | None = None) -> Any:
    """The training split of a `stylegrpo build` dataset, checked against the catalog and its template."""
    from datasets import load_dataset

    from .prompt_checks import check_prompt_rows

    folder = Path(path)
    if not folder.exists():
        raise StyleGRPOError(
            f"{folder}: prompt dataset not found. Build it first:  stylegrpo build --out {folder}  "
            "(or set dataset_path in the recipe / --dataset_path)"
        )
    try:
        data = load_dataset(str(folder))
    except (ValueError, FileNotFoundError, OSError) as e:
        raise StyleGRPOError(
            f"{folder}: cannot load the prompt dataset ({e}); rebuild it with `stylegrpo build`"
        ) from e
    if split not in data:
        raise StyleGRPOError(
            f"{folder}: no split {split!r}; splits: {', '.join(data)} (set dataset_train_split)"
        )
    ds = data[split]
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise StyleGRPOError(
            f"{folder}: split {split!r} lacks column(s) {', '.join(missing)}; rebuild it with `stylegrpo build`"
        )
    if max_samples is not None:
        ds = ds.select(range(min(max_samples, len(ds))))
    if len(ds) == 0:
        raise StyleGRPOError(f"{folder}: split {split!r} is empty")
    unknown = sorted(set(ds["style"]) - set(catalog.names), key=str)
    if unknown:
        shown = ", ".join(map(quote, unknown[:10])) + (
            f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        )
        raise StyleGRPOError(
            f"{folder}: style(s) {shown} are not in the catalog {catalog.path}; pass the styles "
            "file the dataset was built with (--styles FILE)"
        )
    # prompts, texts and descriptions are the catalog's own (training/prompt_checks.py)
    check_prompt_rows(ds, catalog, folder, split)
    return ds


def as_text_prompts(dataset: Any, tokenizer: Any, max_completion_length: int | None = None) -> Any:
    """Render each item's chat messages to the exact Llasa prompt string, with the policy's own tokenizer.

    TRL 1.16 tokenizes conversational prompts with ``add_generation_prompt=True``, which closes the
    assistant turn after ``<|SPEECH_GENERATION_START|>`` and opens a new one: not the prompt Llasa was
    trained on, nor the one ``say`` and eval use. A string prompt is tokenized as is, so training sees
    exactly the inference prompt (both come from the catalog's one template via ``llasa.prompt_text``).
    """
    from stylegrpo.llasa import prompt_text, speech_tokens

    if "reference_codes" in dataset.column_names:
        # a reference code outside the policy's speech tokens would be plain text in the prompt
        n = speech_tokens(tokenizer).num_codes
        for row, codes in enumerate(dataset["reference_codes"]):
            if codes and max(codes) >= n:
                raise StyleGRPOError(
                    f"dataset row {row}: column 'reference_codes' holds code {max(codes)}, outside this policy's "
                    f"{n} speech tokens: the references were encoded with another codec; rebuild the dataset "
                    "with the policy's own codec"
                )
    rendered = dataset.map(
        lambda row: {"prompt": prompt_text(tokenizer, row["prompt"])},
        desc="rendering prompts",
        load_from_cache_file=False,
    )
    if max_completion_length and "reference_codes" in dataset.column_names:
        check_reference_budget(rendered, tokenizer, max_completion_length)
    return rendered


def check_reference_budget(dataset: Any, tokenizer: Any, max_completion_length: int) -> None:
    """Refuse rows whose prompt (a reference's codes included) plus ``max_completion_length`` exceeds
    Llasa's 2048-token budget (prompt + completion, the length it was trained on)."""
    from stylegrpo.llasa import LLASA_MAX_LENGTH

    rows = [i for i, codes in enumerate(dataset["reference_codes"]) if codes]
    if not rows:
        return
    prompts = list(dataset.select(rows)["prompt"])
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]  # as TRL tokenizes string prompts
    over = [
        (row, n) for row, n in zip(rows, lengths, strict=True) if n + max_completion_length > LLASA_MAX_LENGTH
    ]
    if over:
        row, n = max(over, key=lambda x: x[1])
        raise StyleGRPOError(
            f"{len(over)} prompt(s) with a reference speaker leave too little room: row {row}'s prompt is {n} "
            f"tokens, and with max_completion_length {max_completion_length} it exceeds Llasa's "
            f"{LLASA_MAX_LENGTH}-token budget; use shorter reference clips or a lower max_completion_length"
        )


def _dtype(name: str | None, device: Any) -> Any:
    import torch

    from stylegrpo.presets import default_dtype

    if name in (None, "auto"):
        return default_dtype(device)
    return getattr(torch, name)


def _speech_sampling_kwargs(tokenizer: Any, use_vllm: bool, vocab_size: int) -> dict[str, Any]:
    """Generation settings that let the policy sample only <|s_N|> tokens and the end token.

    ``vocab_size`` is the model's output width, which may exceed the tokenizer (padded embeddings).
    """
    from stylegrpo.llasa import speech_tokens

    st = speech_tokens(tokenizer)
    allowed = {i for i in range(vocab_size) if st.is_speech(i)}
    allowed.add(st.end_id)
    if use_vllm:
        return {"allowed_token_ids": sorted(allowed)}
    return {"suppress_tokens": [i for i in range(vocab_size) if i not in allowed]}


# ---------------------------------------------------------------------------------------------- main


@dataclass
class TrainingRun:
    """A GRPOTrainer ready to train, with what main() needs afterwards (bench/ instruments it)."""

    trainer: Any
    rewards: Any  # the RewardContext: audio cache, judges, per-reward timings
    metrics: Any  # the StyleMetricsCallback
    output_dir: Path
    resume: str | None
    info: dict[str, Any]


def classifier_spec(spec: str | None, preset: Any) -> str:
    """The style_classifier reward's judge spec: as given, else the AudioSet classifier (its tiny twin for a
    preset of tiny twins, so a tiny run stays offline)."""
    if spec:
        return spec
    return "ast:tiny:ast" if getattr(preset, "random_weights", False) else "ast"


def build_trainer(
    script_args: ScriptArguments,
    training_args: Any,
    model_args: Any,
    *,
    overwrite: bool = False,
) -> TrainingRun:
    """Check the settings, prepare the output folder, load data and models, and build the GRPOTrainer."""
    from accelerate import PartialState
    from trl import GRPOTrainer, get_peft_config

    from stylegrpo.console import trainer_progress
    from stylegrpo.llasa import load_policy, speech_tokens
    from stylegrpo.presets import get_preset, resolve_device
    from stylegrpo.styles import load_catalog

    from .callbacks import AudioSamplesCallback, StyleMetricsCallback
    from .checks import apply_overlong_rule, check_speaker_reward, check_vllm_sampling
    from .rewards import (
        AudioCache,
        GuardSettings,
        Judges,
        RewardContext,
        build_reward_functions,
        check_reward_names,
        overlap_rewards,
    )
    from .trackers import align_trackio_steps, check_report_to, set_tracker_environment

    state = PartialState()
    catalog = load_catalog(script_args.styles)
    preset = get_preset(script_args.preset).with_overrides(
        codec=script_args.codec,
        clap=script_args.clap,
        asr=script_args.asr,
        whisper=script_args.whisper,
        wavlm=script_args.wavlm,
    )
    policy_spec = model_args.model_name_or_path or preset.policy
    if not model_args.use_peft:
        raise StyleGRPOError("stylegrpo trains a LoRA adapter: set use_peft: true in the recipe")
    names = check_reward_names(script_args.rewards)
    weights = training_args.reward_weights or [1.0] * len(names)
    if len(weights) != len(names):
        raise StyleGRPOError(
            f"reward_weights has {len(weights)} values for {len(names)} rewards ({', '.join(names)}): give one each"
        )

    check_vllm_sampling(training_args, script_args.speech_only_sampling)
    # known and installed trackers, "a,b" split (training/trackers.py)
    training_args.report_to = check_report_to(training_args.report_to)
    train = load_prompt_dataset(
        script_args.dataset_path, script_args.dataset_train_split, catalog, script_args.max_train_samples
    )
    train = apply_overlong_rule(
        train, catalog, training_args.max_completion_length, script_args.overlong_prompts
    )
    # the speaker reward against the rows that train (after the overlong drop): refused or warned here
    check_speaker_reward(
        train, catalog, names, f"{script_args.dataset_path}: split {script_args.dataset_train_split!r}"
    )
    out = Path(training_args.output_dir) if training_args.output_dir else None
    resume = (
        resolve_resume(
            training_args.resume_from_checkpoint, out, need_optimizer=not training_args.save_only_model
        )
        if out
        else None
    )
    out = prepare_output_dir(
        training_args.output_dir, resume=resume, overwrite=overwrite, is_main=state.is_main_process
    )
    if resume and state.is_main_process:
        from .checkpoints import discard_partial_checkpoints

        discard_partial_checkpoints(out, resume, need_optimizer=not training_args.save_only_model)
    state.wait_for_everyone()
    set_tracker_environment(training_args.report_to, out, training_args.project)

    device = training_args.device
    model, tokenizer = load_policy(policy_spec, device=device, dtype=_dtype(model_args.dtype, device))
    train = as_text_prompts(train, tokenizer, training_args.max_completion_length)
    judge_device = device if script_args.judge_device == "auto" else resolve_device(script_args.judge_device)
    guards = GuardSettings(
        silence_dbfs=script_args.silence_dbfs,
        min_syllables_per_second=script_args.min_syllables_per_second,
        max_syllables_per_second=script_args.max_syllables_per_second,
        duration_slack_s=script_args.duration_slack_s,
        check_duration=script_args.duration_guard,
    )
    cache = AudioCache(
        preset.codec,
        tokenizer,
        max_completion_length=training_args.max_completion_length,
        device=judge_device,
        guards=guards,
        batch_size=script_args.codec_batch_size,
        exact=script_args.decode_exact,
    )
    judges = Judges(
        clap=preset.clap,
        asr=preset.asr,
        whisper=preset.whisper,
        wavlm=preset.wavlm,
        device=judge_device,
        batch_size=script_args.judge_batch_size,
        asr_dtype=script_args.asr_dtype,
        whisper_dtype=script_args.whisper_dtype,
        classifier=classifier_spec(script_args.style_classifier, preset),
        classifier_device=None
        if script_args.style_classifier_device == "auto"
        else resolve_device(script_args.style_classifier_device),
    )
    ctx = RewardContext(
        cache,
        judges,
        catalog,
        weights=dict(zip(names, weights, strict=True)),
        nll_temperature=script_args.nll_temperature,
        normalize=training_args.multi_objective_aggregation == "normalize_then_sum",
        drop_group_cer_above=script_args.drop_group_cer_above,
    )
    reward_funcs: list[Any] = build_reward_functions(names, ctx)
    if script_args.overlap_rewards:
        reward_funcs = overlap_rewards(reward_funcs)

    gen_kwargs = dict(training_args.generation_kwargs or {})
    if training_args.use_vllm:
        # vLLM reads its stop tokens from the checkpoint, whose eos is a Llama text token: stop at speech end
        gen_kwargs.setdefault("stop_token_ids", [speech_tokens(tokenizer).end_id])
    if script_args.speech_only_sampling:
        vocab = model.get_output_embeddings().weight.shape[0]
        gen_kwargs.update(_speech_sampling_kwargs(tokenizer, training_args.use_vllm, vocab))
    training_args.generation_kwargs = gen_kwargs or None

    metrics_cb = StyleMetricsCallback(out, catalog.names)
    samples_cb = AudioSamplesCallback(
        out, cache, every=script_args.samples_every, per_style=script_args.samples_per_style
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[metrics_cb, samples_cb],
    )
    samples_cb.trainer = trainer
    align_trackio_steps(trainer)
    trainer_progress(trainer)  # the console's training bar (-v: transformers' own, -q: none)
    if resume:
        metrics_cb.restore(resume)
    info = {
        "base_model": policy_spec,
        "preset": preset,
        "catalog": catalog,
        "rewards": list(zip(names, weights, strict=True)),
        "training_args": training_args,
        "model_args": model_args,
        "dataset_path": script_args.dataset_path,
        "dataset_hub_id": script_args.dataset_hub_id,
        "dataset_counts": dict(sorted(Counter(train["style"]).items())),
    }
    return TrainingRun(trainer, ctx, metrics_cb, out, resume, info)


def main(
    script_args: ScriptArguments,
    training_args: Any,
    model_args: Any,
    *,
    recipe: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Train, then write the final adapter to ``output_dir/adapter``; returns that folder."""
    run = build_trainer(script_args, training_args, model_args, overwrite=overwrite)
    trainer = run.trainer
    if run.resume:
        log.info("resuming from %s", run.resume)
    trainer.train(resume_from_checkpoint=run.resume)
    info = {**run.info, "global_step": trainer.state.global_step, "last_metrics": run.metrics.last_by_style()}
    adapter = save_adapter(trainer, run.output_dir, info=info, recipe=recipe, catalog=run.info["catalog"])
    if hasattr(trainer, "end"):
        trainer.end()  # close trackers (transformers >= 5.18)
    return adapter


def save_adapter(
    trainer: Any, out: Path, *, info: dict[str, Any], recipe: dict[str, Any] | None, catalog: Any
) -> Path:
    """Write the final adapter whole: into a staging folder, then renamed to ``out/adapter``.

    Every process calls ``trainer.save_model`` (DeepSpeed gathers weights there); the main process adds the
    model card, the recipe and the styles file, then swaps the folder into place.
    """
    from .card import write_model_card, write_recipe

    acc = trainer.accelerator
    final = out / ADAPTER_DIRNAME
    staging = out / f".{ADAPTER_DIRNAME}.partial"
    if acc.is_main_process and staging.exists():
        shutil.rmtree(staging)
    acc.wait_for_everyone()
    trainer.save_model(str(staging))
    if acc.is_main_process:
        for junk in ("training_args.bin",):  # pickled args: the readable recipe.yaml replaces it
            (staging / junk).unlink(missing_ok=True)
        write_recipe(staging / RECIPE_FILENAME, recipe or {}, info)
        if catalog.path is not None and Path(catalog.path).is_file():
            shutil.copyfile(catalog.path, staging / STYLES_FILENAME)
        write_model_card(staging / "README.md", info, final_dir=final)
        old = out / f".{ADAPTER_DIRNAME}.old-{os.getpid()}"
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        log.debug("adapter written to %s", final)  # the CLI prints it
    acc.wait_for_everyone()
    return final
