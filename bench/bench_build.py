"""Benchmark of `stylegrpo build`: speed against a pyarrow-only floor, and memory as the corpus grows.

    python bench/bench_build.py                 # 1,000,000 lines (and a quarter of it for the memory check)
    python bench/bench_build.py --lines 100000  # smaller

It writes a synthetic corpus (sentences of 3-30 words, with a few percent of duplicates, URLs, markup,
numbers and curly quotes so every cleaning rule has work to do), then, each in its own process:
  build  the real builder (balanced pairing, default cleaning, 10% test split) on N/4 and N lines;
  floor  the same file read with pyarrow's CSV reader and the same number of rows written to parquet
         with pyarrow alone (the least any builder has to do).
  output floor  the corpus read the same way and the builder's own output tables (six columns with the
         rendered prompt) written with the same writer settings: the least any tool producing these files
         spends. The target is build <= 2x the output floor, measured over --repeats runs (min/median).
The build's time includes its one fixed start-up, also printed apart (numba's registries, built on the
first call of a compiled function; ~0.3 s of CPU per process), and the ratio is printed with and without
it; imports (pyarrow for the floor; numba, pandas, datasets for the build) are before the clock.
It prints sentences per second, build time / floor time, and each run's peak resident memory
(ru_maxrss of the process): with streaming, the peak should barely move from N/4 to N lines.
``--non-ascii-share 0.4`` gives 40 % of the lines accented words and curly quotes (non-ASCII text takes
the builder's Unicode path: NFKC and the replacement and counting passes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LINES = 1_000_000  # the size the issue asks about
SEED = 1234  # the synthetic corpus is the same on every run
TARGET_RATIO = 2.0  # build time / output-floor time the builder should stay within (issue 12)
NOISE = {  # share of lines of each kind of junk, so the filters are exercised like on a web corpus
    "duplicate": 0.03,
    "url": 0.01,
    "markup": 0.01,
    "digits": 0.01,
    "curly": 0.02,
}


NON_ASCII_WORDS = ("café", "naïve", "résumé", "über", "señor", "façade", "jalapeño", "Zoë", "déjà", "São")


def make_corpus(path: Path, lines: int, non_ascii_share: float = 0.0) -> None:
    """Write ``lines`` synthetic sentences built from the words of the embedded corpus; a share
    ``non_ascii_share`` of them also get accented words and curly quotes/apostrophes (as edited prose has)."""
    words = sorted(
        {w.strip(".,!?;:'\"").lower() for w in (REPO / "data_builder/corpus/default.txt").read_text().split()}
    )
    words = np.array([w for w in words if w.isalpha()])
    rng = np.random.default_rng(SEED)
    lengths = rng.integers(3, 31, size=lines)
    picks = rng.integers(0, len(words), size=int(lengths.sum()))
    kinds = rng.random(lines)
    accented = np.random.default_rng(SEED + 1).random(lines) < non_ascii_share  # own stream: same base text
    ends = np.array([".", "!", "?", "."])[rng.integers(0, 4, size=lines)]
    out: list[str] = []
    pos = 0
    edges = np.cumsum(list(NOISE.values()))
    for i in range(lines):
        n = int(lengths[i])
        s = " ".join(words[picks[pos : pos + n]])
        pos += n
        s = s[0].upper() + s[1:] + ends[i]
        k = kinds[i]
        if k < edges[0] and out:
            s = out[int(rng.integers(0, len(out)))]
        elif k < edges[1]:
            s = f"See https://example.org/page{i} for {s}"
        elif k < edges[2]:
            s = f"<p>{s}</p>"
        elif k < edges[3]:
            s = f"{i} {i * 7 % 1000}/{i % 12 + 1} = {i / 3:.2f}"
        elif k < edges[4]:
            s = f"\u201c{s}\u201d \u2014 she said."
        if accented[i]:  # an accented word in the middle, and curly quotes or an apostrophe
            cut = s.find(" ") + 1
            word = NON_ASCII_WORDS[i % len(NON_ASCII_WORDS)]
            s = s[:cut] + word + " " + s[cut:]
            s = f"\u201c{s}\u201d" if i % 2 else s.replace(" ", " it\u2019s ", 1)
        out.append(s)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def _maxrss_mb() -> float:
    """Peak resident memory of this process. Linux: VmHWM (ru_maxrss would include the parent's at fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_build(corpus: Path, out: Path) -> dict:
    # Libraries the builder imports lazily, imported before the clock starts as the floor's pyarrow is: a
    # fixed ~0.5 s of CPU per process (pandas for hashing fallbacks, datasets for the card's metadata, numba
    # for the compiled loops; their compilation is cached on disk), not a cost that grows with the corpus.
    import datasets  # noqa: F401
    import numba  # noqa: F401
    import pandas  # noqa: F401

    from stylegrpo.data_builder import BuildConfig, build_dataset
    from stylegrpo.data_builder.kernels import kernels

    base = _maxrss_mb()
    t, cpu = time.perf_counter(), _cpu_s()
    # The builder's one fixed start-up cost, timed apart: the first call of a numba function builds numba's
    # registries (the rest of its import, deferred; it imports scipy, whose OpenBLAS threads spin ~0.1 s).
    kernels()
    startup_s, startup_cpu = time.perf_counter() - t, _cpu_s() - cpu
    t, cpu = time.perf_counter(), _cpu_s()
    result = build_dataset(BuildConfig(out=out, corpora=[str(corpus)], progress=False))
    seconds = time.perf_counter() - t + startup_s
    return {  # seconds and cpu_s include the start-up
        "seconds": seconds,
        "cpu_s": _cpu_s() - cpu + startup_cpu,
        "startup_s": startup_s,
        "startup_cpu_s": startup_cpu,
        "records": result.records,
        "texts": sum(s.texts for s in result.splits.values()),
        "rows": sum(result.rows.values()),
        "drops": dict(result.drops),
        "rss_before_mb": base,
        "peak_rss_mb": _maxrss_mb(),
    }


def child_floor(corpus: Path, out: Path, rows: int, built: Path | None = None) -> dict:
    """Read the file with pyarrow and write ``rows`` rows to parquet with pyarrow: nothing else.

    Without ``built``: the rows are the raw lines (the floor the issue names). With ``built``: the rows are
    the builder's own output tables (read before the clock starts), written with the same writer settings:
    the least any tool producing these files has to spend.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from stylegrpo.data_builder import writer as w

    tables = [pq.read_table(f) for f in sorted((built / w.DATA_DIR).glob("*.parquet"))] if built else []
    base = _maxrss_mb()
    t, cpu = time.perf_counter(), _cpu_s()
    reader = pcsv.open_csv(
        corpus,
        read_options=pcsv.ReadOptions(column_names=["text"], block_size=4 << 20),
        parse_options=pcsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False),
        convert_options=pcsv.ConvertOptions(column_types={"text": pa.string()}),
    )
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    if built:
        for _ in reader:
            pass
        for i, table in enumerate(tables):
            with pq.ParquetWriter(
                out / f"{i}.parquet",
                w.SCHEMA,
                compression=w.COMPRESSION,
                use_dictionary=w.DICTIONARY_COLUMNS,
                write_statistics=w.STATISTICS_COLUMNS,
            ) as writer:
                writer.write_table(table, row_group_size=w.ROW_GROUP_ROWS)
            written += table.num_rows
    else:
        with pq.ParquetWriter(out / "floor.parquet", pa.schema([("text", pa.string())])) as writer:
            for batch in reader:
                batch = batch.slice(0, max(0, rows - written))
                if batch.num_rows:
                    writer.write_table(pa.Table.from_batches([batch]), row_group_size=w.ROW_GROUP_ROWS)
                    written += batch.num_rows
    return {
        "seconds": time.perf_counter() - t,
        "cpu_s": _cpu_s() - cpu,
        "rows": written,
        "rss_before_mb": base,
        "peak_rss_mb": _maxrss_mb(),
    }


def _less_startup(build: dict) -> float:
    """The build's CPU seconds without its fixed start-up (the part that grows with the corpus)."""
    return build["cpu_s"] - build["startup_cpu_s"]


def _run_child(*args: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode:
        sys.exit(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES, help="corpus size (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the corpora and outputs")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the full-size build (min/median)")
    parser.add_argument("--non-ascii-share", type=float, default=0.0,
                        help="share of lines with accents and curly quotes (e.g. 0.4; default %(default)s)")  # fmt: skip
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, corpus, out, *rest = args.child
        if kind == "build":
            result = child_build(Path(corpus), Path(out))
        else:
            result = child_floor(
                Path(corpus), Path(out), int(rest[0]), Path(rest[1]) if len(rest) > 1 else None
            )
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        sizes = sorted({max(1, args.lines // 4), args.lines})
        big = tmp / f"corpus_{args.lines}.txt"
        t = time.perf_counter()
        make_corpus(big, args.lines, args.non_ascii_share)
        print(
            f"corpus: {args.lines} lines ({100 * args.non_ascii_share:.0f} % with accents/curly quotes), "
            f"{big.stat().st_size / 1e6:.1f} MB, generated in {time.perf_counter() - t:.1f} s\n"
            f"target: build within {TARGET_RATIO:g}x the output floor (pyarrow reading the corpus and writing the "
            "same output tables), on ASCII and non-ASCII-heavy corpora alike, with flat memory"
        )
        rows_out = []
        for n in sizes:
            corpus = big
            if n != args.lines:
                corpus = tmp / f"corpus_{n}.txt"
                with open(big, encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as g:
                    for i, line in enumerate(f):
                        if i >= n:
                            break
                        g.write(line)
            build = _run_child("build", str(corpus), str(tmp / f"out_{n}"))
            floor = _run_child("floor", str(corpus), str(tmp / f"floor_{n}"), str(build["rows"]))
            io_floor = _run_child("floor", str(corpus), str(tmp / f"io_{n}"), "0", str(tmp / f"out_{n}"))
            rows_out.append((n, build, floor))
            print(
                f"{n:>9} lines: build {build['seconds']:.2f} s wall, {build['cpu_s']:.2f} s CPU = "
                f"{n / build['seconds']:,.0f} sentences/s ({build['rows']} rows, {build['texts']} texts kept); "
                f"of it the start-up {build['startup_s']:.2f} s wall, {build['startup_cpu_s']:.2f} s CPU\n"
                f"{'':>17}floor (pyarrow: read + write the text of as many rows) {floor['seconds']:.2f} s wall, "
                f"{floor['cpu_s']:.2f} s CPU -> build/floor {build['seconds'] / floor['seconds']:.1f}x wall, "
                f"{build['cpu_s'] / floor['cpu_s']:.1f}x CPU\n"
                f"{'':>17}output floor (pyarrow: read + write the same output tables) {io_floor['seconds']:.2f} s wall, "
                f"{io_floor['cpu_s']:.2f} s CPU -> build/output floor {build['seconds'] / io_floor['seconds']:.1f}x wall, "
                f"{build['cpu_s'] / io_floor['cpu_s']:.1f}x CPU "
                f"({_less_startup(build) / io_floor['cpu_s']:.1f}x CPU without the start-up)\n"
                f"{'':>17}peak RSS: build {build['peak_rss_mb']:.0f} MB (after imports {build['rss_before_mb']:.0f} MB), "
                f"floor {floor['peak_rss_mb']:.0f} MB"
            )
            if n == args.lines and args.repeats > 1:  # more runs of the full size: ratios of each run
                ratios = {
                    "wall": [build["seconds"] / io_floor["seconds"]],
                    "CPU": [build["cpu_s"] / io_floor["cpu_s"]],
                    "CPU without the start-up": [_less_startup(build) / io_floor["cpu_s"]],
                }
                for _ in range(args.repeats - 1):
                    again = _run_child("build", str(corpus), str(tmp / f"out_{n}_again"))
                    io_again = _run_child(
                        "floor", str(corpus), str(tmp / f"io_{n}_again"), "0", str(tmp / f"out_{n}")
                    )
                    ratios["wall"].append(again["seconds"] / io_again["seconds"])
                    ratios["CPU"].append(again["cpu_s"] / io_again["cpu_s"])
                    ratios["CPU without the start-up"].append(_less_startup(again) / io_again["cpu_s"])
                    shutil.rmtree(tmp / f"out_{n}_again", ignore_errors=True)
                    shutil.rmtree(tmp / f"io_{n}_again", ignore_errors=True)
                summary = ", ".join(
                    f"{k} {min(v):.2f}x / {statistics.median(v):.2f}x" for k, v in ratios.items()
                )
                print(f"{'':>17}build/output floor over {args.repeats} runs (min / median): {summary} "
                      f"(target <= {TARGET_RATIO:g}x)")  # fmt: skip
        print(f"dropped ({sizes[-1]} lines): {rows_out[-1][1]['drops']}")
        if len(rows_out) == 2:
            (n0, b0, _), (n1, b1, _) = rows_out
            table_mb = 16 * 2 ** int(np.ceil(np.log2(max(2 * b1["texts"], 1)))) / 2 / 1e6
            print(
                f"memory: peak RSS {b0['peak_rss_mb']:.0f} MB at {n0} lines, {b1['peak_rss_mb']:.0f} MB at {n1} lines "
                f"({b1['peak_rss_mb'] - b0['peak_rss_mb']:+.0f} MB for {n1 / n0:.0f}x the lines; of it, the "
                f"de-duplication table is ~{table_mb:.0f} MB at {n1} lines: 8-16 bytes per distinct text)"
            )


if __name__ == "__main__":
    main()
