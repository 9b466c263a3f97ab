"""Corpora + style catalog -> prompt dataset (parquet train/test splits and a dataset card), streaming."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from stylegrpo.errors import StyleGRPOError
from stylegrpo.outputs import MARK_NAME, atomic_output_dir, check_output_dir
from stylegrpo.speech_time import slowest_rates, speech_seconds
from stylegrpo.styles import Catalog, Style, load_catalog

from . import card, cleaning, pairing, writer
from . import speakers as speakers_mod
from .cleaning import CODE_REASON, DUPLICATE, KEEP, TOO_LONG_TO_SPEAK, CleanOptions, HashSet64
from .corpora import (
    HF_PREFIX,
    RawBatch,
    Reader,
    ReadOptions,
    SourceReport,
    default_corpus_path,
    resolve_sources,
)
from .prompts import PromptRenderer
from .stats import SplitStats
from .writer import BackgroundWrites, SplitWriter, make_table

log = logging.getLogger(__name__)

DEFAULT_TEST_SIZE = 0.1  # a tenth of the texts held out: enough for per-style eval, little lost for training
DEFAULT_SEED = 0  # same inputs + same seed = byte-identical parquet files
EXAMPLES_PER_REASON = 3  # dropped lines quoted in the card per reason, to show what a rule caught
EXAMPLE_CHARS = 100  # quoted examples are cut to this many characters
READER_REASONS = ("undecodable", "unparsable", "no_text")  # dropped while reading, before cleaning
CLEAN_WORKERS = min(4, os.cpu_count() or 1)  # batches cleaned in parallel (Arrow and numpy release the GIL)


@dataclass
class BuildConfig:
    out: Path
    corpora: list[str] = field(default_factory=list)  # empty: the embedded default corpus
    styles: str | None = None  # catalog file; None: the default lookup of load_catalog
    styles_subset: list[str] | None = None  # None: every style of the catalog
    pairing: str = "balanced"  # one style per text, styles equally represented
    test_pairing: str | None = None  # None: same as pairing
    test_size: float | int = DEFAULT_TEST_SIZE
    seed: int = DEFAULT_SEED
    clean: CleanOptions = field(default_factory=CleanOptions)
    read: ReadOptions = field(default_factory=ReadOptions)
    max_texts: int | None = None  # stop after this many kept texts (e.g. to sample a large hub dataset)
    max_seconds: float | None = None  # drop texts the slowest selected style cannot speak in this time
    overwrite: bool = False
    command: str | None = None  # the command line, recorded in the card
    progress: bool | None = None  # tqdm: None = only on a terminal
    speakers: str | None = None  # folder of reference clips + metadata.csv (data_builder/speakers.py)
    test_speakers: float = speakers_mod.DEFAULT_TEST_SPEAKERS  # share of speakers held out for test only
    codec: str | None = None  # codec that encodes the references (None: the default preset's XCodec2)
    device: str = "auto"  # where the codec encodes (auto: a CUDA GPU when there is one)


@dataclass
class BuildResult:
    out: Path
    splits: dict[str, SplitStats]
    drops: Counter
    sources: list[SourceReport]
    records: int
    styles: list[str]
    seconds: float
    examples: dict[str, list[str]]

    @property
    def rows(self) -> dict[str, int]:
        return {k: v.rows for k, v in self.splits.items()}

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"wrote {self.out}: "
            + ", ".join(f"{k} {s.rows} rows ({s.texts} texts)" for k, s in self.splits.items())
        ]
        kept = sum(s.texts for s in self.splits.values())
        unusable = sum(self.drops.get(r, 0) for r in READER_REASONS)
        lines.append(
            f"read {self.records + unusable} records from {len(self.sources)} source(s) in {self.seconds:.1f} s; "
            f"kept {kept} distinct texts"
        )
        if self.drops:
            lines.append("dropped: " + ", ".join(f"{r} {n}" for r, n in self.drops.most_common()))
        for k, s in self.splits.items():
            per_style = ", ".join(
                f"{name} {n}" for name, n in zip(s.styles, s.style_rows.tolist(), strict=True)
            )
            lines.append(f"{k} rows per style: {per_style}")
        return "\n".join(lines)


def select_styles(catalog: Catalog, subset: Iterable[str] | None) -> list[Style]:
    """The catalog's styles, or the named subset in catalog order (unknown names list the known ones)."""
    if subset is None:
        return list(catalog.styles)
    names = [n.strip() for n in subset if n.strip()]
    if not names:
        raise StyleGRPOError(f"--styles-subset is empty; known styles: {', '.join(catalog.names)}")
    wanted = {catalog.get(n).name for n in names}  # raises UnknownStyleError listing the known styles
    return [s for s in catalog.styles if s.name in wanted]


def _with_last(it: Iterable) -> Iterator[tuple]:
    it = iter(it)
    prev = next(it, None)
    while prev is not None:
        nxt = next(it, None)
        yield prev, nxt is None
        prev = nxt


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """``map(fn, items)`` on a thread pool, in order, with at most ``workers + 1`` items in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clean") as pool:
        futures: deque = deque()
        try:
            for item in items:
                futures.append(pool.submit(fn, item))
                if len(futures) > workers:
                    yield futures.popleft().result()
            while futures:
                yield futures.popleft().result()
        finally:
            for f in futures:
                f.cancel()


@dataclass
class _Cleaned:
    """A raw batch after normalization and filtering; ``ok`` rows passed, with their text hashes."""

    batch: RawBatch
    texts: pa.Array
    codes: np.ndarray
    stats: cleaning.TextStats
    ok: np.ndarray
    hashes: np.ndarray


def _clean_batch(batch: RawBatch, options: CleanOptions) -> _Cleaned:
    texts, stats = cleaning.normalize_measure(batch.texts)  # normalized and counted in one pass
    codes, stats = cleaning.filter_codes(texts, options, stats)
    ok = np.flatnonzero(codes == KEEP)
    hashes = cleaning.text_hashes(texts, ok)  # the kept rows', in place
    return _Cleaned(batch, texts, codes, stats, ok, hashes)


@dataclass
class _Kept:
    """Parallel columns of kept, distinct texts (one entry per text, before pairing)."""

    text: pa.Array
    line: np.ndarray
    src: np.ndarray
    chars: np.ndarray
    words: np.ndarray
    u: np.ndarray  # seeded hash: decides the split
    seq: np.ndarray  # order of arrival, to keep corpus order

    def take(self, idx: np.ndarray) -> _Kept:
        return _Kept(
            cleaning.take_strings(self.text, idx),
            *(getattr(self, f.name)[idx] for f in dataclasses.fields(self)[1:]),
        )

    @staticmethod
    def concat(parts: list[_Kept]) -> _Kept:
        parts = [p for p in parts if p is not None]
        return _Kept(
            pa.concat_arrays([p.text for p in parts]),
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(_Kept)[1:]),
        )

    def __len__(self) -> int:
        return len(self.line)


class _SplitSink:
    """Pairs one split's texts with styles, renders prompts and writes rows."""

    def __init__(
        self,
        split: str,
        folder: Path,
        mode: str,
        styles: list[Style],
        renderer: PromptRenderer,
        seed: int,
        labels: pa.Array,
        background: BackgroundWrites,
        references: speakers_mod.ReferencePairer | None = None,
    ):
        schema = writer.SCHEMA if references is None else writer.SPEAKER_SCHEMA
        self.writer = SplitWriter(folder, split, background=background, schema=schema)
        self.references = references
        self._identity = np.array([bool(getattr(s, "identity", False)) for s in styles], dtype=bool)
        self.reference_rows = 0
        self.pairer = pairing.Pairer(mode, [len(s.descriptions) for s in styles], seed, split)
        self.stats = SplitStats(split, [s.name for s in styles])
        self.renderer = renderer
        self.labels = labels
        self._style_names = pa.array([s.name for s in styles], pa.string())
        self._desc_offset = np.cumsum([0] + [len(s.descriptions) for s in styles])[:-1]
        self._desc_texts = pa.array(renderer.descriptions, pa.string())

    def add(self, kept: _Kept) -> None:
        """Pair, render and write; in slices, so cross pairing's rows per slice stay near a row group."""
        per_text = self.pairer.n_styles if self.pairer.mode == "cross" else 1
        step = max(1, writer.ROW_GROUP_ROWS // per_text)
        for start in range(0, len(kept), step):
            self._add(kept.take(np.arange(start, min(start + step, len(kept)))) if len(kept) > step else kept)

    def _add(self, kept: _Kept) -> None:
        if not len(kept):
            return
        self.stats.add_texts(kept.chars, kept.words)
        text_idx, style_idx, desc_local = self.pairer.pair(len(kept))
        desc_idx = self._desc_offset[style_idx] + desc_local
        texts = cleaning.take_strings(kept.text, text_idx) if len(text_idx) != len(kept) else kept.text
        ref_columns = None
        if self.references is not None:  # identity styles: -1 (no reference); others balanced over speakers
            ref_idx = self.references.assign(self._identity[style_idx])
            prompt = self.renderer.render(texts, desc_idx, ref_idx, self.references.prompt_references)
            ref_columns = self.references.columns(ref_idx)
            self.reference_rows += int((ref_idx >= 0).sum())
        else:
            prompt = self.renderer.render(texts, desc_idx)
        table = make_table(
            prompt,
            texts,
            cleaning.take_strings(self._style_names, style_idx),
            cleaning.take_strings(self._desc_texts, desc_idx),
            cleaning.take_strings(self.labels, kept.src[text_idx]),
            kept.line[text_idx],
            ref_columns,
        )
        self.writer.write(table)
        self.stats.add_rows(style_idx)

    def close(self) -> None:
        self.writer.close()


def build_inputs(config: BuildConfig, catalog: Catalog) -> list[tuple[str, str | None]]:
    """What this build reads, for the rule that its output is none of them (nor inside or around one)."""
    corpora = config.corpora or [str(default_corpus_path())]
    inputs: list[tuple[str, str | None]] = [("--corpus", c) for c in corpora if not c.startswith(HF_PREFIX)]
    inputs.append(("--styles", str(catalog.path) if catalog.path is not None else config.styles))
    if config.speakers:
        inputs.append(("--speakers", config.speakers))
    return inputs


def build_dataset(config: BuildConfig) -> BuildResult:
    """Read, clean, de-duplicate, split by text, pair with styles, write parquet + card atomically."""
    start = time.perf_counter()
    config.clean.validate()
    catalog = load_catalog(config.styles)
    styles = select_styles(catalog, config.styles_subset)
    test_size = pairing.parse_test_size(config.test_size)
    for mode in (config.pairing, config.test_pairing or config.pairing):
        if mode not in pairing.PAIRINGS:
            raise StyleGRPOError(f"unknown pairing {mode!r}; choose one of {', '.join(pairing.PAIRINGS)}")
    if config.max_texts is not None and config.max_texts < 1:
        raise StyleGRPOError("--max-texts must be at least 1")
    if config.max_seconds is not None and not config.max_seconds > 0:
        raise StyleGRPOError(f"--max-seconds must be above 0 (got {config.max_seconds})")
    inputs = build_inputs(config, catalog)
    check_output_dir(config.out, config.overwrite, inputs=inputs, option="--out")  # fail before reading
    references = _reference_pairers(config, test_size)  # encodes the clips: before anything is written
    if config.corpora:
        sources = resolve_sources(config.corpora)
    else:
        path = default_corpus_path()
        sources = [
            dataclasses.replace(s, label="default corpus (embedded)") for s in resolve_sources([str(path)])
        ]
    renderer = PromptRenderer(catalog.template, [d for s in styles for d in s.descriptions])

    from stylegrpo.console import progress_bar

    total_bytes = sum(s.size for s in sources)
    disable = None if config.progress is None else not config.progress
    with progress_bar(
        total=total_bytes or None, unit="B", unit_scale=True, desc="reading", disable=disable
    ) as bar:
        reader = Reader(sources, config.read, advance=bar.update)
        with atomic_output_dir(config.out, config.overwrite, command="build", inputs=inputs) as tmp:
            result = _build_into(tmp, config, styles, renderer, reader, test_size, references)
            card.write_card(tmp, config, catalog, result)
    result.out = Path(config.out)
    result.seconds = time.perf_counter() - start
    log.debug("built %s in %.1f s", config.out, result.seconds)  # the CLI prints the summary
    return result


def _reference_pairers(
    config: BuildConfig, test_size: float | int
) -> dict[str, speakers_mod.ReferencePairer]:
    """``--speakers``: the clips read and encoded once, the speakers split (held out for test), one pairer
    per split (data_builder/speakers.py has the rule). Empty without ``--speakers``."""
    if not config.speakers:
        return {}
    rows = speakers_mod.read_metadata(config.speakers)  # a bad folder fails before the codec loads
    from stylegrpo.codec import Codec
    from stylegrpo.presets import DEFAULT_PRESET, get_preset

    spec = config.codec or get_preset(DEFAULT_PRESET).codec
    clips = speakers_mod.load_speakers(  # every clip is checked before the codec loads
        config.speakers, lambda: Codec.load(spec, config.device, decode_only=False), rows
    )
    ids = [c.speaker_id for c in clips]
    held = config.test_speakers if test_size else 0.0  # no test split: nothing to hold out
    train, test = speakers_mod.split_speakers(ids, held, config.seed)
    log.info("reference speakers: %d for train, %d for test", len(train), len(test))
    out = {"train": speakers_mod.ReferencePairer(clips, train, config.seed, "train")}
    if test_size:
        out["test"] = speakers_mod.ReferencePairer(clips, test, config.seed, "test")
    return out


def _build_into(
    folder: Path,
    config: BuildConfig,
    styles: list[Style],
    renderer: PromptRenderer,
    reader: Reader,
    test_size: float | int,
    references: dict[str, speakers_mod.ReferencePairer] | None = None,
) -> BuildResult:
    references = references or {}
    labels = pa.array([s.label for s in reader.sources], pa.string())
    train_mode = config.pairing
    test_mode = config.test_pairing or config.pairing
    background = BackgroundWrites()
    sinks = {
        "train": _SplitSink(
            "train",
            folder,
            train_mode,
            styles,
            renderer,
            config.seed,
            labels,
            background,
            references.get("train"),
        )
    }
    if test_size:
        sinks["test"] = _SplitSink(
            "test",
            folder,
            test_mode,
            styles,
            renderer,
            config.seed,
            labels,
            background,
            references.get("test"),
        )
    try:
        return _stream(sinks, config, styles, reader, test_size)
    except BaseException:
        background.abort()
        for sink in sinks.values():
            sink.writer.abort()
        raise
    finally:
        background.shutdown()


def _stream(
    sinks: dict[str, _SplitSink],
    config: BuildConfig,
    styles: list[Style],
    reader: Reader,
    test_size: float | int,
) -> BuildResult:
    fraction = pairing.FractionSplitter(test_size) if isinstance(test_size, float) and test_size > 0 else None
    counter = pairing.CountSplitter(test_size) if isinstance(test_size, int) and test_size > 0 else None
    held: _Kept | None = None
    seen = HashSet64()
    examples: dict[str, list[str]] = {}
    records = 0
    n_kept = 0
    cleaned = _ordered_map(lambda b: _clean_batch(b, config.clean), reader, CLEAN_WORKERS)
    # --max-seconds: a text must be speakable in time by the slowest selected style (stylegrpo.speech_time,
    # the rule `train` applies to its max_completion_length)
    slowest = min(slowest_rates(styles).values()) if config.max_seconds is not None else None
    with contextlib.closing(cleaned):  # on an error or --max-texts, stop the cleaning threads now
        for c, last in _with_last(cleaned):
            batch, texts, codes = c.batch, c.texts, c.codes
            records += len(batch.texts)
            report = reader.reports[batch.source_index]
            fresh = seen.add(c.hashes)
            codes[c.ok[~fresh]] = DUPLICATE
            ok, hashes = c.ok[fresh], c.hashes[fresh]
            if slowest is not None and len(ok):
                seconds = np.array([speech_seconds(t, slowest) for t in texts.take(pa.array(ok)).to_pylist()])
                over = seconds > config.max_seconds
                codes[ok[over]] = TOO_LONG_TO_SPEAK
                ok, hashes = ok[~over], hashes[~over]
            if config.max_texts is not None and n_kept + len(ok) >= config.max_texts:
                ok, hashes = ok[: config.max_texts - n_kept], hashes[: config.max_texts - n_kept]
                last = True
            _tally(codes, batch, report, examples)
            report.kept += len(ok)
            kept = _Kept(
                cleaning.take_strings(texts, ok) if len(ok) < len(texts) else texts,
                batch.lines[ok],
                np.full(len(ok), batch.source_index, dtype=np.int64),
                c.stats.chars[ok],
                c.stats.words[ok],
                cleaning.mix64(hashes, config.seed),
                n_kept + np.arange(len(ok), dtype=np.int64),
            )
            n_kept += len(ok)
            if fraction is not None:
                to_test = fraction.assign(kept.u, last)
                sinks["test"].add(kept.take(np.flatnonzero(to_test)))
                sinks["train"].add(kept.take(np.flatnonzero(~to_test)))
            elif counter is not None:
                pool = kept if held is None else _Kept.concat([held, kept])
                stay = counter.select(pool.u)
                released = np.ones(len(pool), dtype=bool)
                released[stay] = False
                out = pool.take(np.flatnonzero(released))
                sinks["train"].add(out.take(np.argsort(out.seq, kind="stable")))
                held = pool.take(stay)
            else:
                sinks["train"].add(kept)
            if last and config.max_texts is not None and n_kept >= config.max_texts:
                log.info("stopping after --max-texts %d kept texts", config.max_texts)
                break
    if held is not None and len(held):
        if len(held) >= n_kept:
            raise StyleGRPOError(
                f"--test-size {test_size} leaves no training text: only {n_kept} texts were kept after cleaning"
            )
        sinks["test"].add(held.take(np.argsort(held.seq, kind="stable")))
    for sink in sinks.values():
        sink.close()
    drops = total_drops(reader.reports)
    if not sinks["train"].writer.rows:
        why = ", ".join(f"{r} {n}" for r, n in drops.most_common()) or "the corpus is empty"
        raise StyleGRPOError(
            f"no text left after cleaning {records} records from {', '.join(s.label for s in reader.sources)} "
            f"(dropped: {why}); check the corpus, --column, or the length limits"
        )
    if "test" in sinks and not sinks["test"].writer.rows:
        log.warning(
            "--test-size %s gave an empty test split (%d texts in all); writing train only", test_size, n_kept
        )
        del sinks["test"]
    return BuildResult(
        out=Path(config.out),
        splits={k: s.stats for k, s in sinks.items()},
        drops=drops,
        sources=reader.reports,
        records=records,
        styles=[s.name for s in styles],
        seconds=0.0,
        examples=examples,
    )


def _tally(codes: np.ndarray, batch: RawBatch, report: SourceReport, examples: dict[str, list[str]]) -> None:
    """Count this batch's drops per reason on its source's report; keep a few examples per reason."""
    counts = np.bincount(codes, minlength=DUPLICATE + 1)
    for code in np.flatnonzero(counts):
        if code == KEEP:
            continue
        reason = CODE_REASON[int(code)]
        report.drops[reason] += int(counts[code])
        have = examples.setdefault(reason, [])
        if len(have) < EXAMPLES_PER_REASON:
            for i in np.flatnonzero(codes == code)[: EXAMPLES_PER_REASON - len(have)]:
                text = batch.texts[int(i)].as_py() or ""
                text = text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 3] + "..."
                have.append(f"{report.label}:{batch.lines[i]}: {text!r}")


def total_drops(reports: list[SourceReport]) -> Counter:
    out: Counter = Counter()
    for r in reports:
        out.update(r.drops)
    return out


def push_to_hub(out: Path, repo: str, private: bool = False) -> str:
    """Upload the built folder (parquet + card) to a hub dataset repo; needs network and a token."""
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(out),
            repo_id=repo,
            repo_type="dataset",
            commit_message="stylegrpo build",
            ignore_patterns=[MARK_NAME],  # the local ownership mark is not part of the dataset
        )
    except Exception as e:  # noqa: BLE001 - offline, auth and HTTP errors all end here with their message
        raise StyleGRPOError(
            f"could not push {out} to the hub dataset {repo!r}: {type(e).__name__}: {e} "
            "(the dataset is written locally; log in with `hf auth login` and retry, or upload the folder)"
        ) from None
    return str(getattr(info, "commit_url", "") or f"https://huggingface.co/datasets/{repo}")
