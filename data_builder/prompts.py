"""The prompt column, produced by THE prompt function ``PromptTemplate.render`` at Arrow speed.

``render(text, description)`` is called once per description with a placeholder text; the messages it
returns are split around the placeholder, and each row's messages are then assembled by vectorized
concatenation. Before use this is checked, for every description, against real ``render`` calls on probe
texts (odd spacing, braces, non-ASCII, the template's own placeholders); if the template ever does
something that is not plain substitution of the text, the builder falls back to calling ``render`` per
row. Either way the column equals ``render(text, description)`` for every row (tested).
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylegrpo.styles import PromptTemplate

from .cleaning import nfkc_changes

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

    def render(self, texts: pa.Array, desc_ids: np.ndarray) -> pa.Array:
        """A list<struct<role, content>> array: the chat messages of each row."""
        n = len(texts)
        if not self.vectorized:
            rows = [
                self.template.render(t, self.descriptions[d])
                for t, d in zip(texts.to_pylist(), desc_ids, strict=True)
            ]
            return pa.array(rows, PROMPT_TYPE)
        self._check_texts(texts, desc_ids)
        n_messages = len(self._parts[0]) if self._parts else 0
        ids = pa.array(desc_ids)
        roles, contents = [], []
        for m in range(n_messages):
            role = pa.array([p[m][0] for p in self._parts], pa.string()).take(ids)
            prefix = pa.array([p[m][1] for p in self._parts], pa.string()).take(ids)
            suffix_values = [p[m][2] for p in self._parts]
            if all(s is None for s in suffix_values):
                content = prefix
            else:
                suffix = pa.array(["" if s is None else s for s in suffix_values], pa.string()).take(ids)
                content = pc.binary_join_element_wise(prefix, texts, suffix, "")
            roles.append(role)
            contents.append(content)
        order = pa.array((np.arange(n)[:, None] + n * np.arange(n_messages)[None, :]).ravel())
        values = pa.StructArray.from_arrays(
            [pa.concat_arrays(roles).take(order), pa.concat_arrays(contents).take(order)],
            fields=list(MESSAGE_TYPE),
        )
        offsets = pa.array(np.arange(0, n * n_messages + 1, n_messages, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values, type=PROMPT_TYPE)

    def _check_texts(self, texts: pa.Array, desc_ids: np.ndarray) -> None:
        """``render``'s prompt rule (no control token from a text) for the vectorized rows: every row that
        could break it is rendered by ``render`` itself, which raises. A text can only hold a marker (also
        as a tokenizer normalises it) when it has a '<', '|' or '>', or when NFKC changes it; cleaning
        (NFKC, no markup characters) leaves none, so this normally finds nothing to do."""
        marked = pc.fill_null(pc.match_substring_regex(texts, "[<|>]"), False).to_numpy(zero_copy_only=False)
        suspect = marked | nfkc_changes(texts)  # NFKC only where it can change something
        for i in np.flatnonzero(suspect):
            self.template.render(texts[int(i)].as_py(), self.descriptions[desc_ids[i]])


def _fill(parts: list[tuple[str, str, str | None]], text: str) -> list[dict[str, str]]:
    return [{"role": r, "content": p if s is None else p + text + s} for r, p, s in parts]
