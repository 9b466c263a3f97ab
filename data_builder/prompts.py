"""The prompt column, produced by THE prompt function ``PromptTemplate.render`` at compiled speed.

``render(text, description)`` is called once per description with a placeholder text; the messages it
returns are split around the placeholder, and each row's messages are then assembled from those pieces
and the row's text in one compiled copy pass (``_compiled.assemble``). Before use this is checked, for every description, against real ``render`` calls on probe
texts (odd spacing, braces, non-ASCII, the template's own placeholders); if the template ever does
something that is not plain substitution of the text, the builder falls back to calling ``render`` per
row. Either way the column equals ``render(text, description)`` for every row (tested).
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylegrpo.styles import REFERENCE_SEPARATOR, PromptTemplate, Reference

from .cleaning import _byte_view, _from_buffers, nfkc_changes, take_strings
from .kernels import kernels

log = logging.getLogger(__name__)

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
PROMPT_TYPE = pa.list_(MESSAGE_TYPE)
# Cleaned text never holds control characters (they are removed), so this cannot collide with a text.
_PLACEHOLDER = "\x00stylegrpo-text\x00"
_PROBES = (
    "Hello there.",
    "  two  spaces, then a tab\tand a new line\n ",
    "Braces {text} {style} {description} and <TEXT_UNDERSTANDING_END> | look-alikes >.",
    "Ünïcödé “quotes” — and 中文.",
    "",
)


class PromptRenderer:
    """Renders the prompt column for rows given by (text array, description index)."""

    def __init__(self, template: PromptTemplate, descriptions: list[str]):
        self.template = template
        self.descriptions = descriptions
        self._parts: list[list[tuple[str, str, str | None]]] = []  # per description: (role, prefix, suffix)
        self.vectorized = all(self._prepare(d) for d in descriptions) and self._consistent()
        if not self.vectorized:
            log.warning("the prompt template is not a plain substitution of the text; rendering row by row")
            return
        # every description's (prefix, suffix) per message, in order, as one string array's buffers
        pieces = pa.array([piece or "" for parts in self._parts for _, p, s in parts for piece in (p, s)])
        shape = self._parts[0] if self._parts else []
        self._pieces = (*_byte_view(pieces), np.array([s is not None for _, _, s in shape], dtype=bool))
        self._roles = pa.array([role for parts in self._parts for role, _, _ in parts], pa.string())

    def _prepare(self, description: str) -> bool:
        messages = self.template.render(_PLACEHOLDER, description)
        parts: list[tuple[str, str, str | None]] = []
        for msg in messages:
            if set(msg) != {"role", "content"}:
                return False
            pieces = msg["content"].split(_PLACEHOLDER)
            if len(pieces) > 2:
                return False
            parts.append((msg["role"], pieces[0], pieces[1] if len(pieces) == 2 else None))
        for probe in _PROBES:
            if self.template.render(probe, description) != _fill(parts, probe):
                return False
        self._parts.append(parts)
        return True

    def _consistent(self) -> bool:
        """Every description gives the same messages, with the text in the same ones."""
        shapes = {tuple(s is None for _, _, s in parts) for parts in self._parts}
        return len(shapes) <= 1

    def render(
        self,
        texts: pa.Array,
        desc_ids: np.ndarray,
        ref_ids: np.ndarray | None = None,
        references: list[Reference] | tuple[Reference, ...] = (),
    ) -> pa.Array:
        """A list<struct<role, content>> array: the chat messages of each row.

        ``ref_ids`` (optional, one per row: an index into ``references``, or -1 for none) gives rows a
        reference speaker: each row is then ``render(text, description, references[ref_ids[row]])``.
        """
        if ref_ids is not None and references:
            return self._render_with_references(texts, desc_ids, np.asarray(ref_ids), list(references))
        if not self.vectorized:
            rows = [
                self.template.render(t, self.descriptions[d])
                for t, d in zip(texts.to_pylist(), desc_ids, strict=True)
            ]
            return pa.array(rows, PROMPT_TYPE)
        self._check_texts(texts, desc_ids)
        return self._assemble(texts, desc_ids)

    def _render_with_references(
        self, texts: pa.Array, desc_ids: np.ndarray, ref_ids: np.ndarray, references: list[Reference]
    ) -> pa.Array:
        """Rows with a reference: its transcript and REFERENCE_SEPARATOR before the text, its speech tokens
        after the last message's opening; checked against ``render`` for every reference first (and the
        rows that could break the prompt rule rendered by ``render`` itself), else rendered row by row."""
        if len(ref_ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(ref_ids)} reference ids")
        has = ref_ids >= 0
        if not self.vectorized or not all(self._reference_ok(r) for r in references):
            rows = [
                self.template.render(t, self.descriptions[d], references[r] if r >= 0 else None)
                for t, d, r in zip(texts.to_pylist(), desc_ids, ref_ids, strict=True)
            ]
            return pa.array(rows, PROMPT_TYPE)
        self._check_texts(texts, desc_ids, ref_ids, references)
        safe = pa.array(np.where(has, ref_ids, 0))
        mask = pa.array(~has)
        before = pa.array([r.text + REFERENCE_SEPARATOR for r in references], pa.string()).take(safe)
        speech = pa.array([r.speech for r in references], pa.string()).take(safe)
        return self._assemble(texts, desc_ids, pc.if_else(mask, "", before), pc.if_else(mask, "", speech))

    def _reference_ok(self, reference: Reference) -> bool:
        """``render`` with this reference is the plain substitution of transcript + separator + text, and the
        speech tokens appended to the last message (raises for a transcript the prompt rule refuses)."""
        for parts in self._parts:
            for probe in _PROBES[:2]:
                want = _fill(parts, reference.text + REFERENCE_SEPARATOR + probe)
                want[-1]["content"] += reference.speech
                description = self.descriptions[self._parts.index(parts)]
                if self.template.render(probe, description, reference) != want:
                    return False
            break  # the descriptions share one shape (_consistent); the first stands for all
        return True

    def _assemble(
        self,
        texts: pa.Array,
        desc_ids: np.ndarray,
        before: pa.Array | None = None,
        after: pa.Array | None = None,
    ) -> pa.Array:
        """The vectorized messages: per message, the description's prefix + (``before`` +) text + suffix,
        and ``after`` at the end of the last message (``before``/``after``: one string per row, or none).
        The contents are written row by row in one compiled pass (``_compiled.assemble``: one copy of
        each piece, where per-message Arrow joins, a concatenation and an interleaving take made four)."""
        n = len(texts)
        n_messages = len(self._parts[0]) if self._parts else 0
        ids = np.asarray(desc_ids, dtype=np.int64)
        texts = pc.fill_null(texts, "") if texts.null_count else texts
        if len(ids) != n:
            raise ValueError(f"{n} texts but {len(ids)} description ids")
        if n and (ids.min() < 0 or ids.max() >= len(self._parts)):  # the compiled copies check no bounds
            raise IndexError(f"description ids outside 0..{len(self._parts) - 1}")
        none = _empty_strings(n)
        offsets, data = kernels().assemble(
            *self._pieces,
            ids,
            _byte_view(texts),
            none if before is None else _byte_view(before),
            none if after is None else _byte_view(after),
        )
        cells = (ids[:, None] * n_messages + np.arange(n_messages)[None, :]).ravel()  # (row, message)
        values = pa.StructArray.from_arrays(
            [take_strings(self._roles, cells), _from_buffers(offsets, data)], fields=list(MESSAGE_TYPE)
        )
        list_offsets = pa.array(np.arange(0, n * n_messages + 1, n_messages, dtype=np.int32))
        return pa.ListArray.from_arrays(list_offsets, values, type=PROMPT_TYPE)

    def _check_texts(
        self,
        texts: pa.Array,
        desc_ids: np.ndarray,
        ref_ids: np.ndarray | None = None,
        references: list[Reference] | None = None,
    ) -> None:
        """``render``'s prompt rule (no control token from a text) for the vectorized rows: every row that
        could break it is rendered by ``render`` itself, which raises. A text can only hold a marker (also
        as a tokenizer normalises it) when it has a '<', '|' or '>', or when NFKC changes it; cleaning
        (NFKC, no markup characters) leaves none, so this normally finds nothing to do."""
        suspect = nfkc_changes(texts, marks=b"<|>")  # NFKC only where it can change something
        for i in np.flatnonzero(suspect):
            ref = references[ref_ids[i]] if ref_ids is not None and references and ref_ids[i] >= 0 else None
            self.template.render(texts[int(i)].as_py(), self.descriptions[desc_ids[i]], ref)


def _empty_strings(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of ``n`` empty strings, read-only as ``_byte_view``'s are (one compiled signature)."""
    offsets, data = np.zeros(n + 1, dtype=np.int32), np.zeros(0, dtype=np.uint8)
    offsets.flags.writeable = data.flags.writeable = False
    return offsets, data


def _fill(parts: list[tuple[str, str, str | None]], text: str) -> list[dict[str, str]]:
    return [{"role": r, "content": p if s is None else p + text + s} for r, p, s in parts]
