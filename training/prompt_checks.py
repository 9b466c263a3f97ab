"""Is this prompt dataset ours? Checks of the training split against the catalog and its prompt template.

``train`` only trains on what ``stylegrpo build`` writes for the catalog it is given, because the prompt a
LoRA is trained on must be the prompt ``say`` and eval use at inference. Refused, each with the dataset
folder, split, row (counted from 0, as ``dataset[row]``) and column named:

* a ``prompt`` column that is not chat messages (``[{role, content}, ...]``), e.g. plain strings;
* a ``text`` that is empty, or a ``description`` that is empty (the style reward would compare the audio
  with no words);
* a ``description`` that is not one of its style's descriptions in the catalog: an ERROR, not a warning,
  because the style reward scores every rollout against that description, so a dataset built from
  another catalog (or edited by hand) trains other styles than the catalog, ``say`` and eval name;
* a ``prompt`` that differs from ``PromptTemplate.render(text, description)`` of the catalog: the dataset
  was built with another template or catalog;
* a text or description that the prompt rule refuses (it could put a control token into the prompt);
* a reference speaker (optional columns ``reference_text``, ``reference_codes``; empty or None = none)
  that is half given (a transcript without codes or codes without a transcript), holds codes that are
  not ints in the codebook, or whose transcript the prompt rule refuses; the ``prompt`` must then be
  ``render(text, description, Reference(reference_text, reference_codes))``. An identity style (one that
  names who speaks, ``identity: true``) paired with a reference is allowed but logged as a warning.

The fix is always the same: rebuild the dataset with ``stylegrpo build`` for this catalog, or pass the
styles file the dataset was built with (``--styles FILE``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stylegrpo.errors import StyleGRPOError, quote
from stylegrpo.styles import PromptInputError, Reference, ReferenceInputError

log = logging.getLogger(__name__)
REFERENCE_COLUMNS = ("reference_text", "reference_codes")  # a reference speaker (issue 14); optional

FIX = "rebuild it with `stylegrpo build`, or pass the styles file it was built with (--styles FILE)"


def _is_messages_type(arrow_type: Any) -> bool:
    import pyarrow as pa

    if not (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)):
        return False
    item = arrow_type.value_type
    if not pa.types.is_struct(item):
        return False
    names = {item.field(i).name for i in range(item.num_fields)}
    return {"role", "content"} <= names


def check_prompt_column_type(dataset: Any, folder: Path, split: str) -> None:
    """The ``prompt`` column holds chat messages (list of {role, content}), as `stylegrpo build` writes."""
    arrow_type = dataset.data.schema.field("prompt").type
    if not _is_messages_type(arrow_type):
        raise StyleGRPOError(
            f"{folder}: split {split!r} column 'prompt' holds {arrow_type}, not the chat messages "
            "([{role, content}, ...]) that `stylegrpo build` writes, so it would not be the prompt `say` and "
            f"eval use; {FIX}"
        )


def check_prompt_rows(dataset: Any, catalog: Any, folder: Path, split: str) -> None:
    """Every row's text, description and prompt are what the catalog and its template give."""
    check_prompt_column_type(dataset, folder, split)
    where = f"{folder}: split {split!r}"
    known = {s.name: set(s.descriptions) for s in catalog}
    identity = {s.name for s in catalog if getattr(s, "identity", False)}
    present = [c for c in REFERENCE_COLUMNS if c in dataset.column_names]
    columns = dataset.select_columns(["prompt", "text", "style", "description", *present]).to_dict()
    n = len(columns["prompt"])
    ref_texts = columns.get("reference_text") or [None] * n
    ref_codes = columns.get("reference_codes") or [None] * n
    identity_with_reference = 0
    rows = zip(
        columns["prompt"],
        columns["text"],
        columns["style"],
        columns["description"],
        ref_texts,
        ref_codes,
        strict=True,
    )
    for row, (prompt, text, style, description, ref_text, codes) in enumerate(rows):
        at = f"{where} row {row}"
        if not isinstance(text, str) or not text.strip():
            raise StyleGRPOError(f"{at}: column 'text' is empty (nothing to speak); {FIX}")
        if not isinstance(description, str) or not description.strip():
            raise StyleGRPOError(
                f"{at}: column 'description' is empty (the style reward would compare the audio with no "
                f"words); {FIX}"
            )
        if style not in known:
            raise StyleGRPOError(
                f"{at}: column 'style' {quote(style)} is not in the catalog {catalog.path}; {FIX}"
            )
        if description not in known[style]:
            raise StyleGRPOError(
                f"{at}: column 'description' {quote(description)} is not one of style {quote(style)}'s "
                f"descriptions in {catalog.path}; {FIX}"
            )
        try:
            reference = Reference.from_columns(ref_text, codes)
        except ReferenceInputError as e:
            raise StyleGRPOError(f"{at}: columns 'reference_text'/'reference_codes': {e}; {FIX}") from None
        if reference is not None and style in identity:
            identity_with_reference += 1
        try:
            if reference is not None:
                catalog.template.render("x", None, reference)  # names the reference when it is the problem
        except PromptInputError as e:
            raise StyleGRPOError(f"{at}: column 'reference_text': {e}") from None
        try:
            expected = catalog.template.render(text, description, reference)
        except PromptInputError as e:
            raise StyleGRPOError(f"{at}: column 'text': {e}") from None
        if not _same_messages(prompt, expected):
            raise StyleGRPOError(
                f"{at}: column 'prompt' is not what the catalog's prompt template ({catalog.path}) renders for "
                f"the row's text and description{' and reference' if reference is not None else ''} (the dataset "
                f"was built with another template or catalog); {FIX}"
            )
    if identity_with_reference:
        log.warning(
            "%s: %d row(s) pair a reference speaker with a style that names who speaks (identity: true in %s): "
            "the reference's voice contradicts such a style",
            where,
            identity_with_reference,
            catalog.path,
        )


def _same_messages(prompt: Any, expected: list[dict[str, str]]) -> bool:
    if not isinstance(prompt, list) or len(prompt) != len(expected):
        return False
    return all(
        isinstance(got, dict) and got.get("role") == want["role"] and got.get("content") == want["content"]
        for got, want in zip(prompt, expected, strict=True)
    )
