"""Synthesis benchmark: generation throughput and codec decoding (exact grouping vs padded batches).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_synth.py [--device cpu] [--json OUT]

Tiny twins (random weights: timings of the plumbing, not of real Llasa). Decoding at the real XCodec2 size
(and how much padding changes its audio) is ``bench/bench_codec.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


from bench_codec import _rel_rms  # noqa: E402


def bench_decode(codec, lengths: list[int], repeats: int = 3) -> dict:
    rng = np.random.default_rng(0)
    batch = [rng.integers(0, codec.num_codes, n).tolist() for n in lengths]
    codec.decode(batch[:1])  # warm-up
    out = {}
    for name, exact in (("exact", True), ("padded", False)):
        t = time.perf_counter()
        for _ in range(repeats):
            wavs = codec.decode(batch, exact=exact)
        out[f"{name}_s"] = (time.perf_counter() - t) / repeats
        out[f"{name}_wavs"] = wavs
    alone = [codec.decode([c])[0] for c in batch]
    out["exact_vs_alone_max_abs"] = max(
        float(np.abs(a - b).max()) for a, b in zip(out["exact_wavs"], alone, strict=True)
    )
    out["padded_vs_alone_rel_rms"] = [_rel_rms(p, a) for p, a in zip(out["padded_wavs"], alone, strict=True)]
    # how far into the clip the change reaches: relative RMS of the first half only
    out["padded_vs_alone_rel_rms_first_half"] = [
        _rel_rms(p[: len(p) // 2], a[: len(a) // 2]) for p, a in zip(out["padded_wavs"], alone, strict=True)
    ]
    out["lengths"] = lengths
    del out["exact_wavs"], out["padded_wavs"]
    return out


def bench_generate(device: str, n_prompts: int, max_new_tokens: int) -> dict:
    from stylegrpo.llasa import generate, load_policy
    from stylegrpo.styles import PromptTemplate

    model, tok = load_policy("tiny:llasa", device)
    prompts = [
        PromptTemplate().render(f"Sentence number {i} to speak.", "a whisper") for i in range(n_prompts)
    ]
    res = {}
    for bs in (1, n_prompts):
        generate(model, tok, prompts[:1], max_new_tokens=4, seed=0)  # warm-up
        t = time.perf_counter()
        gens = generate(
            model, tok, prompts, max_new_tokens=max_new_tokens, seed=0, batch_size=bs, progress=False
        )
        dt = time.perf_counter() - t
        n_tok = sum(g.num_tokens for g in gens)
        res[f"batch{bs}"] = {"seconds": dt, "tokens": n_tok, "tokens_per_s": n_tok / dt}
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: tiny models gain nothing from more)"
    )
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args(argv)

    import torch

    from stylegrpo.codec import Codec

    torch.set_num_threads(args.threads)
    lengths = [25, 50, 100, 150, 250]  # 0.5 s .. 5 s of codes
    report: dict = {"device": args.device, "torch_threads": torch.get_num_threads()}
    report["generate_tiny"] = bench_generate(args.device, args.prompts, args.max_new_tokens)
    report["decode_tiny"] = bench_decode(Codec.load("tiny:xcodec2", args.device), lengths)
    json.dump(report, sys.stdout, indent=2)
    print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
