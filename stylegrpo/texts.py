"""Texts to speak from a file: one per line (shared by `say --input-file` and `eval --texts`)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StyleGRPOError
from .styles import control_marker_problem


def read_text_lines(path: str | os.PathLike[str], option: str = "input file") -> list[str]:
    """Non-empty stripped lines of a UTF-8 file (BOM allowed); ``option`` names the flag in errors."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise StyleGRPOError(f"{option} {p}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StyleGRPOError(f"{option} {p}: cannot read: {e}") from None
    texts = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        problem = control_marker_problem(text)  # the prompt rule of PromptTemplate.render, with the line
        if problem:
            raise StyleGRPOError(f"{option} {p} line {number}: the text {problem}")
        texts.append(text)
    if not texts:
        raise StyleGRPOError(f"{option} {p}: no text lines (one text to speak per line)")
    return texts
