"""Reading text corpora as a stream of Arrow string batches with their line (or row) numbers.

Formats: plain text (one sentence per line, or paragraphs split into sentences), JSON lines / JSON,
CSV / TSV, parquet, any of those gzip-compressed (``.gz``), a folder of them, a Hugging Face dataset
saved with ``save_to_disk``, and a Hugging Face hub dataset by name (``hf:NAME``, streamed).
UTF-8 with or without a byte-order mark, LF, CRLF or CR line ends.
"""

from __future__ import annotations

import codecs
import csv
import errno
import gzip
import io
import json
import logging
import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from stylegrpo.errors import StyleGRPOError, clip
from stylegrpo.outputs import is_marked

from . import segment
from .kernels import kernels

log = logging.getLogger(__name__)

CHUNK_BYTES = 2 << 20  # read text files 2 MiB at a time: ~20k lines per batch, ~100 MB in flight
BATCH_ROWS = 32_768  # rows per batch for record formats (JSON lines, CSV, parquet, datasets)
DETECT_SAMPLE_BYTES = 1 << 20  # bytes read from a text file to detect its layout
MAX_WARNINGS_SHOWN = 5  # per kind and source: the first few problems are logged with file:line, then counted
DEFAULT_COLUMN = "text"  # the usual name of the text column in Hugging Face datasets and CSV/JSON corpora
DEFAULT_SPLIT = "train"  # the split of a Hugging Face dataset read by default
HF_PREFIX = "hf:"

TEXT_EXTS = (".txt", ".text")
FORMATS_BY_EXT = {
    ".txt": "text",
    ".text": "text",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_BOM = b"\xef\xbb\xbf"
# Byte-order marks of the other Unicode encodings, longest first (UTF-32 LE starts like UTF-16 LE). Such
# files are decoded and handed on as UTF-8, so every format reads them.
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
SNIFF_BYTES = 4096  # bytes looked at to recognise UTF-16 without a byte-order mark
SNIFF_MIN_BYTES = 16  # fewer bytes than this are too few to recognise UTF-16 by its NUL pattern
UTF16_NUL_SHARE = 0.3  # UTF-16 text (mostly ASCII) has a NUL in at least this share of its high bytes...
UTF16_CLEAN_SHARE = 0.05  # ...and in at most this share of its low bytes
BINARY_BAD_SHARE = 0.1  # a .txt sample with more undecodable or control characters than this is binary
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufffd]")  # control characters (not tab, line ends, \f, \v)


@dataclass(frozen=True)
class Source:
    """One corpus to read: ``kind`` is text, jsonl, json, csv, tsv, parquet, hf_disk or hf_hub."""

    kind: str
    location: str
    label: str
    size: int = 0  # bytes on disk (0 when unknown: hub datasets)
    gzipped: bool = False


@dataclass(frozen=True)
class ReadOptions:
    column: str | None = None  # None: "text", else the only string column
    split: str = DEFAULT_SPLIT
    hf_config: str | None = None
    text_mode: str = segment.AUTO
    strict: bool = False


@dataclass
class SourceReport:
    label: str
    kind: str
    detail: str = ""  # layout detected, column used, ...
    records: int = 0  # lines / rows / sentences handed on to cleaning
    kept: int = 0  # filled in by the builder
    drops: Counter = field(default_factory=Counter)


@dataclass
class RawBatch:
    texts: pa.Array  # string
    lines: np.ndarray  # int64, 1-based line (text files) or row (tables) number of each text
    source_index: int


def default_corpus_path() -> Path:
    """The embedded default corpus (original English sentences of many lengths and moods)."""
    return Path(__file__).resolve().parent / "corpus" / "default.txt"


# --- resolving --corpus arguments --------------------------------------------------------------------


def resolve_sources(specs: list[str]) -> list[Source]:
    """Turn --corpus arguments into sources; a folder expands to the corpus files under it, sorted."""
    out: list[Source] = []
    for spec in specs:
        out.extend(_resolve_one(spec))
    return out


def _is_saved_dataset(p: Path) -> bool:
    return (p / "dataset_dict.json").is_file() or (
        (p / "state.json").is_file() and (p / "dataset_info.json").is_file()
    )


def _file_format(p: Path) -> tuple[str, bool]:
    suffixes = [s.lower() for s in p.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes and not gz else "")
    return FORMATS_BY_EXT.get(ext, ""), gz


def _resolve_one(spec: str) -> list[Source]:
    if spec.startswith(HF_PREFIX):
        return [Source("hf_hub", spec[len(HF_PREFIX) :], spec)]
    p = Path(spec)
    if p.is_dir():
        if _is_saved_dataset(p):
            return [Source("hf_disk", str(p), str(p))]
        found: list[Source] = []
        skipped = 0
        for root, dirs, files in os.walk(p):
            rootp = Path(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for d in [d for d in dirs if is_marked(rootp / d)]:  # our own outputs are never a source
                log.info("%s: skipped (a folder written by stylegrpo, not a corpus)", rootp / d)
                dirs.remove(d)
            for d in list(dirs):
                if _is_saved_dataset(rootp / d):
                    found.append(Source("hf_disk", str(rootp / d), str(rootp / d)))
                    dirs.remove(d)
            for name in sorted(files):
                if name.startswith("."):
                    continue
                fp = rootp / name
                kind, gz = _file_format(fp)
                if not kind:
                    skipped += 1
                    continue
                try:
                    size = fp.stat().st_size
                except OSError as e:  # a link whose target is gone, or a loop of links: skip it, named
                    log.warning("%s: skipped, %s", fp, _unreadable_reason(fp, e))
                    continue
                found.append(Source(kind, str(fp), str(fp), size, gz))
        if skipped:
            log.info(
                "%s: skipped %d file(s) that are not corpus files (%s)", p, skipped, ", ".join(FORMATS_BY_EXT)
            )
        if not found:
            raise StyleGRPOError(
                f"{p}: no corpus files in this folder (looked for {', '.join(FORMATS_BY_EXT)}, .gz of those, "
                "and save_to_disk datasets)"
            )
        return sorted(found, key=lambda s: s.location)
    if p.is_file():
        kind, gz = _file_format(p)
        return [Source(kind or "text", str(p), str(p), p.stat().st_size, gz)]
    if p.exists():
        raise StyleGRPOError(f"{p}: not a regular file or folder")
    if p.is_symlink():
        try:
            p.stat()
        except OSError as e:
            raise StyleGRPOError(f"{p}: cannot read the corpus: {_unreadable_reason(p, e)}") from None
    kind, _ = _file_format(p)
    if not kind and _HUB_ID.match(spec):
        return [Source("hf_hub", spec, spec)]
    raise StyleGRPOError(f"{p}: corpus not found (a file, a folder, or hf:NAME for a Hugging Face dataset)")


def _unreadable_reason(p: Path, e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "a loop of symbolic links"
    if p.is_symlink() and e.errno == errno.ENOENT:
        return f"a symbolic link to {os.readlink(p)}, which does not exist"
    return e.strerror or str(e)


# --- reading -----------------------------------------------------------------------------------------


def sniff_encoding(head: bytes) -> tuple[str | None, str]:
    """(encoding, why) for UTF-16/32 text recognised from its first bytes; (None, "") for anything else.

    A byte-order mark decides; without one, UTF-16 of mostly-ASCII text is recognised by its NUL bytes in
    every other place (little- or big-endian by which half they are in).
    """
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):
            return encoding, "byte-order mark"
    sample = head[: len(head) // 2 * 2]
    if len(sample) >= SNIFF_MIN_BYTES:
        low, high = sample[0::2], sample[1::2]
        nul_low, nul_high = low.count(0) / len(low), high.count(0) / len(high)
        if nul_high >= UTF16_NUL_SHARE and nul_low <= UTF16_CLEAN_SHARE:
            return "utf-16-le", "no byte-order mark; NUL bytes in every other place"
        if nul_low >= UTF16_NUL_SHARE and nul_high <= UTF16_CLEAN_SHARE:
            return "utf-16-be", "no byte-order mark; NUL bytes in every other place"
    return None, ""


def binary_reason(sample: bytes) -> str | None:
    """Why a sample of a text file (as UTF-8) looks like a binary file, or None when it looks like text."""
    if b"\x00" in sample:
        return "it holds NUL bytes"
    text = sample.decode("utf-8", errors="replace")
    bad = len(_CONTROL_RE.findall(text))
    if text and bad / len(text) > BINARY_BAD_SHARE:
        return f"{bad / len(text):.0%} of its first {len(sample):,} bytes are not text"
    return None


class _CorpusStream(io.RawIOBase):
    """The bytes of one corpus file as UTF-8: gunzipped, UTF-16/32 decoded, read errors named by file."""

    def __init__(self, raw: Any, f: Any, src: Source):
        self._raw, self._f, self._src = raw, f, src
        self._pending = b""  # bytes read ahead (the sniffed head), served before the file's next ones
        self._decoder: Any = None
        self._encoding: str | None = None
        self._out = b""
        self._eof = False
        self._pending = self._read_raw(SNIFF_BYTES)
        self._encoding, self.why = sniff_encoding(self._pending)
        if self._encoding:
            self._decoder = codecs.getincrementaldecoder(self._encoding)("strict")

    @property
    def encoding(self) -> str | None:
        return self._encoding

    def readable(self) -> bool:
        return True

    def _read_raw(self, n: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        try:
            return self._f.read(n)
        except (EOFError, OSError, zlib.error) as e:
            raise self._read_error(e) from None

    def _read_error(self, e: BaseException) -> StyleGRPOError:
        hint = " (a truncated or damaged .gz file?)" if self._src.gzipped else ""
        return StyleGRPOError(f"{self._src.label}: cannot read: {clip(str(e))}{hint}")

    def readinto(self, b: Any) -> int:
        n = len(b)
        if self._decoder is None and not self._pending:  # UTF-8 as it is: read straight into b
            try:
                return self._f.readinto(b)
            except (EOFError, OSError, zlib.error) as e:
                raise self._read_error(e) from None
        if self._decoder is None:
            data = self._read_raw(n)
        else:
            while not self._out and not self._eof:
                raw = self._read_raw(max(n, CHUNK_BYTES))
                try:
                    text = self._decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    raise StyleGRPOError(
                        f"{self._src.label}: read as {self._encoding} ({self.why}), but it is not valid "
                        f"{self._encoding} ({e.reason}); save it as UTF-8"
                    ) from None
                self._eof = not raw
                self._out = text.encode("utf-8")
            data, self._out = self._out[:n], self._out[n:]
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._f.close()
            self._raw.close()
        super().close()


class Reader:
    """Streams every source as RawBatch objects, counting what could not be read in ``reports``."""

    def __init__(
        self, sources: list[Source], options: ReadOptions, advance: Callable[[int], None] | None = None
    ):
        self.sources = sources
        self.options = options
        self.reports = [SourceReport(s.label, s.kind) for s in sources]
        self._advance = advance or (lambda n: None)
        self._warned: Counter = Counter()
        self._decoded: set[str] = set()  # sources read as UTF-16/32 (logged once each)

    def __iter__(self) -> Iterator[RawBatch]:
        for i, src in enumerate(self.sources):
            reader = {
                "text": self._read_text,
                "jsonl": self._read_jsonl,
                "json": self._read_json,
                "csv": self._read_csv,
                "tsv": self._read_csv,
                "parquet": self._read_parquet,
                "hf_disk": self._read_hf_disk,
                "hf_hub": self._read_hf_hub,
            }[src.kind]
            log.debug("reading %s (%s)", src.label, src.kind)
            for texts, lines in reader(src, self.reports[i]):
                if len(texts):
                    self.reports[i].records += len(texts)
                    yield RawBatch(texts, lines, i)

    # problems in single records: skipped and counted, or fatal with --strict
    def _problem(self, report: SourceReport, reason: str, where: str, message: str) -> None:
        if self.options.strict:
            raise StyleGRPOError(
                f"{where}: {message} (without --strict such records are skipped and counted)"
            )
        report.drops[reason] += 1
        self._warned[(report.label, reason)] += 1
        n = self._warned[(report.label, reason)]
        if n <= MAX_WARNINGS_SHOWN:
            log.warning(
                "%s: %s; skipped%s",
                where,
                message,
                " (further ones are only counted)" if n == MAX_WARNINGS_SHOWN else "",
            )

    def _open_binary(self, src: Source) -> io.BufferedReader:
        """The file as UTF-8 bytes (gunzipped, UTF-16/32 decoded); read errors name the file."""
        try:
            raw = open(src.location, "rb")  # noqa: SIM115 - closed by the caller's with-block
        except OSError as e:
            raise StyleGRPOError(f"{src.label}: cannot read: {e.strerror or e}") from None
        try:
            stream = _CorpusStream(raw, gzip.GzipFile(fileobj=raw) if src.gzipped else raw, src)
        except BaseException:
            raw.close()
            raise
        if stream.encoding and src.location not in self._decoded:
            self._decoded.add(src.location)
            log.info("%s: read as %s (%s)", src.label, stream.encoding.upper(), stream.why)
        return io.BufferedReader(stream, CHUNK_BYTES)

    # plain text ------------------------------------------------------------------------------------
    def _byte_lines(self, src: Source, report: SourceReport) -> Iterator[tuple[pa.Array, np.ndarray]]:
        """Lines of a text file as string arrays (no line ends), with their 1-based line numbers."""
        lineno = 1
        carry = b""
        first = True
        with self._open_binary(src) as f:
            while True:
                chunk = f.read(CHUNK_BYTES)  # read errors raise StyleGRPOError naming the file
                eof = not chunk
                if first:
                    first = False
                    if chunk.startswith(_BOM):
                        chunk = chunk[len(_BOM) :]
                end = len(chunk) - 1 if chunk.endswith(b"\r") else len(chunk)  # "\r" may precede a "\n"
                cut = max(chunk.rfind(b"\n", 0, end), chunk.rfind(b"\r", 0, end))
                if cut >= 0:  # the lines up to the chunk's last line end (with the carry), copied once
                    data, carry = b"".join((carry, memoryview(chunk)[: cut + 1])), chunk[cut + 1 :]
                else:
                    data = carry + chunk
                    if eof:
                        carry = b""
                        if not data:
                            break
                        if not data.endswith((b"\n", b"\r")):
                            data += b"\n"
                    else:
                        end = len(data) - 1 if data.endswith(b"\r") else len(data)
                        cut = max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end))
                        if cut < 0:
                            carry = data
                            continue
                        carry, data = data[cut + 1 :], data[: cut + 1]
                if b"\r" in data:
                    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                arr, lines, n_lines = self._split_lines(data, lineno, src, report)
                lineno += n_lines
                if not src.gzipped:
                    self._advance(len(chunk))
                yield arr, lines
                if eof:
                    break
        if src.gzipped:
            self._advance(src.size)

    def _split_lines(
        self, data: bytes, lineno: int, src: Source, report: SourceReport
    ) -> tuple[pa.Array, np.ndarray, int]:
        """(the lines as strings, their numbers, how many lines ``data`` holds); undecodable lines are
        counted and left out."""
        buf = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(buf == 10)
        n = len(ends)
        content = kernels().without(buf, ends)  # the lines' bytes, one copy
        offsets = np.empty(n + 1, dtype=np.int64)
        offsets[0] = 0
        offsets[1:] = ends - np.arange(n)
        lines = lineno + np.arange(n, dtype=np.int64)
        if len(content) < 2**31:
            arr = pa.StringArray.from_buffers(
                n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(content)
            )
        else:  # pragma: no cover - a single chunk is a few MB
            arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(content))
        try:
            arr.validate(full=True)
            return arr, lines, n
        except pa.ArrowInvalid:
            pass
        good: list[str] = []
        keep: list[int] = []
        for i, raw in enumerate(data.split(b"\n")[:n]):
            try:
                good.append(raw.decode("utf-8"))
                keep.append(i)
            except UnicodeDecodeError as e:
                self._problem(
                    report,
                    "undecodable",
                    f"{src.label}:{lines[i]}",
                    f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                )
        return pa.array(good, pa.string()), lines[keep], n

    def _read_text(self, src: Source, report: SourceReport) -> Iterator[tuple[pa.Array, np.ndarray]]:
        sample = self._sample(src)
        binary = binary_reason(sample)
        if binary:
            message = f"{src.label}: not a text file ({binary}: a binary file with a text name?)"
            if self.options.strict:
                raise StyleGRPOError(f"{message}; remove it from the corpus")
            log.warning("%s; skipped (--strict stops instead)", message)
            report.detail = f"skipped: not a text file ({binary})"
            return
        mode = self.options.text_mode
        if mode == segment.AUTO:
            mode, why = segment.detect_mode(self._sample_lines(sample))
            report.detail = f"{mode} (detected: {why})"
            log.info("%s: read as %s (%s)", src.label, mode, why)
        else:
            report.detail = mode
        if mode == segment.LINES:
            yield from self._byte_lines(src, report)
            return
        pairs = (
            (int(n), s)
            for arr, lines in self._byte_lines(src, report)
            for n, s in zip(lines, arr.to_pylist(), strict=True)
        )
        yield from _batched(segment.paragraphs_to_sentences(pairs))

    def _sample(self, src: Source) -> bytes:
        with self._open_binary(src) as f:
            return f.read(DETECT_SAMPLE_BYTES)

    @staticmethod
    def _sample_lines(data: bytes) -> list[str]:
        text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
        lines = text.splitlines()
        return lines[:-1] if len(data) == DETECT_SAMPLE_BYTES and len(lines) > 1 else lines

    # records ---------------------------------------------------------------------------------------
    def _records_to_texts(
        self, src: Source, report: SourceReport, records: Iterator[tuple[int, object]]
    ) -> Iterator[tuple[pa.Array, np.ndarray]]:
        """(line, parsed JSON value) -> text batches, picking the column from the first object."""
        column = self.options.column
        texts: list[str] = []
        lines: list[int] = []
        for lineno, rec in records:
            where = f"{src.label}:{lineno}"
            if isinstance(rec, str) and self.options.column is None:
                value = rec
            elif isinstance(rec, dict):
                if column is None:
                    column = _choose_column(
                        [k for k, v in rec.items() if isinstance(v, str)], list(rec), None, where
                    )
                    report.detail = f"column {column!r}"
                value = rec.get(column)
                if column not in rec and not report.records and not texts:
                    raise StyleGRPOError(
                        f"{where}: no field {column!r} in the first record; fields: {', '.join(map(str, rec)) or 'none'}"
                        " (choose one with --column)"
                    )
            else:
                self._problem(
                    report, "unparsable", where, f"expected a JSON object, got {type(rec).__name__}"
                )
                continue
            if value is None:
                self._problem(report, "no_text", where, f"field {column!r} is missing or null")
                continue
            texts.append(value if isinstance(value, str) else str(value))
            lines.append(lineno)
            if len(texts) >= BATCH_ROWS:
                yield pa.array(texts, pa.string()), np.array(lines, dtype=np.int64)
                texts, lines = [], []
        if texts:
            yield pa.array(texts, pa.string()), np.array(lines, dtype=np.int64)

    def _read_jsonl(self, src: Source, report: SourceReport) -> Iterator[tuple[pa.Array, np.ndarray]]:
        def records() -> Iterator[tuple[int, object]]:
            for arr, lines in self._byte_lines(src, report):
                for n, s in zip(lines.tolist(), arr.to_pylist(), strict=True):
                    if not s.strip():
                        continue
                    try:
                        yield n, json.loads(s)
                    except json.JSONDecodeError as e:
                        self._problem(
                            report,
                            "unparsable",
                            f"{src.label}:{n}",
                            f"invalid JSON ({e.msg} at column {e.colno})",
                        )

        yield from self._records_to_texts(src, report, records())

    def _read_json(self, src: Source, report: SourceReport) -> Iterator[tuple[pa.Array, np.ndarray]]:
        with self._open_binary(src) as f:
            head = f.read(4096).lstrip(_BOM).lstrip()
        if not head.startswith(b"["):  # JSON lines under a .json name
            yield from self._read_jsonl(src, report)
            return
        with self._open_binary(src) as f:
            try:
                data = json.loads(f.read().decode("utf-8-sig"))
            except UnicodeDecodeError as e:
                raise StyleGRPOError(f"{src.label}: not valid UTF-8 at byte {e.start}") from None
            except json.JSONDecodeError as e:
                raise StyleGRPOError(
                    f"{src.label}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})"
                ) from None
        report.detail = "JSON array (read whole)"
        yield from self._records_to_texts(src, report, ((i + 1, r) for i, r in enumerate(data)))

    def _read_csv(self, src: Source, report: SourceReport) -> Iterator[tuple[pa.Array, np.ndarray]]:
        delimiter = "\t" if src.kind == "tsv" else ","
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with self._open_binary(src) as fb:
            f = io.TextIOWrapper(fb, encoding="utf-8-sig", errors="surrogateescape", newline="")
            reader = csv.reader(f, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                return
            except (OSError, csv.Error) as e:
                raise StyleGRPOError(f"{src.label}:1: cannot read the header row: {e}") from None
            column = _choose_column(
                header, header, self.options.column, f"{src.label}:1", text_default_only=True
            )
            col = header.index(column)
            report.detail = f"column {column!r}"
            texts: list[str] = []
            lines: list[int] = []
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    self._problem(
                        report, "unparsable", f"{src.label}:{reader.line_num}", f"bad CSV row ({e})"
                    )
                    continue
                except OSError as e:
                    raise StyleGRPOError(f"{src.label}: cannot read: {e}") from None
                if not row:
                    continue
                where = f"{src.label}:{reader.line_num}"
                if col >= len(row):
                    self._problem(report, "no_text", where, f"row has {len(row)} fields, no {column!r}")
                    continue
                value = row[col]
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as e:
                    bad = value[e.start].encode("utf-8", "surrogateescape")[0]
                    self._problem(report, "undecodable", where, f"not valid UTF-8 (byte 0x{bad:02x})")
                    continue
                texts.append(value)
                lines.append(reader.line_num)
                if len(texts) >= BATCH_ROWS:
                    yield pa.array(texts, pa.string()), np.array(lines, dtype=np.int64)
                    texts, lines = [], []
            if texts:
                yield pa.array(texts, pa.string()), np.array(lines, dtype=np.int64)
        self._advance(src.size)

    def _read_parquet(self, src: Source, report: SourceReport) -> Iterator[tuple[pa.Array, np.ndarray]]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(src.location)
        except (OSError, pa.ArrowException) as e:
            raise StyleGRPOError(f"{src.label}: cannot read as parquet: {e}") from None
        schema = pf.schema_arrow
        column = _choose_column(
            [f.name for f in schema if _is_text_type(f.type)], schema.names, self.options.column, src.label
        )
        if not _is_text_type(schema.field(column).type):
            raise StyleGRPOError(f"{src.label}: column {column!r} is {schema.field(column).type}, not text")
        report.detail = f"column {column!r}"
        row = 1
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[column]):
            arr = batch.column(0).cast(pa.string())
            yield from self._drop_nulls(arr, row, src, report)
            row += len(arr)
        self._advance(src.size)

    def _drop_nulls(self, arr: pa.Array, first_row: int, src: Source, report: SourceReport):
        rows = first_row + np.arange(len(arr), dtype=np.int64)
        if arr.null_count:
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            for r in rows[~valid][:MAX_WARNINGS_SHOWN]:
                self._problem(report, "no_text", f"{src.label} row {r}", "text is null")
            report.drops["no_text"] += max(0, int((~valid).sum()) - MAX_WARNINGS_SHOWN)
            arr, rows = arr.filter(pa.array(valid)), rows[valid]
        yield arr, rows

    # Hugging Face datasets -------------------------------------------------------------------------
    def _read_hf_disk(self, src: Source, report: SourceReport) -> Iterator[tuple[pa.Array, np.ndarray]]:
        import datasets

        try:
            ds = datasets.load_from_disk(src.location)
        except Exception as e:  # noqa: BLE001 - datasets raises many kinds; the message is what matters
            raise StyleGRPOError(f"{src.label}: cannot load the saved dataset: {e}") from None
        yield from self._iter_hf(ds, src, report, streaming=False)

    def _read_hf_hub(self, src: Source, report: SourceReport) -> Iterator[tuple[pa.Array, np.ndarray]]:
        import datasets

        try:
            ds = datasets.load_dataset(
                src.location, self.options.hf_config, split=self.options.split, streaming=True
            )
        except Exception as e:  # noqa: BLE001
            prefix = (
                f"{src.label}: loading the Hugging Face dataset"
                if src.label.startswith(HF_PREFIX)
                else f"{src.label}: not a local file or folder, and loading it as a Hugging Face dataset"
            )
            raise StyleGRPOError(
                f"{prefix} (split {self.options.split!r}) failed: {type(e).__name__}: {e}"
            ) from None
        yield from self._iter_hf(ds, src, report, streaming=True)

    def _iter_hf(self, ds, src: Source, report: SourceReport, streaming: bool):
        import datasets

        if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            if self.options.split not in ds:
                raise StyleGRPOError(
                    f"{src.label}: no split {self.options.split!r}; splits: {', '.join(ds)} (choose with --split)"
                )
            ds = ds[self.options.split]
        features = ds.features or {}
        names = list(features) if features else (ds.column_names or [])
        text_cols = [
            k for k, v in features.items() if getattr(v, "dtype", None) in ("string", "large_string")
        ]
        if names:
            column = _choose_column(text_cols or names, names, self.options.column, src.label)
        else:  # a streamed dataset may not know its columns before the first batch
            column = self.options.column or DEFAULT_COLUMN
        report.detail = (
            f"split {self.options.split!r}, column {column!r}" if streaming else f"column {column!r}"
        )
        row = 1
        if streaming:
            batches = iter(ds.select_columns([column]).iter(batch_size=BATCH_ROWS))
            while True:
                try:
                    batch = next(batches, None)
                except Exception as e:  # noqa: BLE001 - network and format errors of a remote stream
                    raise StyleGRPOError(
                        f"{src.label}: reading from row {row} on failed: {type(e).__name__}: {e}"
                    ) from None
                if batch is None:
                    break
                if column not in batch:
                    raise StyleGRPOError(f"{src.label}: no column {column!r}; columns: {', '.join(batch)}")
                values = batch[column]
                arr = pa.array(
                    [v if isinstance(v, str) or v is None else str(v) for v in values], pa.string()
                )
                yield from self._drop_nulls(arr, row, src, report)
                row += len(arr)
        else:
            for batch in ds.select_columns([column]).with_format("arrow").iter(batch_size=BATCH_ROWS):
                arr = batch.column(0)
                if isinstance(arr, pa.ChunkedArray):
                    arr = arr.combine_chunks()
                if not _is_text_type(arr.type):
                    raise StyleGRPOError(f"{src.label}: column {column!r} is {arr.type}, not text")
                arr = arr.cast(pa.string())
                yield from self._drop_nulls(arr, row, src, report)
                row += len(arr)


def _is_text_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _choose_column(
    text_columns: list[str],
    all_columns: list[str],
    requested: str | None,
    where: str,
    text_default_only: bool = False,
) -> str:
    """--column if given, else "text", else the only text column; otherwise a clear error."""
    if requested is not None:
        if requested not in all_columns:
            raise StyleGRPOError(
                f"{where}: no column {requested!r}; columns: {', '.join(map(str, all_columns))}"
            )
        return requested
    if DEFAULT_COLUMN in all_columns:
        return DEFAULT_COLUMN
    if len(text_columns) == 1 and not text_default_only:
        log.info("%s: using the only text column %r", where, text_columns[0])
        return text_columns[0]
    if len(all_columns) == 1:
        return all_columns[0]
    raise StyleGRPOError(
        f"{where}: no column {DEFAULT_COLUMN!r}; choose one with --column (columns: {', '.join(map(str, all_columns))})"
    )


def _batched(pairs: Iterator[tuple[int, str]]) -> Iterator[tuple[pa.Array, np.ndarray]]:
    texts: list[str] = []
    lines: list[int] = []
    for n, s in pairs:
        texts.append(s)
        lines.append(n)
        if len(texts) >= BATCH_ROWS:
            yield pa.array(texts, pa.string()), np.array(lines, dtype=np.int64)
            texts, lines = [], []
    if texts:
        yield pa.array(texts, pa.string()), np.array(lines, dtype=np.int64)
