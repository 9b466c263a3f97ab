"""One prepared check of the real GPU path, for a CUDA machine WITHOUT hub access (run: bench/gpu_check.sh).

    bench/gpu_check.sh                     # GPU: full-size random-weight models, ~5-8 min on one modern GPU
    bench/gpu_check.sh --dry-run           # CPU: the same steps with shrunken models (seconds; run by a test)

1. builds every model of the llasa-1b preset at its real size from stylegrpo.architectures (random weights,
   tiny tokenizers, real feature-extractor settings; nothing is downloaded);
2. judges at real size: each judge scores the same clips in fp32 and in bf16; prints the differences next to
   the spread of the scores across clips (the question the judge dtypes answer: is bf16's rounding small
   against the differences a group's rewards must show?);
3. a few GRPO steps of training/recipes/llasa-1b-24gb.yaml (its batch: 4 prompts x 8 rollouts per step)
   through the real ``stylegrpo.training.grpo.build_trainer``, with transformers generation, then of
   llasa-1b-24gb-vllm.yaml when vLLM is installed: seconds per step split into generation / decode / each reward / backward, the rewards'
   share of the step, and peak GPU memory;
4. writes every figure to one JSON file (``--out``, default gpu_check.json) and prints a summary.

Random weights never end a completion, so completions are forced to ``--tokens`` tokens (guards off);
timings and memory are real, reward values are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VLLM_RECIPE = ROOT / "training" / "recipes" / "llasa-1b-24gb-vllm.yaml"
JUDGE_CLIPS = 16  # one judge batch: two rollout groups of 8
CLIP_SECONDS = (3.0, 8.0)  # clip lengths for the judge comparison (a sentence of speech)


def log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------- judges


def judge_precision(specs: dict[str, str], device: str, n_clips: int = JUDGE_CLIPS, seed: int = 0) -> dict:
    """Each judge's scores of the same clips in fp32 and bf16: differences vs the spread across clips."""
    import torch

    from bench.bench_scorers import DESCRIPTIONS, make_clips
    from stylegrpo.scorers.asr import AsrScorer, cer
    from stylegrpo.scorers.clap import ClapScorer
    from stylegrpo.scorers.whisper_nll import WhisperNllScorer

    wavs, texts = make_clips(n_clips, *CLIP_SECONDS, seed=seed, source="espeak")
    descriptions = [DESCRIPTIONS[i % len(DESCRIPTIONS)] for i in range(len(wavs))]
    out: dict[str, Any] = {"clips": len(wavs), "clip_seconds": [float(len(w) / 16000) for w in wavs]}

    def scores(kind: str, dtype: Any) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        if kind == "clap":
            j = ClapScorer(specs["clap"], device=device, dtype=dtype)
            res = {"similarity": j.similarity(wavs, descriptions)}
        elif kind == "asr":
            j = AsrScorer(specs["asr"], device=device, dtype=dtype)
            hyps = j.transcribe(wavs)
            res = {"cer": np.array([cer(h, t) for h, t in zip(hyps, texts, strict=True)]), "hyps": hyps}
            res["frame_logits"] = _ctc_logits(j, wavs[:4])
        else:
            j = WhisperNllScorer(specs["whisper"], device=device, dtype=dtype)
            nll = j.nll(wavs, texts)
            res = {"nll": nll, "reward": np.exp(-nll / 3.0)}  # the whisper_nll reward at nll_temperature 3
        res["seconds"] = time.perf_counter() - t0
        del j
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        return res

    for kind in ("clap", "asr", "whisper"):
        fp32, bf16 = scores(kind, "float32"), scores(kind, "bfloat16")
        entry: dict[str, Any] = {"seconds_fp32": fp32["seconds"], "seconds_bf16": bf16["seconds"]}
        for key in ("similarity", "cer", "nll", "reward"):
            if key in fp32:
                a, b = np.asarray(fp32[key], np.float64), np.asarray(bf16[key], np.float64)
                entry[key] = {
                    "max_abs_diff": float(np.max(np.abs(a - b))),
                    "mean_abs_diff": float(np.mean(np.abs(a - b))),
                    "spread_std_fp32": float(np.std(a)),
                    "min_gap_fp32": float(np.min(np.diff(np.sort(a)))) if a.size > 1 else float("nan"),
                    "rank_agreement": float(np.mean(np.argsort(a) == np.argsort(b))),
                }
        if kind == "asr":
            entry["transcripts_differ"] = int(
                sum(x != y for x, y in zip(fp32["hyps"], bf16["hyps"], strict=True))
            )
            la, lb = fp32["frame_logits"], bf16["frame_logits"]
            entry["frame_argmax_agreement"] = float(np.mean(la.argmax(-1) == lb.argmax(-1)))
            entry["logprob_max_abs_diff"] = float(np.max(np.abs(la - lb)))
        out[kind] = entry
    return out


def _ctc_logits(judge: Any, wavs: list[np.ndarray]) -> np.ndarray:
    """Parakeet's frame log-probs for a few clips (what the CTC argmax, hence the transcript, is taken from)."""
    import torch

    inputs = judge.processor(audio=wavs, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        logits = judge.model(
            input_features=inputs["input_features"].to(judge.device, judge.model.dtype),
            attention_mask=inputs["attention_mask"].to(judge.device),
        ).logits
    return logits.float().log_softmax(-1).cpu().numpy()


# ---------------------------------------------------------------------------------------------- GRPO


def grpo_steps(
    specs: dict[str, str], work: Path, *, gpu: bool, use_vllm: bool, steps: int, tokens: int
) -> dict:
    """A few GRPO steps of the 24 GB recipe (its batch), timed by bench_grpo's instrumentation."""
    from bench.bench_grpo import GPU_RECIPE, TINY_RECIPE, real_overrides, run_bench, write_dataset

    dataset = write_dataset(work / "prompts", 32)
    overrides = real_overrides(specs, work, dataset, use_vllm)
    overrides.pop("vllm_gpu_memory_utilization")  # the vLLM recipe's own share stands
    overrides.update(
        per_device_train_batch_size=4,  # the recipe's micro-batch ...
        gradient_accumulation_steps=8,  # ... and accumulation: 4 prompts x 8 rollouts per step
        max_completion_length=tokens,
        generation_kwargs={"min_tokens" if use_vllm else "min_new_tokens": tokens},
    )
    if use_vllm:
        for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "localhost"}.items():
            os.environ.setdefault(k, v)
        os.environ.setdefault("MASTER_PORT", "29517")
    if not gpu:  # --dry-run: the tiny recipe's CPU settings, a tiny batch
        overrides.update(
            num_generations=2,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=1,
            max_completion_length=tokens,
        )
    recipe = (VLLM_RECIPE if use_vllm else GPU_RECIPE) if gpu else TINY_RECIPE
    return run_bench(recipe, overrides, steps, gpu=gpu, force_length=True)


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, shrunken models: checks the script itself"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="GRPO steps per engine (default 3; dry run 2)"
    )
    parser.add_argument(
        "--tokens", type=int, default=None, help="completion tokens (default 250 = 5 s; dry run 16)"
    )
    parser.add_argument(
        "--no-vllm", action="store_true", help="skip the vLLM run even when vLLM is installed"
    )
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="figures (JSON)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    gpu = not args.dry_run
    if gpu and not torch.cuda.is_available():
        log("gpu_check: no CUDA GPU here; use --dry-run to check the script on a CPU")
        return 2
    if not gpu:
        torch.set_num_threads(1)
    steps = args.steps or (3 if gpu else 2)
    tokens = args.tokens or (250 if gpu else 16)
    device = "cuda" if gpu else "cpu"
    t_start = time.perf_counter()
    figures: dict[str, Any] = {
        "mode": "gpu"
        if gpu
        else "dry-run (CPU, shrunken models: figures check the script, not the GPU path)",
        "device": torch.cuda.get_device_name(0) if gpu else platform.processor() or "cpu",
        "torch": torch.__version__,
        "steps": steps,
        "completion_tokens": tokens,
    }
    try:
        import vllm

        figures["vllm"] = vllm.__version__
    except ImportError:
        figures["vllm"] = None
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    try:
        from bench.real_models import save_real_models

        t0 = time.perf_counter()
        specs = save_real_models(work / "models", "full" if gpu else "small", device=device)
        figures["build_models_s"] = time.perf_counter() - t0
        log(f"models built in {figures['build_models_s']:.0f} s ({'full size' if gpu else 'small'}): {work}")

        figures["judges"] = judge_precision(specs, device, n_clips=JUDGE_CLIPS if gpu else 4)
        _print_judges(figures["judges"])

        engines = [False] + ([True] if gpu and figures["vllm"] and not args.no_vllm else [])
        for use_vllm in engines:
            name = "vllm" if use_vllm else "transformers"
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            r = grpo_steps(specs, work, gpu=gpu, use_vllm=use_vllm, steps=steps, tokens=tokens)
            figures[f"grpo_{name}"] = r
            from bench.bench_grpo import print_result

            print_result(f"GRPO, llasa-1b-24gb recipe, {name} generation", r)
        figures["total_s"] = time.perf_counter() - t_start
        args.out.write_text(json.dumps(figures, indent=2, default=float))
        log(f"\nfigures written to {args.out} (total {figures['total_s']:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _print_judges(j: dict[str, Any]) -> None:
    log(f"\n== judges, fp32 vs bf16 on the same {j['clips']} clips")
    for kind in ("clap", "asr", "whisper"):
        e = j[kind]
        log(f"{kind}: {e['seconds_fp32']:.2f} s fp32, {e['seconds_bf16']:.2f} s bf16")
        for key in ("similarity", "cer", "nll", "reward"):
            if key in e:
                d = e[key]
                log(
                    f"  {key:<10} |fp32-bf16| max {d['max_abs_diff']:.2e} mean {d['mean_abs_diff']:.2e}; "
                    f"spread (std) {d['spread_std_fp32']:.2e}, smallest gap {d['min_gap_fp32']:.2e}"
                )
        if kind == "asr":
            log(
                f"  transcripts differing: {e['transcripts_differ']} of {j['clips']}; frame argmax agreement "
                f"{100 * e['frame_argmax_agreement']:.2f} %, log-prob max diff {e['logprob_max_abs_diff']:.2e}"
            )


if __name__ == "__main__":
    sys.exit(main())
