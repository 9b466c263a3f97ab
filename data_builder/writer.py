"""Parquet output in the Hugging Face layout (``data/{split}-00000-of-00001.parquet``), in row groups."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .prompts import PROMPT_TYPE

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 20_000  # ~8 MB of prompts per row group: large enough for fast scans, small to buffer
COMPRESSION = "zstd"  # measured here: faster to write than snappy and ~35% smaller; every reader supports it
# Dictionary pages and min/max statistics only pay off on the small, repetitive columns.
DICTIONARY_COLUMNS = ["style", "description", "source", "prompt.list.element.role"]
STATISTICS_COLUMNS = ["style", "description", "source", "line"]
MAX_PENDING_WRITES = 2  # row groups queued for the background writer: overlap without unbounded memory
DATA_DIR = "data"
SCHEMA = pa.schema(
    [
        ("prompt", PROMPT_TYPE),  # chat messages from PromptTemplate.render (TRL's conversational format)
        ("text", pa.string()),  # the words to speak (reference for the intelligibility rewards)
        ("style", pa.string()),  # style name in the catalog
        ("description", pa.string()),  # the paraphrase in this prompt (the style reward's reference)
        ("source", pa.string()),  # corpus the text came from
        ("line", pa.int64()),  # 1-based line (text files) or row (tables, datasets) in that corpus
    ]
)


# With `build --speakers`: the reference voice of each row (data_builder/speakers.py), empty for none
REFERENCE_FIELDS = [
    ("reference_text", pa.string()),  # the words spoken in the reference clip ("" : no reference)
    ("reference_codes", pa.list_(pa.int32())),  # its XCodec2 codes (empty: no reference)
    ("speaker_id", pa.string()),  # who speaks in it ("" : no reference)
]
SPEAKER_SCHEMA = pa.schema([*SCHEMA, *(pa.field(n, t) for n, t in REFERENCE_FIELDS)])


def split_file(split: str) -> str:
    """File name pattern ``datasets`` maps to a split (``data/train-00000-of-00001.parquet``)."""
    return f"{DATA_DIR}/{split}-00000-of-00001.parquet"


class BackgroundWrites:
    """One thread that encodes and writes row groups (pyarrow releases the GIL) while batches are built."""

    def __init__(self, max_pending: int = MAX_PENDING_WRITES):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")
        self._futures: deque[Future] = deque()
        self._max_pending = max_pending

    def submit(self, fn, *args) -> None:
        while len(self._futures) >= self._max_pending:
            self._futures.popleft().result()  # re-raises a write error here
        self._futures.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        while self._futures:
            self._futures.popleft().result()

    def shutdown(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Drop queued writes, let a running one finish, ignore their errors (another error is on its way)."""
        for f in self._futures:
            f.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


class SplitWriter:
    """Appends tables to one split's parquet file, writing full row groups as rows accumulate."""

    def __init__(
        self,
        folder: Path,
        split: str,
        row_group_rows: int | None = None,  # None: ROW_GROUP_ROWS
        background: BackgroundWrites | None = None,
        schema: pa.Schema = SCHEMA,  # SPEAKER_SCHEMA with reference columns
    ):
        self.path = folder / split_file(split)
        self.schema = schema
        self.row_group_rows = row_group_rows or ROW_GROUP_ROWS
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._background = background

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        full = table.num_rows if final else table.num_rows // self.row_group_rows * self.row_group_rows
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(
                self.path,
                self.schema,
                compression=COMPRESSION,
                use_dictionary=DICTIONARY_COLUMNS,
                write_statistics=STATISTICS_COLUMNS,
            )
        if full:
            chunk = table.slice(0, full)
            if self._background is not None:
                self._background.submit(self._writer.write_table, chunk, self.row_group_rows)
            else:
                self._writer.write_table(chunk, self.row_group_rows)
        rest = table.slice(full)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the folder is discarded; the original error matters
                log.debug("closing %s after an error failed", self.path, exc_info=True)
            self._writer = None
        self._pending = []

    def close(self) -> None:
        self._flush(final=True)
        if self._background is not None:
            self._background.wait()
        if self._writer is not None:
            self._writer.close()
            log.debug("wrote %d rows to %s", self.rows, self.path)


def make_table(
    prompt: pa.Array,
    text: pa.Array,
    style: pa.Array,
    description: pa.Array,
    source: pa.Array,
    line: np.ndarray,
    references: Sequence[pa.Array] | None = None,
) -> pa.Table:
    """The rows' table; ``references``: the REFERENCE_FIELDS columns (SPEAKER_SCHEMA), None for SCHEMA."""
    columns = [prompt, text, style, description, source, pa.array(line, pa.int64())]
    if references is None:
        return pa.Table.from_arrays(columns, schema=SCHEMA)
    return pa.Table.from_arrays([*columns, *references], schema=SPEAKER_SCHEMA)
