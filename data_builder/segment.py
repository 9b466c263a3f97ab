"""Plain-text layout: one sentence per line, or paragraphs to split into sentences; detection of which."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# Words that end with a period without ending a sentence ("Dr. Smith", "e.g. this"). Only those that rarely
# end a sentence themselves: "etc.", "a.m.", "U.S." and words like "sun" or "no" are left out on purpose.
ABBREVIATIONS = frozenset(
    ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "e.g", "i.e", "cf", "approx", "dept")
    + ("inc", "ltd", "corp", "gen", "col", "lt", "sgt", "capt", "cmdr", "adm", "rev", "gov", "fig", "figs")
    + ("vol", "jan", "feb", "apr", "aug", "sept", "oct", "nov")
)
# A sentence ends at . ! ? (or CJK 。！？), possibly followed by closing quotes/brackets, then space and a
# capital, digit or opening quote; CJK full stops need no space.
_BOUNDARY = re.compile(r"""(?:[.!?]+["'\u201d\u2019)\]]*\s+(?=["'\u201c\u2018(\[]?[A-Z0-9])|[。！？]+)""")
_LAST_WORD = re.compile(r"(\S+?)[.!?]*$")
_TERMINAL = re.compile(r"""[.!?。！？…:]["'\u201d\u2019)\]]*\s*$""")

LINES = "lines"
PARAGRAPHS = "paragraphs"
AUTO = "auto"
TEXT_MODES = (AUTO, LINES, PARAGRAPHS)
DETECT_SAMPLE_LINES = 2000  # lines looked at to detect the layout: enough for a stable majority
MAJORITY = 0.5  # paragraphs when at least half the sampled lines show it (2-line paragraphs: exactly half)


def split_sentences(paragraph: str) -> list[str]:
    """Split a paragraph into sentences at . ! ? followed by a capital, skipping abbreviations/initials."""
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(paragraph):
        end = m.end()
        piece = paragraph[start:end].strip()
        if not piece:
            continue
        if m.group().lstrip()[:1] == "." and _is_abbreviation(paragraph[start : m.start() + 1]):
            continue
        out.append(piece)
        start = end
    rest = paragraph[start:].strip()
    if rest:
        out.append(rest)
    return out


def _is_abbreviation(before: str) -> bool:
    """Whether the text up to and including a period ends with an abbreviation or an initial."""
    words = before.rstrip(".").split()
    if not words:
        return False
    last = words[-1].lstrip("\"'(\u201c\u2018[")
    if len(last) == 1 and last.isalpha() and last.isupper():  # an initial: "J. R. Tolkien"
        return True
    return last.lower() in ABBREVIATIONS


def ends_sentence(line: str) -> bool:
    return bool(_TERMINAL.search(line))


def detect_mode(lines: Iterable[str]) -> tuple[str, str]:
    """Guess whether sampled lines are one sentence each or paragraphs; return (mode, reason)."""
    sample = []
    for i, line in enumerate(lines):
        if i >= DETECT_SAMPLE_LINES:
            break
        sample.append(line.strip())
    nonblank = [i for i, s in enumerate(sample) if s]
    if not nonblank:
        return LINES, "empty sample"
    has_blank = len(nonblank) < len(sample)
    multi = wrapped = evidence = 0
    for i in nonblank:
        is_multi = len(split_sentences(sample[i])) > 1
        # a line continuing on the next one is hard-wrapped prose, but only where blank lines separate
        # paragraphs (otherwise it may just be a list of unpunctuated sentences)
        is_wrapped = (
            has_blank and i + 1 < len(sample) and bool(sample[i + 1]) and not ends_sentence(sample[i])
        )
        multi += is_multi
        wrapped += is_wrapped
        evidence += is_multi or is_wrapped
    if evidence and evidence >= MAJORITY * len(nonblank):
        return PARAGRAPHS, (
            f"of {len(nonblank)} sampled lines, {multi} hold several sentences and {wrapped} continue on the next"
        )
    return LINES, f"{len(nonblank) - evidence} of {len(nonblank)} sampled lines hold one sentence"


def paragraphs_to_sentences(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """(line number, line) -> (line number where the sentence's paragraph starts, sentence).

    A paragraph is a run of non-blank lines; a line that does not end a sentence is joined with the next
    (hard-wrapped text), a line that does starts a new block (one paragraph per line, as in wikitext).
    """
    block: list[str] = []
    block_start = 0
    for lineno, line in lines:
        s = line.strip()
        if not s:
            if block:
                yield from ((block_start, x) for x in split_sentences(" ".join(block)))
                block = []
            continue
        if not block:
            block_start = lineno
        block.append(s)
        if ends_sentence(s):
            yield from ((block_start, x) for x in split_sentences(" ".join(block)))
            block = []
    if block:
        yield from ((block_start, x) for x in split_sentences(" ".join(block)))
