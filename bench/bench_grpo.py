"""Where a GRPO step spends its time: generation, decoding, each reward, backward + optimizer.

    python bench/bench_grpo.py                         # CPU, tiny preset (figures are TINY: plumbing only)
    python bench/bench_grpo.py --real-architectures    # GPU: full-size architectures, random weights

``--real-architectures`` builds, with random weights and no download, the Llasa-1B policy architecture
(Llama-3.2-1B's LlamaConfig with Llasa's 193,800-token vocabulary) and full-size judges (XCodec2,
CLAP "larger" HTS-AT + RoBERTa, Parakeet CTC 1.1B, Whisper large-v3-turbo), then runs 8 prompts x 8
generations of 250-token completions and prints seconds per step and peak GPU memory, with and without
vLLM (colocate) when vLLM is installed. Random weights never end a completion, so the bench forces the
length (the truncation and duration guards are off there) to time exactly 250 tokens of audio.

The steps run through the real ``stylegrpo.training.grpo.build_trainer`` (the same trainer, rewards and cache as
``stylegrpo train``); the bench only wraps its methods with timers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TINY_RECIPE = ROOT / "training" / "recipes" / "tiny.yaml"
GPU_RECIPE = ROOT / "training" / "recipes" / "llasa-1b-24gb.yaml"
BENCH_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Good morning, how are you today?",
    "It was a calm evening and the streets were quiet.",
    "Please read the story slowly and clearly.",
    "She sells sea shells by the sea shore.",
    "The rain had stopped under the yellow lights.",
    "Numbers are spoken every single day.",
    "Whisper the words, then say them again.",
)
ALL_REWARDS = ["style", "style_contrastive", "cer", "whisper_nll", "acoustic"]
REAL_TOKENS = 250  # completion length timed in --real-architectures (5 s of audio at 50 tokens/s)


def write_dataset(folder: Path, n_prompts: int) -> Path:
    """A prompt dataset over the bundled catalog (one row per text x style, first n_prompts rows)."""
    from datasets import Dataset

    from stylegrpo.styles import load_catalog

    catalog = load_catalog(None)
    rows = []
    for k, text in enumerate(BENCH_TEXTS * 4):
        style = catalog.styles[k % len(catalog)]
        d = style.descriptions[k % len(style.descriptions)]
        rows.append(
            {"prompt": catalog.template.render(text, d), "text": text, "style": style.name, "description": d}
        )
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows[:n_prompts]).to_parquet(str(data / "train-00000-of-00001.parquet"))
    return folder


class Timers:
    """Wraps a trainer's methods with wall-clock timers (the bench's only instrumentation)."""

    def __init__(self, sync: Any = None):
        self.sums: dict[str, list[float]] = defaultdict(list)
        self.sync = sync or (lambda: None)

    def wrap(self, obj: Any, method: str, label: str) -> None:
        inner = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.sync()
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.sync()
                self.sums[label].append(time.perf_counter() - t0)

        setattr(obj, method, timed)


def run_bench(
    recipe: Path, overrides: dict[str, Any], steps: int, *, gpu: bool, force_length: bool
) -> dict[str, Any]:
    import torch
    from transformers import TrainerCallback

    from stylegrpo.training.cli import parse_config
    from stylegrpo.training.grpo import build_trainer

    sync = torch.cuda.synchronize if gpu else None
    script_args, training_args, model_args, _ = parse_config(recipe, {**overrides, "max_steps": steps})
    run = build_trainer(script_args, training_args, model_args, overwrite=True)
    trainer, ctx = run.trainer, run.rewards
    if force_length:
        ctx.cache.max_completion_length = None  # random weights never end: time full-length audio
    timers = Timers(sync)
    timers.wrap(trainer, "_generate", "generation")
    timers.wrap(trainer, "_calculate_rewards", "decode + rewards")
    timers.wrap(trainer, "_generate_and_score_completions", "rollout + scoring")
    timers.wrap(ctx.cache, "_decode", "decoding")
    step_times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if sync:
                sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if sync:
                sync()
            step_times.append(time.perf_counter() - self.t0)

    trainer.add_callback(StepTimer())
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    skip = 1 if steps > 1 else 0  # the first step loads the judges lazily: report it apart
    n = len(step_times)

    def mean(values: list[float]) -> float:
        vals = values[skip:] if len(values) > skip else values
        return statistics.fmean(vals) if vals else float("nan")

    per_step = {label: mean(v) * len(v) / max(n, 1) for label, v in timers.sums.items()}
    rewards = {name: mean(v) * len(v) / max(n, 1) for name, v in ctx.timings.items()}
    step = mean(step_times)
    result = {
        "steps": n,
        "first_step_s": step_times[0] if step_times else float("nan"),
        "step_s": step,
        "generation_s": per_step.get("generation", 0.0),
        "decoding_s": per_step.get("decoding", 0.0),
        "rewards_s": rewards,
        "scoring_total_s": per_step.get("decode + rewards", 0.0),
        "backward_optimizer_s": step - per_step.get("rollout + scoring", 0.0),
        "other_rollout_s": per_step.get("rollout + scoring", 0.0)
        - per_step.get("generation", 0.0)
        - per_step.get("decode + rewards", 0.0),
        "completions_per_step": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps,
    }
    result["reward_share"] = result["scoring_total_s"] / step if step else float("nan")
    # the rewards' measured wall time (first reward call, decode included, to the last reward's end) and
    # decode + the sum of the rewards' own times, per step (ctx.batch_timings: one entry per reward batch)
    per = max(1, len(ctx.batch_timings) // max(n, 1))
    kept = ctx.batch_timings[per * skip :] or ctx.batch_timings
    result["rewards_wall_s"] = statistics.fmean(w for w, _ in kept) * per if kept else float("nan")
    result["rewards_sum_s"] = statistics.fmean(t for _, t in kept) * per if kept else float("nan")
    result["overlap_rewards"] = bool(script_args.overlap_rewards)
    if gpu:
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del trainer, run
    if gpu:
        torch.cuda.empty_cache()
    return result


def print_result(title: str, r: dict[str, Any]) -> None:
    print(f"\n== {title}")
    print(
        f"steps timed: {r['steps']} (first step {r['first_step_s']:.2f} s, includes lazy judge loading; excluded)"
    )
    print(f"completions per step: {r['completions_per_step']}")
    print(f"seconds per step:            {r['step_s']:8.3f}")
    print(f"  generation                 {r['generation_s']:8.3f}")
    print(f"  decoding (codec, once)     {r['decoding_s']:8.3f}")
    for name, s in r["rewards_s"].items():
        print(f"  reward {name:<20}{s:8.3f}")
    print(f"  logprobs/other in rollout  {r['other_rollout_s']:8.3f}")
    print(f"  backward + optimizer       {r['backward_optimizer_s']:8.3f}")
    print(f"reward share of the step (decoding + rewards): {100 * r['reward_share']:.1f} %")
    step = r["step_s"]
    if step and step == step:  # ratios of this run's own figures (comparable across machines and loads)
        parts = {"generation": r["generation_s"], "decoding": r["decoding_s"],
                 **{f"reward {k}": v for k, v in r["rewards_s"].items()},
                 "backward + optimizer": r["backward_optimizer_s"]}  # fmt: skip
        print(
            "share of the step, this run: "
            + ", ".join(f"{k} {100 * v / step:.1f} %" for k, v in parts.items())
        )
        slowest = max(r["rewards_s"].values(), default=0.0)
        if slowest:
            print(f"sum of reward times / slowest reward: {sum(r['rewards_s'].values()) / slowest:.2f}x")
    wall, total = r.get("rewards_wall_s", float("nan")), r.get("rewards_sum_s", float("nan"))
    if wall == wall and wall > 0:
        print(
            f"rewards {'overlapped' if r.get('overlap_rewards') else 'one after another'}: wall {wall:.3f} s "
            f"vs decode + sum of rewards {total:.3f} s (sum / wall {total / wall:.2f}x)"
        )
    if "peak_gpu_gib" in r:
        print(f"peak GPU memory: {r['peak_gpu_gib']:.2f} GiB")


# ------------------------------------------------------------------------------------- real architectures


def build_real_models(folder: Path, scale: str = "full") -> dict[str, str]:
    """Full-size architectures with random weights, saved as model folders (no download).

    The configs are stylegrpo.architectures' (the real checkpoints'); see bench/real_models.py.
    ``scale="small"`` shrinks every config (same code path) so this function can be checked on a CPU.
    """
    from bench.real_models import save_real_models

    return save_real_models(folder, scale)


def real_overrides(specs: dict[str, str], out: Path, dataset: Path, use_vllm: bool) -> dict[str, Any]:
    return {
        "model_name_or_path": specs["policy"],
        "codec": specs["codec"],
        "clap": specs["clap"],
        "asr": specs["asr"],
        "whisper": specs["whisper"],
        "dataset_path": str(dataset),
        "rewards": ALL_REWARDS,
        "reward_weights": [1.0, 0.5, 0.5, 0.25, 0.5],
        "num_generations": 8,
        "per_device_train_batch_size": 8,  # one prompt's 8 rollouts per micro-batch
        "gradient_accumulation_steps": 8,  # x 8 = 8 prompts x 8 generations per step
        "max_completion_length": REAL_TOKENS,
        "speech_only_sampling": True,  # random weights: sample speech tokens only (decodable audio)
        "duration_guard": False,  # random weights: the length is forced, not a style
        "overlong_prompts": "keep",  # the length is forced to REAL_TOKENS whatever the text
        "generation_kwargs": {"min_new_tokens": REAL_TOKENS} if not use_vllm else {"min_tokens": REAL_TOKENS},
        "use_vllm": use_vllm,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.3,
        "output_dir": str(out / ("vllm" if use_vllm else "hf")),
        "save_strategy": "no",
        "samples_every": 0,
        "logging_steps": 1,
        "report_to": "none",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps to time (default: %(default)s)")
    parser.add_argument("--real-architectures", action="store_true", help="full-size random models on a GPU")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM run of --real-architectures")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--no-overlap", action="store_true",
                        help="run the rewards one after another (overlap_rewards: false) to compare")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/BLAS threads (default 1: comparable figures on a shared machine)")  # fmt: skip
    parser.add_argument(
        "--arch-scale",
        choices=("full", "small"),
        default="full",
        help="small: shrunken configs, to check the code on CPU",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench.threads import pin_threads

    print(pin_threads(args.threads))
    import logging

    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench_grpo-"))
    results: dict[str, Any] = {}
    try:
        if not args.real_architectures:
            dataset = write_dataset(work / "prompts", 32)
            overrides = {
                "dataset_path": str(dataset),
                "rewards": ALL_REWARDS,
                "reward_weights": [1.0, 0.5, 0.5, 0.25, 1.0],
                "output_dir": str(work / "run"),
                "save_strategy": "no",
                "samples_every": 0,
                "logging_steps": 1,
                "overlap_rewards": not args.no_overlap,
            }
            r = run_bench(TINY_RECIPE, overrides, args.steps, gpu=False, force_length=False)
            print_result("CPU, tiny preset (random tiny models: figures say nothing about real speed)", r)
            results["cpu_tiny"] = r
        else:
            import torch

            gpu = torch.cuda.is_available()
            if not gpu and args.arch_scale == "full":
                print(
                    "--real-architectures needs a CUDA GPU (or --arch-scale small to check the code on CPU)"
                )
                return 2
            specs = build_real_models(work / "models", args.arch_scale)
            dataset = write_dataset(work / "prompts", 64)
            recipe = GPU_RECIPE if gpu else TINY_RECIPE
            modes = [False]
            try:
                import vllm  # noqa: F401

                if gpu and not args.no_vllm:
                    modes.append(True)
            except ImportError:
                print("vLLM is not installed: timing the transformers generation only")
            for use_vllm in modes:
                if use_vllm:
                    for k, v in {
                        "RANK": "0",
                        "LOCAL_RANK": "0",
                        "WORLD_SIZE": "1",
                        "MASTER_ADDR": "localhost",
                        "MASTER_PORT": "29511",
                    }.items():
                        os.environ.setdefault(k, v)
                overrides = real_overrides(specs, work, dataset, use_vllm)
                overrides["overlap_rewards"] = not args.no_overlap
                if not gpu:  # code check on CPU
                    overrides.update(
                        num_generations=2,
                        per_device_train_batch_size=2,
                        gradient_accumulation_steps=1,
                        max_completion_length=16,
                        generation_kwargs={"min_new_tokens": 16},
                    )
                r = run_bench(recipe, overrides, args.steps, gpu=gpu, force_length=True)
                title = f"real architectures ({args.arch_scale}), {'vLLM colocate' if use_vllm else 'transformers'} generation"
                print_result(title, r)
                results["vllm" if use_vllm else "transformers"] = r
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
