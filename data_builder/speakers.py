"""Reference speakers for ``stylegrpo build --speakers DIR``: reading the folder and pairing items with voices.

The folder holds reference clips and ``metadata.csv`` (the ``datasets`` audiofolder layout) with the
columns ``file_name`` (a clip in the folder, e.g. ``anna_1.wav`` or ``clips/anna_1.wav``), ``text`` (the
words spoken in it) and optionally ``speaker_id`` (default: the file name without its extension, so every
clip is its own speaker). Each clip is read, trimmed and checked by ``stylegrpo.reference``
(16 kHz mono, silence trimmed, at least ``MIN_REFERENCE_SECONDS`` of sound, cut at
``MAX_REFERENCE_SECONDS``) and encoded with the XCodec2 codec once.

The pairing rule (seeded; the same inputs and seed give the same dataset):

1. Held-out speakers. Speakers are ranked by a seeded hash of their id; the first
   ``max(1, round(test_speakers * n_speakers))`` go to the test split only, the others to train only, so
   the test split measures voices the adapter never heard. ``test_speakers`` 0 (or a build without a test
   split) shares every speaker between the splits. At least one speaker must remain for train.
2. Identity styles (catalog ``identity: true``: the style names who speaks, e.g. an elderly woman) get NO
   reference: their voice is the style. Their rows have empty reference columns.
3. Every other row gets a reference, balanced over its split's speakers: speakers are dealt by walking
   through seeded random permutations (counts differ by at most one), and each speaker's clips the same way
   among that speaker's rows.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa

from stylegrpo.errors import StyleGRPOError, clip
from stylegrpo.styles import Reference

from .pairing import SPLITS, CyclingSampler

log = logging.getLogger(__name__)

METADATA = "metadata.csv"  # the audiofolder convention (datasets.load_dataset("audiofolder") reads it too)
REQUIRED_COLUMNS = ("file_name", "text")
DEFAULT_TEST_SPEAKERS = 0.2  # a fifth of the speakers held out for the test split (at least one)
MAX_CLIPS = 10_000  # reference clips read from one folder: each is encoded (seconds on a GPU) and kept
_STREAM_SPLIT, _STREAM_SPEAKER, _STREAM_CLIP = 11, 12, 13  # RNG streams (pairing.py uses 1-3)


@dataclass(frozen=True)
class SpeakerClip:
    """One reference clip: who speaks, the file, its transcript and its XCodec2 codes."""

    speaker_id: str
    file_name: str
    text: str
    codes: tuple[int, ...]


@dataclass(frozen=True)
class MetadataRow:
    file_name: str
    text: str
    speaker_id: str
    line: int  # 1-based line in metadata.csv


def read_metadata(folder: str | Path) -> list[MetadataRow]:
    """The rows of ``DIR/metadata.csv``, checked; every problem is one line naming the file and line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StyleGRPOError(f"--speakers {folder}: not a folder (give a folder of clips with {METADATA})")
    meta = folder / METADATA
    if not meta.is_file():
        raise StyleGRPOError(
            f"--speakers {folder}: no {METADATA} in it (columns file_name, text and optionally speaker_id)"
        )
    try:
        with meta.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise StyleGRPOError(
                    f"{meta}:1: missing column(s) {', '.join(missing)} (the header must name file_name, text "
                    "and optionally speaker_id)"
                )
            rows: list[MetadataRow] = []
            seen: dict[str, int] = {}
            for raw in reader:
                line = reader.line_num
                if len(rows) >= MAX_CLIPS:
                    raise StyleGRPOError(f"{meta}: more than {MAX_CLIPS} clips; use fewer reference clips")
                name = (raw.get("file_name") or "").strip()
                text = " ".join((raw.get("text") or "").split())
                if not name:
                    raise StyleGRPOError(f"{meta}:{line}: field 'file_name' is empty")
                parts = PurePosixPath(name.replace("\\", "/"))
                if parts.is_absolute() or ".." in parts.parts or ":" in name:
                    raise StyleGRPOError(
                        f"{meta}:{line}: file_name {clip(name)!r} must be a path inside {folder} (no '..', "
                        "not absolute)"
                    )
                if not text:
                    raise StyleGRPOError(
                        f"{meta}:{line}: field 'text' is empty for {clip(name)!r}: give the words spoken in it"
                    )
                if name in seen:
                    raise StyleGRPOError(
                        f"{meta}:{line}: {clip(name)!r} is listed twice (first on line {seen[name]})"
                    )
                seen[name] = line
                speaker = (raw.get("speaker_id") or "").strip() or PurePosixPath(name).stem
                rows.append(MetadataRow(name, text, speaker, line))
    except UnicodeDecodeError as e:
        raise StyleGRPOError(f"{meta}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise StyleGRPOError(f"{meta}: not a CSV file ({e})") from None
    if not rows:
        raise StyleGRPOError(f"{meta}: no clips listed (one row per clip: file_name,text[,speaker_id])")
    return rows


def load_speakers(
    folder: str | Path, codec: object | Callable[[], object], rows: Sequence[MetadataRow] | None = None
) -> list[SpeakerClip]:
    """Read, check and encode every clip of ``metadata.csv`` (``codec``: a ``stylegrpo.codec.Codec`` that
    can encode, or a function returning one, called only once every clip has passed its checks; ``rows``:
    the folder's :func:`read_metadata`, read here when not given). A missing, unreadable, silent or too
    short clip stops the build with one line naming it, before the codec loads."""
    from stylegrpo.reference import encode_reference, load_reference_audio

    folder = Path(folder)
    rows = read_metadata(folder) if rows is None else rows
    audio = []
    for row in rows:
        path = folder / row.file_name
        if not path.is_file():
            raise StyleGRPOError(f"{folder / METADATA}:{row.line}: {path}: file not found")
        audio.append(load_reference_audio(path, option="--speakers"))
    codec = codec() if callable(codec) and not hasattr(codec, "encode") else codec
    out = []
    for row, clip_audio in zip(rows, audio, strict=True):
        ref = encode_reference(codec, clip_audio, row.text)
        out.append(SpeakerClip(row.speaker_id, row.file_name, ref.text, ref.codes))
    log.info("encoded %d reference clips of %d speakers", len(out), len({c.speaker_id for c in out}))
    return out


def speaker_hash(speaker_ids: Sequence[str], seed: int) -> np.ndarray:
    """A seeded, order-independent 64-bit rank key per speaker id (blake2b of the seed and the id)."""
    import hashlib

    return np.array(
        [
            int.from_bytes(hashlib.blake2b(f"{seed}\x00{s}".encode(), digest_size=8).digest(), "little")
            for s in speaker_ids
        ],
        dtype=np.uint64,
    )


def split_speakers(
    speaker_ids: Sequence[str], test_speakers: float, seed: int
) -> tuple[list[str], list[str]]:
    """(train speakers, test speakers), each sorted: rule 1 of the module doc. ``test_speakers`` is a
    fraction in [0, 1); 0 puts every speaker in both lists."""
    ids = sorted(set(speaker_ids))
    if not 0 <= test_speakers < 1:
        raise StyleGRPOError(f"--test-speakers must be a fraction in [0, 1), got {test_speakers}")
    if test_speakers == 0:
        return ids, ids
    if len(ids) < 2:
        raise StyleGRPOError(
            f"--speakers: {len(ids)} speaker(s), but holding speakers out for the test split needs at least 2; "
            "add speakers or pass --test-speakers 0 (the test split then uses the training voices)"
        )
    k = min(max(1, int(np.floor(test_speakers * len(ids) + 0.5))), len(ids) - 1)
    order = np.argsort(speaker_hash(ids, seed), kind="stable")
    test = sorted(ids[i] for i in order[:k])
    return sorted(set(ids) - set(test)), test


class ReferencePairer:
    """Deals the clips of one split's speakers to its rows (rules 2 and 3 of the module doc)."""

    def __init__(self, clips: Sequence[SpeakerClip], speakers: Sequence[str], seed: int, split: str):
        self.speakers = sorted(set(speakers))
        if not self.speakers:
            raise StyleGRPOError(f"no reference speakers for the {split} split")
        self.clips = list(clips)
        by_speaker = {s: [i for i, c in enumerate(self.clips) if c.speaker_id == s] for s in self.speakers}
        empty = [s for s, v in by_speaker.items() if not v]
        if empty:
            raise StyleGRPOError(f"speaker(s) {', '.join(empty)} have no clips")
        split_id = SPLITS.index(split)
        self._references: list[Reference] | None = None
        self._by_speaker = [np.array(by_speaker[s], dtype=np.int64) for s in self.speakers]
        self._speaker = CyclingSampler(
            len(self.speakers), np.random.default_rng([seed, split_id, _STREAM_SPEAKER])
        )
        self._clip = [
            CyclingSampler(len(v), np.random.default_rng([seed, split_id, _STREAM_CLIP, k]))
            for k, v in enumerate(self._by_speaker)
        ]

    @property
    def prompt_references(self) -> list[Reference]:
        """One ``stylegrpo.styles.Reference`` per clip (the index ``assign`` gives), for the prompt renderer."""
        if self._references is None:
            self._references = [Reference(c.text, c.codes) for c in self.clips]
        return self._references

    def columns(self, ref_idx: np.ndarray) -> list[pa.Array]:
        """The reference columns (writer.REFERENCE_FIELDS) of rows with these clip indices (-1: none)."""
        texts = [""] + [c.text for c in self.clips]
        codes = [[]] + [list(c.codes) for c in self.clips]
        speakers = [""] + [c.speaker_id for c in self.clips]
        take = pa.array(np.asarray(ref_idx, dtype=np.int64) + 1)  # -1 -> the empty entry 0
        return [
            pa.array(texts, pa.string()).take(take),
            pa.array(codes, pa.list_(pa.int32())).take(take),
            pa.array(speakers, pa.string()).take(take),
        ]

    def assign(self, identity: np.ndarray) -> np.ndarray:
        """Clip index (into ``clips``) per row, -1 for the rows of identity styles (``identity`` True)."""
        identity = np.asarray(identity, dtype=bool)
        out = np.full(len(identity), -1, dtype=np.int64)
        rows = np.flatnonzero(~identity)
        speaker = self._speaker.take(len(rows))
        for k in range(len(self.speakers)):
            mine = rows[speaker == k]
            if len(mine):
                out[mine] = self._by_speaker[k][self._clip[k].take(len(mine))]
        return out
