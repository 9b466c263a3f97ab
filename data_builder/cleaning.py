"""Text cleaning for TTS prompts: normalization, speakability filters, length limits, exact de-duplication.

Everything here works on whole Arrow string arrays at a time (vectorized Arrow compute and numpy over
the UTF-8 bytes), so a million lines clean in a couple of seconds without a per-line Python loop.

Length defaults are derived from Llasa's budget: the model was trained with at most 2048 tokens per
sequence (prompt + speech), and XCodec2 speaks 50 tokens per second (``CODEC_TOKENS_PER_SECOND``).
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylegrpo.audio import CODEC_TOKENS_PER_SECOND
from stylegrpo.errors import StyleGRPOError

from .kernels import BMP, DROP, KEEP_CHAR, TO_DQUOTE, TO_HYPHEN, TO_QUOTE, TO_SPACE, TO_SPACED_HYPHEN, kernels

log = logging.getLogger(__name__)

LLASA_MAX_TOKENS = 2048  # Llasa's training sequence length (prompt + speech tokens); generation stops there
PROMPT_TOKEN_ALLOWANCE = 150  # chat header + instruction + style phrase + text (~1 token per 4 chars of 250)
CHARS_PER_SECOND = 14.0  # English read speech: ~150 words/min x ~5.6 characters per word (with its space)
SLOWEST_RATE_FACTOR = 1.4  # slow styles (elderly, calm narrator: 2.5-4 syllables/s vs ~4.5) take ~1.4x longer

# Defaults (each overridable on the command line):
MIN_WORDS = 3  # 1-2 words give CLAP too little audio to judge a style and make CER all-or-nothing
MAX_WORDS = 45  # 45 words ~ 18 s at 150 words/min, ~25 s for the slowest styles: within the 2048-token budget
MIN_CHARS = 10  # ~0.7 s of speech; together with MIN_WORDS drops fragments like "Oh. Ah."
MAX_CHARS = 250  # 250 / 14 chars/s ~ 18 s, x1.4 for slow styles = 25 s = 1250 speech tokens (+prompt < 2048)
MIN_LETTER_FRACTION = 0.6  # digits/symbols have several spoken forms ("1/2", "$5"): ASR references become
# ambiguous and Llasa reads them unreliably; prose is > 90% letters (punctuation and spaces are not counted)


def estimated_seconds(chars: np.ndarray | float) -> np.ndarray | float:
    """Speech duration estimated from characters at a normal reading rate."""
    return chars / CHARS_PER_SECOND


def worst_case_tokens(max_chars: int) -> int:
    """Prompt + speech tokens of the longest allowed text spoken by the slowest style."""
    seconds = max_chars / CHARS_PER_SECOND * SLOWEST_RATE_FACTOR
    return int(PROMPT_TOKEN_ALLOWANCE + seconds * CODEC_TOKENS_PER_SECOND)


@dataclass(frozen=True)
class CleanOptions:
    min_chars: int = MIN_CHARS
    max_chars: int = MAX_CHARS
    min_words: int = MIN_WORDS
    max_words: int = MAX_WORDS
    min_letter_fraction: float = MIN_LETTER_FRACTION

    def validate(self) -> None:
        if self.min_chars < 1 or self.min_words < 1:
            raise StyleGRPOError("--min-chars and --min-words must be at least 1")
        if self.min_chars > self.max_chars:
            raise StyleGRPOError(f"--min-chars {self.min_chars} is above --max-chars {self.max_chars}")
        if self.min_words > self.max_words:
            raise StyleGRPOError(f"--min-words {self.min_words} is above --max-words {self.max_words}")
        if not 0.0 <= self.min_letter_fraction <= 1.0:
            raise StyleGRPOError(f"--min-letter-fraction must be in [0, 1], got {self.min_letter_fraction}")
        tokens = worst_case_tokens(self.max_chars)
        if tokens > LLASA_MAX_TOKENS:
            log.warning(
                "--max-chars %d: the slowest styles may need ~%d tokens, above Llasa's %d; long items will be "
                "truncated at generation time",
                self.max_chars,
                tokens,
                LLASA_MAX_TOKENS,
            )


# Why a line was dropped. Order = priority: a line is counted under the first reason that applies.
REASONS: dict[str, str] = {
    "undecodable": "not valid UTF-8",
    "unparsable": "a record that could not be parsed (invalid JSON or CSV row)",
    "no_text": "the text column was missing or null in that record",
    "empty": "empty after normalization",
    "special_token": "contains a <|...|> special token (would break the prompt markers)",
    "url": "contains a URL, web address or e-mail address",
    "markup": "contains HTML/XML tags or entities, wiki or markdown markup, or code characters {}<>|\\",
    "not_prose": "mostly digits or symbols (letter fraction below --min-letter-fraction)",
    "too_short": "fewer characters than --min-chars",
    "too_long": "more characters than --max-chars",
    "too_few_words": "fewer words than --min-words",
    "too_many_words": "more words than --max-words",
    "duplicate": "exact duplicate of an earlier text (after normalization)",
    "too_long_to_speak": "the slowest selected style would need more than --max-seconds to speak it",
}
KEEP = 0
_FILTER_REASONS = [
    "empty",
    "special_token",
    "url",
    "markup",
    "not_prose",
    "too_short",
    "too_long",
    "too_few_words",
    "too_many_words",
]
REASON_CODE = {name: i + 1 for i, name in enumerate(_FILTER_REASONS)}
DUPLICATE = len(_FILTER_REASONS) + 1
TOO_LONG_TO_SPEAK = DUPLICATE + 1  # set by the build (it knows the styles), after de-duplication
CODE_REASON = {code: name for name, code in REASON_CODE.items()} | {
    DUPLICATE: "duplicate",
    TOO_LONG_TO_SPEAK: "too_long_to_speak",
}

# --- normalization patterns (RE2 syntax, applied by Arrow) -------------------------------------------
_ODD_SPACE = r"[\t\n\v\f\r\x{85}\x{1680}\x{2028}\x{2029}]"  # what NFKC leaves that is still whitespace
_INVISIBLE = r"[\p{Cc}\p{Cf}]"  # control and format characters: zero-width spaces/joiners, BOM, bidi marks
_SINGLE_QUOTES = "[\u2018\u2019\u201a\u201b\u2032\u2035\u2039\u203a]"  # curly/low single quotes, prime
_DOUBLE_QUOTES = "[\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb]"  # curly/low double quotes, guillemets
_HYPHENS = "[\u2010\u2011\u2012\u2013\u2212]"  # hyphen, non-breaking hyphen, figure/en dash, minus sign
_LONG_DASHES = "[\u2014\u2015]"  # em dash, horizontal bar: a pause between words

# --- filter patterns ---------------------------------------------------------------------------------
_SPECIAL_TOKEN = r"<\|[^<>]*\|>"
_URL = (
    r"(?i)(?:https?://|ftp://|\bwww\.)"
    r"|\b[a-z0-9._%+-]+@[a-z0-9-]+\.[a-z0-9.-]+"
    r"|\b[a-z0-9-]+\.(?:com|org|net|edu|gov|io|ai|co\.uk|html?|php|aspx?)\b"
)
_MARKUP = (
    r"</?[A-Za-z][^<>]*>|<!--|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);"  # tags, entities
    r"|\[\[|\]\]|\{\{|\}\}|\[[^\]]*\]\(|^#{1,6}\s|\*\*|__"  # wiki links/templates, markdown
    r"|[{}<>|\\]"  # characters of code and markup, never of prose
)
_NEUTRAL = " .,!?'\"-;:()"  # spaces and everyday punctuation: neither letters nor "symbols"
_MARKUP_BYTES = b"<>&[]{}|\\*_#"  # a row needs the markup/special-token regexes only if it has one of these
_URL_BYTES = b":@"  # ...and the URL regex only if it has one of these or a "." directly before a letter

# One class per byte value, so a batch is classified with a single table lookup.
_LETTER, _SPACE, _PUNCT, _SYMBOL, _MARKUPISH, _HIGH, _CONTROL = range(7)
_CLASS = np.full(256, _SYMBOL, dtype=np.uint8)  # digits and other ASCII symbols
_CLASS[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)] = _LETTER
_CLASS[np.frombuffer(_NEUTRAL.encode(), np.uint8)] = _PUNCT
_CLASS[ord(" ")] = _SPACE
_CLASS[np.frombuffer(_MARKUP_BYTES, np.uint8)] = _MARKUPISH
_CLASS[128:] = _HIGH  # UTF-8 lead and continuation bytes: the row is not plain ASCII
_CLASS[:32] = _CONTROL
_CLASS[127] = _CONTROL


def _byte_view(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets relative to the data, UTF-8 data) of a string array, without copying the data."""
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=len(arr) + 1 + arr.offset)[arr.offset :]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _rows_with(offsets: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Number of flagged bytes in each row (flags are sparse: positions, then a binary search per row)."""
    positions = np.flatnonzero(flags)
    return np.diff(np.searchsorted(positions, offsets))


def _normalize_full(arr: pa.Array) -> pa.Array:
    """NFKC, quotes, dashes, invisible characters and odd whitespace (for rows that are not plain ASCII).

    The result is that of applying NFKC and then each of the six replacements to every row; each step is
    only run on the rows it can change, found from the rows' code points (``_code_points``): NFKC on rows
    with a character outside ``_stable_table()`` (most accented letters and curly quotes are inside it),
    each explicit replacement on rows holding one of its characters, the invisible-character pass on rows
    with a control byte or a character outside the table. (The table holds only characters that NFKC keeps
    in any context and that are neither control nor format characters, as Arrow's own NFKC and RE2 say.)
    """
    stable = _stable_table()

    def unstable(rows, cps):  # rows with a character outside the table
        return _rows_any(len(arr), rows, (cps >= len(stable)) | ~stable[np.minimum(cps, len(stable) - 1)])

    arr = _on_rows(arr, unstable(*_code_points(arr)), _nfkc)
    rows, cps = _code_points(arr)  # the rows NFKC changed have new characters
    n = len(arr)
    offsets, data = _byte_view(arr)
    control = _rows_with(offsets, (data < 32) | (data == 127)) > 0  # ASCII controls, tabs, line ends
    for pattern, replacement, hit in (
        (_ODD_SPACE, " ", control | _rows_any(n, rows, np.isin(cps, _ODD_SPACE_CPS))),
        (_INVISIBLE, "", control | unstable(rows, cps)),
        (_SINGLE_QUOTES, "'", _rows_any(n, rows, np.isin(cps, _SINGLE_QUOTE_CPS))),
        (_DOUBLE_QUOTES, '"', _rows_any(n, rows, np.isin(cps, _DOUBLE_QUOTE_CPS))),
        (_HYPHENS, "-", _rows_any(n, rows, np.isin(cps, _HYPHEN_CPS))),
        (_LONG_DASHES, " - ", _rows_any(n, rows, np.isin(cps, _LONG_DASH_CPS))),
    ):  # none of them creates a character another one replaces: the candidates are found once
        arr = _on_rows(arr, hit, _regex_replacer(pattern, replacement))
    return arr


def nfkc_changes(arr: pa.Array, marks: bytes = b"") -> np.ndarray:
    """Per row: NFKC would change the text (as ``pc.not_equal(pc.utf8_normalize(arr, "NFKC"), arr)``,
    nulls False), computed only on rows with a character outside ``_stable_table()``; or (``marks``) the
    row holds one of these ASCII bytes. One compiled pass over the bytes finds both kinds of rows."""
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    offsets, data = _byte_view(arr)
    flag = np.zeros(256, dtype=bool)
    flag[list(marks)] = True
    out, maybe = kernels().scan_rows(offsets, data, flag, _stable_table())
    maybe &= ~out  # rows already flagged need no NFKC
    if maybe.any():
        sub = arr.filter(pa.array(maybe))
        out[maybe] = pc.not_equal(_nfkc(sub), sub).to_numpy(zero_copy_only=False)
    return out


def _nfkc(arr: pa.Array) -> pa.Array:
    return pc.utf8_normalize(arr, "NFKC")  # full-width forms, ligatures, "…" -> "...", NBSP -> space


def _regex_replacer(pattern: str, replacement: str):
    return lambda a: pc.replace_substring_regex(a, pattern, replacement)


def _cps(pattern: str) -> np.ndarray:
    """The code points of a character-class pattern written as explicit characters."""
    return np.array([ord(c) for c in pattern.strip("[]")], dtype=np.int64)


_ODD_SPACE_CPS = np.array([9, 10, 11, 12, 13, 0x85, 0x1680, 0x2028, 0x2029], dtype=np.int64)  # = _ODD_SPACE
_SINGLE_QUOTE_CPS = _cps(_SINGLE_QUOTES)
_DOUBLE_QUOTE_CPS = _cps(_DOUBLE_QUOTES)
_HYPHEN_CPS = _cps(_HYPHENS)
_LONG_DASH_CPS = _cps(_LONG_DASHES)
# Blocks whose characters may skip NFKC and the invisible pass (Latin-1, Latin Extended-A/B, General
# Punctuation: accented letters, curly quotes, dashes); the table keeps those of them that qualify.
_STABLE_BLOCKS = ((0x00A0, 0x0250), (0x2010, 0x2060))


@functools.cache
def _stable_table() -> np.ndarray:
    """table[cp]: NFKC leaves the character unchanged in any string (NFKC of it is itself, combining class
    0, not a mark) and it is neither a control nor a format character (RE2's \\p{Cc}\\p{Cf})."""
    table = np.zeros(_STABLE_BLOCKS[-1][1], dtype=bool)
    cps = np.concatenate([np.arange(lo, hi) for lo, hi in _STABLE_BLOCKS])
    chars = [chr(c) for c in cps]
    arr = pa.array(chars, pa.string())
    same = pc.equal(pc.utf8_normalize(arr, "NFKC"), arr).to_numpy(zero_copy_only=False)
    invisible = pc.match_substring_regex(arr, _INVISIBLE).to_numpy(zero_copy_only=False)
    plain = np.array(
        [unicodedata.combining(c) == 0 and unicodedata.category(c)[0] not in "MZC" for c in chars]
    )
    table[cps] = same & ~invisible & plain
    return table


def _code_points(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(row, code point) of every NON-ASCII character of a UTF-8 string array (sparse in real text:
    only the lead bytes are decoded)."""
    offsets, data = _byte_view(arr)
    if not len(offsets) or offsets[-1] == offsets[0]:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo, hi = int(offsets[0]), int(offsets[-1])
    starts = np.flatnonzero(data[lo:hi] >= 0xC0) + lo  # lead bytes of multi-byte characters
    padded = np.concatenate([data[:hi], np.zeros(3, np.uint8)])
    b0 = padded[starts].astype(np.int64)
    b1, b2, b3 = ((padded[starts + k] & 0x3F).astype(np.int64) for k in (1, 2, 3))
    cps = np.where(
        b0 < 0xE0,
        ((b0 & 0x1F) << 6) | b1,
        np.where(
            b0 < 0xF0, ((b0 & 0x0F) << 12) | (b1 << 6) | b2, ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3
        ),
    )
    rows = np.searchsorted(offsets, starts, side="right") - 1
    return rows, cps


def _rows_any(n: int, rows: np.ndarray, hit: np.ndarray) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[rows[hit]] = True
    return out


def _fix_spaces(arr: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, "  +", " "))


def _on_rows(arr: pa.Array, rows: np.ndarray, fn) -> pa.Array:
    """Apply ``fn`` to the rows where ``rows`` is True only (most rows of real text need nothing)."""
    if not rows.any():
        return arr
    mask = pa.array(rows)
    return pc.replace_with_mask(arr, mask, fn(arr.filter(mask)))


def normalize(arr: pa.Array) -> pa.Array:
    """Unicode NFKC, straight quotes and dashes, no invisible characters, single spaces, trimmed.

    Exactly ``_normalize_direct`` (NFKC and the six replacements on rows that are not plain printable
    ASCII, then ``_fix_spaces``), in one compiled pass: NFKC (Arrow) only on the rows with a character
    outside ``_stable_table()``; then every character is replaced as ``_action_table()`` says (the six
    replacements are per character and none creates a character another one replaces), spaces collapsed
    and trimmed on the way. Rows with a character beyond the Basic Multilingual Plane take the direct
    path; rows that end or start with a non-ASCII character after that get Arrow's Unicode trim.
    """
    return normalize_measure(arr)[0]


def normalize_measure(arr: pa.Array) -> tuple[pa.Array, TextStats]:
    """``normalize(arr)`` and ``measure`` of it, the counts taken in the same compiled pass."""
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    k = kernels()
    tables = (*_count_weights(), *_class_tables(), _HINT_BYTES)
    offsets, data = _byte_view(arr)
    new_offsets, new_data, beyond, unstable, counts = k.rewrite(
        offsets, data, _action_table(), _stable_table(), _fast_weights(), *tables
    )
    out = _from_buffers(new_offsets, new_data)
    if unstable.any():  # NFKC first on these rows, then the same pass
        mask = pa.array(unstable)
        sub_offsets, sub_data = _byte_view(_nfkc(arr.filter(mask)))
        sub_offsets, sub_data, sub_beyond, _, sub_counts = k.rewrite(
            sub_offsets, sub_data, _action_table(), _stable_table(), _fast_weights(), *tables
        )
        out = pc.replace_with_mask(out, mask, _from_buffers(sub_offsets, sub_data))
        beyond[unstable] |= sub_beyond
        for whole, part in zip(counts, sub_counts, strict=True):
            whole[unstable] = part
        new_offsets, new_data = _byte_view(out)
    redo = beyond.copy()
    if len(new_data):
        ends = new_offsets[1:] > new_offsets[:-1]
        first = new_data[np.minimum(new_offsets[:-1], len(new_data) - 1)]
        last = new_data[np.maximum(new_offsets[1:] - 1, 0)]
        trim = ends & ((first >= 0x80) | (last >= 0x80)) & ~beyond
        out = _on_rows(out, trim, pc.utf8_trim_whitespace)
        redo |= trim
    if beyond.any():  # characters outside the action table (emoji, astral format characters)
        mask = pa.array(beyond)
        out = pc.replace_with_mask(out, mask, _normalize_direct(arr.filter(mask)))
    if redo.any():  # rows changed after the pass: counted again
        sub_offsets, sub_data = _byte_view(out.filter(pa.array(redo)))
        for whole, part in zip(counts, k.counts(sub_offsets, sub_data, *tables), strict=True):
            whole[redo] = part
    return out, _stats(out, counts)


def _normalize_direct(arr: pa.Array) -> pa.Array:
    """The normalization of rows as the Arrow/numpy passes do it (see ``normalize``)."""
    offsets, data = _byte_view(arr)
    full = _rows_with(offsets, (data >= 127) | (data < 32)) > 0  # non-ASCII, control characters, tabs
    arr = _on_rows(arr, full, _normalize_full)
    offsets, data = _byte_view(arr)
    n = len(arr)
    if not len(data):
        return arr
    space = data == 32
    double = _rows_with(offsets, np.concatenate([space[:-1] & space[1:], [False]])) > 0
    nonempty = offsets[1:] > offsets[:-1]
    starts = np.minimum(offsets[:-1], len(data) - 1)
    ends = np.maximum(offsets[1:] - 1, 0)
    edge = nonempty & (space[starts] | space[ends]) if n else np.zeros(0, dtype=bool)
    return _on_rows(arr, full | double | edge, _fix_spaces)


def _from_buffers(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    """A string array from int64 offsets (starting at 0) and its UTF-8 bytes."""
    if len(data) >= 2**31:  # pragma: no cover - a batch is a few MB
        return pa.LargeStringArray.from_buffers(
            len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data)
        ).cast(pa.string())
    return pa.StringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)
    )


def take_strings(arr: pa.Array, rows: np.ndarray) -> pa.Array:
    """``arr.take(rows)`` for a string array without nulls, in one sized compiled copy (Arrow's take grows
    its output buffer as it goes, re-copying it: ~3x slower on a batch of text). Other arrays: Arrow's."""
    rows = np.asarray(rows, dtype=np.int64)
    if arr.type != pa.string() or arr.null_count:
        return arr.take(pa.array(rows))
    if len(rows) and (rows.min() < 0 or rows.max() >= len(arr)):
        raise IndexError(f"take_strings: row out of range for {len(arr)} strings")
    return _from_buffers(*kernels().gather(*_byte_view(arr), rows))


@functools.cache
def _action_table() -> np.ndarray:
    """action[cp] for the Basic Multilingual Plane: what ``_normalize_full``'s six replacements do to that
    character, in their order (odd whitespace -> space first, then invisible characters dropped, then
    quotes, hyphens and long dashes), as RE2 matches the patterns."""
    table = np.full(BMP, KEEP_CHAR, dtype=np.uint8)
    for cps, action in (
        (_SINGLE_QUOTE_CPS, TO_QUOTE),
        (_DOUBLE_QUOTE_CPS, TO_DQUOTE),
        (_HYPHEN_CPS, TO_HYPHEN),
        (_LONG_DASH_CPS, TO_SPACED_HYPHEN),
    ):
        table[cps] = action
    table[_bmp_matches(_INVISIBLE)] = DROP
    table[_ODD_SPACE_CPS] = TO_SPACE
    table[ord(" ")] = TO_SPACE
    return table


def _bmp_matches(pattern: str) -> np.ndarray:
    """The BMP code points (no surrogates) that the RE2 pattern matches as a one-character string."""
    cps = _bmp_code_points()
    return cps[pc.match_substring_regex(_bmp_chars(), pattern).to_numpy(zero_copy_only=False)]


@functools.cache
def _bmp_code_points() -> np.ndarray:
    return np.concatenate([np.arange(0, 0xD800), np.arange(0xE000, 0x10000)])  # no surrogates in UTF-8


@functools.cache
def _bmp_chars() -> pa.Array:
    return pa.array([chr(c) for c in _bmp_code_points()], pa.string())


@dataclass
class TextStats:
    chars: np.ndarray  # characters per row
    words: np.ndarray  # words per row (single spaces after normalization: spaces + 1)
    letter_fraction: np.ndarray  # letters / (letters + digits + symbols); punctuation and spaces not counted
    maybe_markup: np.ndarray  # rows with a byte that markup, code or special tokens need
    maybe_url: np.ndarray  # rows with ":", "@" or a "." directly followed by a letter


_IS_LETTER = _CLASS == _LETTER


def _dot_letters(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Positions of a "." directly followed by a letter of the same row (a hint of a domain name)."""
    dots = np.flatnonzero(data[:-1] == 46)
    dots = dots[_IS_LETTER[data[dots + 1]]]
    row_start = offsets[np.minimum(np.searchsorted(offsets, dots + 1), len(offsets) - 1)] == dots + 1
    return dots[~row_start]


def _exact_counts(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """[6, rows] counts of spaces, punctuation, symbols, markup bytes, non-ASCII bytes, URL hints of ASCII
    classes (one numpy pass per counter; the reference the compiled ``measure`` is tested against)."""
    cls = _CLASS[data]
    url = np.isin(data, np.frombuffer(_URL_BYTES, np.uint8))
    url[_dot_letters(offsets, data)] = True
    flags = [
        cls == _SPACE,
        cls == _PUNCT,
        (cls == _SYMBOL) | (cls == _MARKUPISH),
        cls == _MARKUPISH,
        cls >= _HIGH,
        url,
    ]
    return np.stack([_rows_with(offsets, f) for f in flags])


def measure(arr: pa.Array) -> TextStats:
    """Lengths, letter fraction and regex candidates of normalized text, from one pass over its bytes.

    ASCII rows: characters are bytes, symbols are the bytes of digits and other symbols (``_CLASS``),
    letters the rest that is neither space nor everyday punctuation. Rows with a non-ASCII byte: characters
    are code points, letters and symbols as ``_LETTER_RE``/``_SYMBOL_RE`` match them (by table, or by
    the regexes for rows with a character beyond the Basic Multilingual Plane), and "www." in any case
    is a URL hint too. Every markup/special-token match needs an ASCII byte of ``_MARKUP_BYTES``; every
    URL match needs ":", "@", a "." before an ASCII letter (the domain endings) or "www.".
    """
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    offsets, data = _byte_view(arr)
    return _stats(arr, kernels().counts(offsets, data, *_count_weights(), *_class_tables(), _HINT_BYTES))


def _stats(arr: pa.Array, counts: tuple[np.ndarray, ...]) -> TextStats:
    """TextStats from the compiled per-row counts (rows with characters beyond the tables: regexes)."""
    chars, spaces, letters, symbols, markup, url, beyond = counts
    if beyond.any():  # characters outside the tables: the regexes
        far = arr.filter(pa.array(beyond))
        chars[beyond] = pc.utf8_length(far).to_numpy(zero_copy_only=False)
        letters[beyond] = pc.count_substring_regex(far, _LETTER_RE).to_numpy(zero_copy_only=False)
        symbols[beyond] = pc.count_substring_regex(far, _SYMBOL_RE).to_numpy(zero_copy_only=False)
    counted = letters + symbols
    fraction = np.where(counted > 0, letters / np.maximum(counted, 1), 1.0)
    words = np.where(chars > 0, spaces + 1, 0)
    return TextStats(chars=chars, words=words, letter_fraction=fraction, maybe_markup=markup, maybe_url=url)


@functools.cache
def _count_weights() -> tuple[np.ndarray, np.ndarray]:
    """Per byte, the 16-bit fields ``kernels.counts`` sums: (spaces, punctuation, symbols and markup
    bytes of ``_CLASS``, markup bytes) and (":" or "@", UTF-8 continuation bytes, ASCII letters and
    symbols as ``_LETTER_RE``/``_SYMBOL_RE`` match them)."""
    letter, symbol = _class_tables()
    b = np.arange(256)
    fields = [
        [_CLASS == _SPACE, _CLASS == _PUNCT, np.isin(_CLASS, (_SYMBOL, _MARKUPISH)), _CLASS == _MARKUPISH],
        [np.isin(b, list(_URL_BYTES)), (b & 0xC0) == 0x80, letter[b] & (b < 0x80), symbol[b] & (b < 0x80)],
    ]
    return tuple(
        sum((f.astype(np.uint64) << np.uint64(16 * k)) for k, f in enumerate(word)).astype(np.uint64)
        for word in fields
    )


@functools.cache
def _fast_weights() -> np.ndarray:
    """Per byte, the 12-bit fields ``kernels.rewrite`` sums over rows of printable ASCII: spaces,
    punctuation, symbols and markup bytes of ``_CLASS``, markup bytes, and ":" or "@" (a URL hint)."""
    b = np.arange(256)
    fields = [
        _CLASS == _SPACE,
        _CLASS == _PUNCT,
        np.isin(_CLASS, (_SYMBOL, _MARKUPISH)),
        _CLASS == _MARKUPISH,
        np.isin(b, list(_URL_BYTES)),
    ]
    return sum((f.astype(np.uint64) << np.uint64(12 * k)) for k, f in enumerate(fields)).astype(np.uint64)


_HINT_BYTES = np.zeros(256, dtype=bool)  # bytes that need a look at their neighbours in kernels.counts
_HINT_BYTES[[ord("."), ord("w"), ord("W")]] = True  # "." + letter (a domain), "www."
_HINT_BYTES[0xC0:] = True  # lead bytes of non-ASCII characters (decoded)


_LETTER_RE = r"[\pL\pM]"  # a letter or a mark (accents), Unicode-aware
_SYMBOL_RE = r"[^\pL\pM\s.,!?'\"\-;:()]"  # neither a letter nor whitespace nor everyday punctuation
_BMP = 0x10000  # code points classified by table; rows with characters above it use the regexes


@functools.cache
def _class_tables() -> tuple[np.ndarray, np.ndarray]:
    """is_letter[cp], is_symbol[cp] for the Basic Multilingual Plane, as RE2 matches _LETTER_RE/_SYMBOL_RE."""
    letter = np.zeros(_BMP, dtype=bool)
    symbol = np.zeros(_BMP, dtype=bool)
    letter[_bmp_matches(_LETTER_RE)] = True
    symbol[_bmp_matches(_SYMBOL_RE)] = True
    return letter, symbol


def filter_codes(
    arr: pa.Array, options: CleanOptions, stats: TextStats | None = None
) -> tuple[np.ndarray, TextStats]:
    """Reason code per row of normalized text (``KEEP`` = 0), and the rows' lengths (``stats``: those of
    ``measure(arr)`` when the caller has them, e.g. from ``normalize_measure``)."""
    stats = measure(arr) if stats is None else stats
    checks = [
        ("empty", stats.chars == 0),
        ("special_token", _match(arr, _SPECIAL_TOKEN, stats.maybe_markup)),
        ("url", _match(arr, _URL, stats.maybe_url)),
        ("markup", _match(arr, _MARKUP, stats.maybe_markup)),
        ("not_prose", stats.letter_fraction < options.min_letter_fraction),
        ("too_short", stats.chars < options.min_chars),
        ("too_long", stats.chars > options.max_chars),
        ("too_few_words", stats.words < options.min_words),
        ("too_many_words", stats.words > options.max_words),
    ]
    codes = np.zeros(len(arr), dtype=np.int8)
    for name, hit in reversed(checks):  # the first reason in REASONS order wins
        codes[hit] = REASON_CODE[name]
    return codes, stats


def _match(arr: pa.Array, pattern: str, candidates: np.ndarray) -> np.ndarray:
    """Rows matching a regex, which is only run on the candidate rows."""
    out = np.zeros(len(arr), dtype=bool)
    if candidates.any():
        sub = arr.filter(pa.array(candidates))
        out[candidates] = pc.match_substring_regex(sub, pattern).to_numpy(zero_copy_only=False)
    return out


# --- hashing and de-duplication ----------------------------------------------------------------------
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def text_hashes(arr: pa.Array, rows: np.ndarray | None = None) -> np.ndarray:
    """A 64-bit hash per string (of the strings at ``rows`` only, when given): ``pandas.util.hash_array``
    of the strings (SipHash-2-4 of the UTF-8 bytes with pandas' default key; stable across runs and
    machines), computed on the bytes in place."""
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    rows = np.arange(len(arr), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(arr)):  # the compiled hash checks no bounds
        raise IndexError(f"text_hashes: row out of range for {len(arr)} strings")
    if arr.null_count:  # pragma: no cover - cleaned text has no nulls; pandas hashes None its own way
        import pandas as pd

        return pd.util.hash_array(arr.take(pa.array(rows)).to_numpy(zero_copy_only=False), categorize=False)
    offsets, data = _byte_view(arr)
    return kernels().siphash(offsets, data, rows, *_SIPHASH_KEY)


_SIPHASH_KEY = tuple(  # pandas' _default_hash_key "0123456789123456" as SipHash's two little-endian words
    np.uint64(int.from_bytes(b"0123456789123456"[i : i + 8], "little")) for i in (0, 8)
)


def mix64(values: np.ndarray, seed: int) -> np.ndarray:
    """SplitMix64 finalizer of ``values`` xor a seed: a seeded, well-spread 64-bit hash."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass
class HashSet64:
    """An open-addressing set of 64-bit hashes in one numpy array: 16 bytes per distinct text.

    A Python ``set`` of ints costs ~70 bytes per entry; this keeps de-duplication of tens of millions of
    lines within a few hundred MB. Inserts are vectorized per batch.
    """

    capacity: int = 1 << 18  # 2 MB to start; doubles (and rehashes) whenever it is half full
    size: int = 0
    _table: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._table = np.zeros(self.capacity, dtype=np.uint64)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return self._table.nbytes

    def add(self, hashes: np.ndarray) -> np.ndarray:
        """Insert ``hashes``; return a mask of those seen for the first time (first occurrence in the batch)."""
        h = np.asarray(hashes, dtype=np.uint64)
        h = np.where(h == 0, np.uint64(1), h)  # 0 marks an empty slot
        out = np.zeros(len(h), dtype=bool)
        self._insert(h, out)
        return out

    def _insert(self, keys: np.ndarray, is_new: np.ndarray) -> None:
        """Insert in order (compiled), doubling the table whenever it would be more than half full."""
        insert = kernels().insert
        done = 0
        while True:
            done, self.size = insert(self._table, keys, is_new, done, self.size)
            if done == len(keys):
                return
            self._grow()

    def _grow(self) -> None:
        old = self._table[self._table != 0]
        self.capacity *= 2
        self._table = np.zeros(self.capacity, dtype=np.uint64)
        self.size = 0
        if len(old):
            self._insert(old, np.zeros(len(old), dtype=bool))
