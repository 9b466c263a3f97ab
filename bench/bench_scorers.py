"""Time every judge on a batch of clips: batched vs one clip at a time, and peak memory.

    python bench/bench_scorers.py                          # tiny twins on CPU, 64 espeak clips of 4-8 s
    python bench/bench_scorers.py --real-architectures --device cuda   # full-size real configs, random
                                                           # weights (no download), for a GPU machine

Tiny twins measure the plumbing (feature extraction, padding, batching), not the cost of the real
networks; ``--real-architectures`` builds each real judge's configuration at full size (CLAP
larger_clap_general, Parakeet CTC 1.1B, Whisper large-v3-turbo) with random weights, saves it once into
``--workdir`` and loads it through the same code as a downloaded checkpoint. The acoustic measures are
model-free, so their CPU numbers are the real ones. With the acoustic judge, a pYIN section compares
librosa.pyin with stylegrpo.scorers.pyin (CPU ms per second of audio, frames identical) at 0.25 and 0.1
semitones, the acoustic judge old vs new, and the pitch of espeak-ng's lowest voices. ``--threads``
(default 1) pins torch and BLAS threads so that figures on a shared machine are comparable.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stylegrpo.audio import SAMPLE_RATE, read_wav

SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her on Wednesday.",
    "The old lighthouse keeper watched the storm roll in across the grey and restless sea.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "A gentle breeze carried the smell of fresh bread through the narrow streets of the town.",
)
DESCRIPTIONS = (
    "a man whispering",
    "a man shouting loudly",
    "a calm narrator speaking slowly",
    "a sad person",
)


def make_clips(
    n: int, min_s: float, max_s: float, seed: int, source: str
) -> tuple[list[np.ndarray], list[str]]:
    """n clips of min_s..max_s seconds with their texts: espeak-ng speech, or synthetic voiced sound."""
    rng = np.random.default_rng(seed)
    espeak = shutil.which("espeak-ng")
    if source == "espeak" and espeak is None:
        logging.warning("espeak-ng not found: using synthetic clips")
        source = "synthetic"
    wavs, texts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            target = rng.uniform(min_s, max_s)
            text = SENTENCES[i % len(SENTENCES)]
            if source == "espeak":
                rate = int(rng.integers(140, 210))  # words per minute, around espeak's default 175
                pitch = int(rng.integers(20, 80))
                while True:
                    path = Path(tmp) / f"{i}.wav"
                    subprocess.run(
                        [espeak, "-w", str(path), "-s", str(rate), "-p", str(pitch), text],
                        check=True,
                        timeout=60,
                    )
                    wav = read_wav(path)
                    if len(wav) >= target * SAMPLE_RATE:
                        break
                    text = text + " " + SENTENCES[(i + len(text)) % len(SENTENCES)]
                wav = wav[: int(target * SAMPLE_RATE)]
            else:
                t = np.arange(int(target * SAMPLE_RATE)) / SAMPLE_RATE
                f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
                phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
                voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
                envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t))  # ~4 syllables per second
                wav = (0.1 * voiced * envelope + 0.005 * rng.standard_normal(t.size)).astype(np.float32)
            wavs.append(wav.astype(np.float32))
            texts.append(text)
    return wavs, texts


def build_real_architectures(workdir: Path) -> dict[str, str]:
    """Full-size real judge configs (stylegrpo.architectures) with random weights, saved once (no download)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.real_models import save_real_models

    kinds = ("clap", "asr", "whisper", "ast")
    folder = workdir / "real-judges"
    if not (folder / ".complete").exists():
        logging.info("building full-size judges with random weights in %s", folder)
        shutil.rmtree(folder, ignore_errors=True)
        save_real_models(folder, "full", kinds=kinds)
        (folder / ".complete").write_text("random weights\n")
    return {kind: str(folder / kind) for kind in kinds}


class Peak:
    """Peak memory while a judge runs: CUDA allocator peak, or the growth of the process's peak RSS."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.mib = torch.cuda.max_memory_allocated() / 2**20
        else:  # ru_maxrss is in KiB on Linux and never goes down: report this judge's growth of it
            self.mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.rss0) / 1024
        return False


def timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - t


def bench_quality(wavs: list[np.ndarray], args: argparse.Namespace) -> list[dict]:
    """DNSMOS (real weights in every mode): the reference speechmos loop (one 9 s window per ONNX run, P.808
    always) against QualityScorer at one window per run and at --batch-size windows per run (P.835 only).
    The 'one-by-one s' column is the reference's time; ratio = reference / this row."""
    from speechmos import dnsmos

    from stylegrpo.scorers.quality import QualityScorer

    dnsmos.run(np.clip(wavs[0], -1, 1), SAMPLE_RATE)  # the reference's session creation, not timed
    ref = timed(lambda: [dnsmos.run(np.clip(w, -1, 1), SAMPLE_RATE) for w in wavs], "cpu")
    rows = [dict(judge="dnsmos reference (speechmos loop)", load_s=0.0, batched_s=ref, single_s=ref, ratio=1.0,
                 peak_mib=0.0, clips_per_s=len(wavs) / ref)]  # fmt: skip
    for windows in sorted({1, args.batch_size}):
        scorer = QualityScorer(device=args.device, batch_size=windows)
        load = timed(scorer._ensure_loaded, args.device)
        scorer.scores(wavs[:2])  # warm-up (arena allocation for this batch shape)
        with Peak(args.device) as peak:
            batched = timed(lambda s=scorer: s.scores(wavs), args.device)
        rows.append(dict(judge=f"dnsmos P.835, {windows} window(s)/run", load_s=load, batched_s=batched,
                         single_s=ref, ratio=ref / batched, peak_mib=peak.mib,
                         clips_per_s=len(wavs) / batched))  # fmt: skip
    return rows


PITCH_RESOLUTIONS = (0.25, 0.1)  # semitones: the default grid and the finer one the issue weighs against it
LOW_VOICES = {  # espeak-ng's lowest voices, where a coarse pitch grid shows (pitch median vs librosa)
    "-p 0 (lowest pitch)": ["-p", "0"],
    "en+m3 -p 0": ["-v", "en+m3", "-p", "0"],
    "-s 400 -p 0 (fast, low)": ["-s", "400", "-p", "0"],
}


def min_median(fn, repeats: int) -> tuple[float, float]:
    """CPU seconds of this process (one thread: one core's time, less disturbed by a busy machine)."""
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    times.sort()
    return times[0], times[len(times) // 2]


def bench_pitch(wavs: list[np.ndarray], texts: list[str], repeats: int, librosa_clips: int) -> dict:
    """pYIN: librosa.pyin against stylegrpo.scorers.pyin (time per clip-second, frame agreement) at each
    of PITCH_RESOLUTIONS, the acoustic judge with each, and the pitch of espeak-ng's lowest voices."""
    import math

    import librosa

    from stylegrpo.scorers import acoustic
    from stylegrpo.scorers import pyin as pyin_module

    def settings(resolution: float) -> dict:  # what acoustic._voiced_f0 passes
        return dict(fmin=acoustic.FMIN_HZ, fmax=acoustic.FMAX_HZ, sr=SAMPLE_RATE, hop_length=round(acoustic.HOP_S * SAMPLE_RATE),
                    frame_length=int(2 ** math.ceil(math.log2(acoustic.PITCH_FRAME_S * SAMPLE_RATE))),
                    resolution=resolution, center=True)  # fmt: skip

    def seconds(ws):
        return sum(len(w) for w in ws) / SAMPLE_RATE

    out: dict = {"repeats": repeats, "resolutions": []}
    for res in PITCH_RESOLUTIONS:
        kw = settings(res)
        ref_wavs = (
            wavs if res == acoustic.PITCH_RESOLUTION else wavs[:librosa_clips]
        )  # librosa is slow at 0.1
        pyin_module.pyin(wavs[0][:SAMPLE_RATE], **kw)  # compile / warm
        librosa.pyin(wavs[0][:SAMPLE_RATE], **kw)
        new = min_median(lambda kw=kw: [pyin_module.pyin(w, **kw) for w in wavs], repeats)
        old = min_median(lambda kw=kw, ws=ref_wavs: [librosa.pyin(w, **kw) for w in ws], repeats)
        same = total = 0
        for w in ref_wavs:
            (f, v, _), (f_ref, v_ref, _) = pyin_module.pyin(w, **kw), librosa.pyin(w, **kw)
            same += int(np.sum((v == v_ref) & ((f == f_ref) | (np.isnan(f) & np.isnan(f_ref)))))
            total += v.size
        row = dict(resolution=res, default=res == acoustic.PITCH_RESOLUTION,
                   new_ms_per_s=[1000 * t / seconds(wavs) for t in new],
                   librosa_ms_per_s=[1000 * t / seconds(ref_wavs) for t in old],
                   librosa_clips=len(ref_wavs), frames_identical=same / total, frames=total)  # fmt: skip
        out["resolutions"].append(row)

    # the acoustic judge itself (1 process), old (librosa.pyin inside) vs new
    acoustic.measure(wavs[0][:SAMPLE_RATE], "warm up")
    new = min_median(lambda: acoustic.measure_batch(wavs, texts), repeats)
    new_measures = acoustic.measure_batch(wavs, texts)
    original = pyin_module.pyin
    pyin_module.pyin = librosa.pyin  # acoustic imports it at call time: this is the judge before the rewrite
    try:
        old = min_median(lambda: acoustic.measure_batch(wavs, texts), repeats)
        old_measures = acoustic.measure_batch(wavs, texts)
    finally:
        pyin_module.pyin = original
    equal = sum(
        all(
            a == b or (a != a and b != b)
            for a, b in zip(m.as_dict().values(), r.as_dict().values(), strict=True)
        )
        for m, r in zip(new_measures, old_measures, strict=True)
    )
    out["acoustic_judge"] = dict(new_ms_per_s=[1000 * t / seconds(wavs) for t in new],
                                 old_ms_per_s=[1000 * t / seconds(wavs) for t in old],
                                 clips_identical=equal, clips=len(wavs))  # fmt: skip

    espeak = shutil.which("espeak-ng")
    out["low_voices"] = []
    if espeak:
        with tempfile.TemporaryDirectory() as tmp:
            for name, flags in LOW_VOICES.items():
                path = Path(tmp) / "low.wav"
                subprocess.run(
                    [espeak, "-w", str(path), *flags, SENTENCES[0] + " " + SENTENCES[1]],
                    check=True,
                    timeout=60,
                )
                wav = read_wav(path)
                row = {"voice": name}
                for res in PITCH_RESOLUTIONS:
                    for tag, fn in (("new", pyin_module.pyin), ("librosa", librosa.pyin)):
                        f, v, _ = fn(wav, **settings(res))
                        row[f"{tag}_{res:g}"] = (
                            float(np.median(f[v])) if v.any() else float("nan"),
                            int(v.sum()),
                        )
                out["low_voices"].append(row)
    return out


def print_pitch(p: dict) -> None:
    def mm(v):
        return f"{v[0]:6.2f} / {v[1]:6.2f}"

    print(f"\npYIN, CPU ms (one thread) per second of audio, min / median of {p['repeats']} runs in this run")
    print(
        f"{'resolution':>12s} {'new (scorers.pyin)':>20s} {'librosa.pyin':>16s} {'ratio':>6s} {'frames identical':>17s}"
    )
    for r in p["resolutions"]:
        tag = f"{r['resolution']:g} st" + (" *" if r["default"] else "")
        print(f"{tag:>12s} {mm(r['new_ms_per_s']):>20s} {mm(r['librosa_ms_per_s']):>16s} "
              f"{r['librosa_ms_per_s'][0] / r['new_ms_per_s'][0]:5.1f}x "
              f"{100 * r['frames_identical']:8.2f} % of {r['frames']}")  # fmt: skip
    print("(* the acoustic judge's resolution; librosa timed on its first", p["resolutions"][-1]["librosa_clips"],
          "clips at the finer grid)")  # fmt: skip
    a = p["acoustic_judge"]
    print(f"acoustic judge (1 process), ms per clip-second: new {mm(a['new_ms_per_s'])}, old (librosa.pyin) "
          f"{mm(a['old_ms_per_s'])}, {a['old_ms_per_s'][0] / a['new_ms_per_s'][0]:.1f}x; "
          f"measures identical on {a['clips_identical']}/{a['clips']} clips")  # fmt: skip
    if p["low_voices"]:
        print("espeak-ng low voices: median F0 Hz (voiced frames), new vs librosa, per resolution")
        for r in p["low_voices"]:
            cells = [f"{k}: {v[0]:.1f} ({v[1]})" for k, v in r.items() if k != "voice"]
            print(f"  {r['voice']:26s} " + ", ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=64, help="clips per batch (a GRPO step's completions)")
    parser.add_argument("--min-s", type=float, default=4.0, help="shortest clip, seconds")
    parser.add_argument("--max-s", type=float, default=8.0, help="longest clip, seconds")
    parser.add_argument(
        "--source",
        choices=["espeak", "synthetic"],
        default="espeak",
        help="real speech if espeak-ng is there",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=16, help="the judges' batch_size")
    parser.add_argument("--single", type=int, default=None, help="clips scored one at a time (default: all)")
    parser.add_argument(
        "--judges", default="clap,asr,whisper,ast,acoustic,quality", help="comma-separated subset"
    )
    parser.add_argument(
        "--real-architectures", action="store_true", help="full-size real configs, random weights"
    )
    parser.add_argument("--workdir", default=None, help="where full-size random checkpoints are kept")
    parser.add_argument("--acoustic-workers", type=int, default=os.cpu_count() or 1,
                        help="also time the acoustic measures with this many processes")  # fmt: skip
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/BLAS threads (default 1: comparable figures on a shared machine)")  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each pitch timing (min/median printed)"
    )
    parser.add_argument("--librosa-clips", type=int, default=8,
                        help="clips librosa.pyin is timed on at the finer pitch grid (it is slow there)")  # fmt: skip
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.threads import pin_threads

    print(pin_threads(args.threads))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("transformers", "httpx", "nemo_logger"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from stylegrpo.scorers import AsrScorer, ClapScorer, WhisperNllScorer, measure, measure_batch
    from stylegrpo.scorers.ast_classifier import AstScorer

    wavs, texts = make_clips(args.clips, args.min_s, args.max_s, seed=0, source=args.source)
    descs = [DESCRIPTIONS[i % len(DESCRIPTIONS)] for i in range(len(wavs))]
    audio_s = sum(len(w) for w in wavs) / SAMPLE_RATE
    n_single = len(wavs) if args.single is None else min(args.single, len(wavs))
    print(
        f"{len(wavs)} clips ({args.source}), {audio_s:.0f} s of audio, device {args.device}, batch {args.batch_size}"
    )

    if args.real_architectures:
        workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "stylegrpo-bench-real")
        workdir.mkdir(parents=True, exist_ok=True)
        specs = build_real_architectures(workdir)
        label = "full-size random"
    else:
        specs = {"clap": "tiny:clap", "asr": "tiny:parakeet", "whisper": "tiny:whisper", "ast": "tiny:ast"}
        label = "tiny twins"
    kw = dict(device=args.device, batch_size=args.batch_size)
    judges = {
        "clap similarity": (
            lambda: ClapScorer(specs["clap"], **kw),
            lambda s, w, i: s.similarity(w, [descs[j] for j in i]),
        ),
        "asr error_rates": (
            lambda: AsrScorer(specs["asr"], **kw),
            lambda s, w, i: s.error_rates(w, [texts[j] for j in i]),
        ),
        "whisper nll": (
            lambda: WhisperNllScorer(specs["whisper"], **kw),
            lambda s, w, i: s.nll(w, [texts[j] for j in i]),
        ),
        "ast label_probabilities": (
            lambda: AstScorer(specs["ast"], **kw),
            lambda s, w, i: s.label_probabilities(w),
        ),
    }
    wanted = {j.strip() for j in args.judges.split(",")}
    results = []
    for name, (make, call) in judges.items():
        if name.split()[0] not in wanted:
            continue
        scorer = make()
        load = timed(lambda s=scorer: s._ensure_loaded(), args.device)
        call(scorer, wavs[:2], list(range(len(wavs[:2]))))  # warm-up (kernels, caches)
        with Peak(args.device) as peak:
            batched = timed(lambda s=scorer, c=call: c(s, wavs, range(len(wavs))), args.device)
        single = timed(lambda s=scorer, c=call: [c(s, [wavs[j]], [j]) for j in range(n_single)], args.device)
        single_all = single * len(wavs) / n_single
        results.append(dict(judge=name, load_s=load, batched_s=batched, single_s=single_all,
                            ratio=single_all / batched, peak_mib=peak.mib, clips_per_s=len(wavs) / batched))  # fmt: skip
        del scorer
        gc.collect()
    if "quality" in wanted:
        results += bench_quality(wavs, args)
    if "acoustic" in wanted:
        measure(wavs[0][:SAMPLE_RATE], "warm up")  # numba compilation of pyin's kernels, once per process
        for workers in sorted({1, max(1, args.acoustic_workers)}):
            if workers > 1:
                measure_batch(wavs[:workers], texts[:workers], workers=workers)  # start the pool once
            with Peak("cpu") as peak:
                batched = timed(lambda n=workers: measure_batch(wavs, texts, workers=n), "cpu")
            results.append(dict(judge=f"acoustic measures (CPU, {workers} proc)", load_s=0.0, batched_s=batched,
                                single_s=batched, ratio=1.0, peak_mib=peak.mib, clips_per_s=len(wavs) / batched))  # fmt: skip
    mem = "peak GPU MiB" if args.device.startswith("cuda") else "peak RSS growth MiB"
    print(f"\n{label}: {len(wavs)} clips of {args.min_s:g}-{args.max_s:g} s ({audio_s:.0f} s audio)")
    print(
        f"{'judge':34s} {'load s':>7s} {'batched s':>10s} {'one-by-one s':>13s} {'ratio':>6s} {'clips/s':>8s} {mem:>20s}"
    )
    for r in results:
        print(f"{r['judge']:34s} {r['load_s']:7.2f} {r['batched_s']:10.2f} {r['single_s']:13.2f} "
              f"{r['ratio']:6.2f} {r['clips_per_s']:8.1f} {r['peak_mib']:20.0f}")  # fmt: skip
    if n_single < len(wavs):
        print(f"(one-by-one time extrapolated from {n_single} clips)")
    pitch = bench_pitch(wavs, texts, args.repeats, args.librosa_clips) if "acoustic" in wanted else None
    if pitch:
        print_pitch(pitch)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(label=label, device=args.device, clips=len(wavs), audio_s=audio_s,
                                                   threads=args.threads, results=results, pitch=pitch), indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
