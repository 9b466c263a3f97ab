"""Codec decoding at the real XCodec2 size: one call per clip (exact) against one padded batch.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_codec.py [--seconds 4 5 6 8] [--repeats 3] [--device cpu]

``stylegrpo.codec.Codec.decode`` batches only clips of EQUAL length (exact); GRPO rollouts almost never
have equal lengths, so in practice it decodes one clip per call. This measures, on the decoder of
``HKUSTAudio/xcodec2-hf`` at its real size (``stylegrpo.architectures.xcodec2_config``: hidden 1024,
12 transformer layers; random weights, the semantic encoder cut to one layer since decoding never runs
it), for a few clips of realistic lengths:

  exact   ``decode(clips)``: one forward pass per distinct length (here: per clip);
  padded  ``decode(clips, exact=False)``: one forward pass, every clip padded to the longest with its
          last code and trimmed back to its own length afterwards;

as min / median of ``--repeats`` runs, their ratio, and how far each padded clip is from its solo decode
(max absolute sample difference, relative RMS, and the same over the first half of the clip only: the
decoder's GroupNorm layers normalize over the whole time axis and its transformer attends without a mask,
so padding is expected to change the whole clip, not only its tail). ``--margins`` also decodes each clip
padded by a few codes of right context and trimmed (does a margin make padding safe?).
Torch runs on one thread by default (``--threads``), as the other benches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from threads import pin_threads  # noqa: E402


def real_size_codec(device: str):
    """A Codec around XCodec2 at the real decoder size with random weights (seeded)."""
    import torch
    from transformers import Xcodec2Model

    from stylegrpo.architectures import xcodec2_config
    from stylegrpo.codec import Codec

    torch.manual_seed(0)

    # decoding never runs the semantic encoder (Codec.load drops it); its width stays the real 1024 because
    # the decoder's input layer is sized by it
    config = xcodec2_config(semantic_model_config=dict(model_type="wav2vec2-bert", num_hidden_layers=1))
    model = Xcodec2Model(config)
    model.semantic_encoder = None
    params = sum(p.numel() for p in model.parameters())
    return Codec(model.to(device).eval(), spec="random real-size xcodec2"), params, config


def _rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / max(np.sqrt(np.mean(b**2)), 1e-12))


def _timed(fn, repeats: int, sync) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t)
    return times, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[4.0, 5.0, 6.0, 8.0], help="clip lengths")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS CPU threads (default 1)")
    p.add_argument("--margins", type=int, nargs="*", default=[8, 50], help="right-context codes to try")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    print(pin_threads(args.threads))

    import torch

    from stylegrpo.audio import CODEC_TOKENS_PER_SECOND

    codec, params, config = real_size_codec(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(
        f"decoder: XCodec2 hidden {config.hidden_size}, {config.num_hidden_layers} layers, "
        f"{params / 1e6:.0f} M parameters (random weights), device {args.device}"
    )
    lengths = [round(s * CODEC_TOKENS_PER_SECOND) for s in args.seconds]
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, codec.num_codes, n).tolist() for n in lengths]
    codec.decode([clips[0][:50]])  # warm-up
    exact_t, exact = _timed(lambda: codec.decode(clips), args.repeats, sync)
    padded_t, padded = _timed(
        lambda: codec.decode(clips, exact=False, batch_size=len(clips)), args.repeats, sync
    )
    total_s = sum(lengths) / CODEC_TOKENS_PER_SECOND
    report: dict = {
        "clips_s": args.seconds,
        "audio_s": total_s,
        "threads": torch.get_num_threads(),
        "exact_s": exact_t,
        "padded_s": padded_t,
    }
    fmt = lambda ts: f"{min(ts):.2f} / {statistics.median(ts):.2f} s"  # noqa: E731
    print(f"{len(clips)} clips of {', '.join(f'{s:g}' for s in args.seconds)} s ({total_s:g} s of audio):")
    print(
        f"  exact  (one call per length, {len(set(lengths))} calls): {fmt(exact_t)} (min / median of {args.repeats})"
    )
    print(f"  padded (one call, {len(clips)} x {max(lengths)} codes):   {fmt(padded_t)}")
    ratio_min = min(exact_t) / min(padded_t)
    ratio_med = statistics.median(exact_t) / statistics.median(padded_t)
    print(f"  exact / padded: {ratio_min:.2f}x (min) / {ratio_med:.2f}x (median)")
    report["exact_over_padded"] = [ratio_min, ratio_med]

    solo = exact  # exact decoding is solo decoding (tests/test_codec.py); checked here on the first clip
    first = codec.decode([clips[0]])[0]
    report["exact_vs_solo_max_abs"] = float(np.abs(first - solo[0]).max())
    rows = []
    for n, a, b in zip(lengths, padded, solo, strict=True):
        half = len(b) // 2
        rows.append(
            {
                "codes": n,
                "padded_by": max(lengths) - n,
                "max_abs": float(np.abs(a - b).max()),
                "peak": float(np.abs(b).max()),
                "rel_rms": _rel_rms(a, b),
                "rel_rms_first_half": _rel_rms(a[:half], b[:half]),
            }
        )
    report["padded_vs_solo"] = rows
    print("  padded vs solo decode, per clip (the clip's own samples):")
    for r in rows:
        print(
            f"    {r['codes']:4d} codes padded by {r['padded_by']:3d}: max |diff| {r['max_abs']:.3g} "
            f"(peak {r['peak']:.3g}), relative RMS {r['rel_rms']:.3g}, first half {r['rel_rms_first_half']:.3g}"
        )
    margins = []
    for m in args.margins:  # a clip decoded with m codes of right context (its last code repeated), trimmed
        short = clips[0]
        ctx = codec.decode([short + [short[-1]] * m], exact=False)[0][: len(solo[0])]
        margins.append(
            {
                "margin_codes": m,
                "max_abs": float(np.abs(ctx - solo[0]).max()),
                "rel_rms": _rel_rms(ctx, solo[0]),
            }
        )
        print(
            f"  {len(short)}-code clip + {m} codes of right context, trimmed: max |diff| "
            f"{margins[-1]['max_abs']:.3g}, relative RMS {margins[-1]['rel_rms']:.3g}"
        )
    report["margins"] = margins
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
