"""The fast cleaning path gives EXACTLY the rows of the reference path on any text.

``stylegrpo.data_builder.cleaning`` runs NFKC and its six replacement regexes only on the rows they can change and
counts letters/symbols of non-ASCII rows from per-code-point tables. The reference below is the direct
version (kept here): NFKC and every replacement on every non-ASCII row, Unicode regexes for the counts,
and the URL/markup regexes on every non-ASCII row. Both must agree on normalized text, lengths, letter
fractions and drop codes for a varied sample: accents, curly quotes, dashes, look-alikes (full-width
forms, ligatures, math letters, Kelvin sign, long s), invisible and control characters, combining marks,
scripts without case, emoji, URLs and markup hidden among them, long rows, and random code points.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stylegrpo.data_builder import cleaning as c


# --- the reference (the direct implementation) -------------------------------------------------------
def ref_normalize_full(arr):
    arr = pc.utf8_normalize(arr, "NFKC")
    arr = pc.replace_substring_regex(arr, c._ODD_SPACE, " ")
    arr = pc.replace_substring_regex(arr, c._INVISIBLE, "")
    arr = pc.replace_substring_regex(arr, c._SINGLE_QUOTES, "'")
    arr = pc.replace_substring_regex(arr, c._DOUBLE_QUOTES, '"')
    arr = pc.replace_substring_regex(arr, c._HYPHENS, "-")
    return pc.replace_substring_regex(arr, c._LONG_DASHES, " - ")


def ref_normalize(arr):
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    offsets, data = c._byte_view(arr)
    full = c._rows_with(offsets, (data >= 127) | (data < 32)) > 0
    arr = c._on_rows(arr, full, ref_normalize_full)
    offsets, data = c._byte_view(arr)
    if not len(data):
        return arr
    space = data == 32
    double = c._rows_with(offsets, np.concatenate([space[:-1] & space[1:], [False]])) > 0
    nonempty = offsets[1:] > offsets[:-1]
    starts = np.minimum(offsets[:-1], len(data) - 1)
    ends = np.maximum(offsets[1:] - 1, 0)
    edge = nonempty & (space[starts] | space[ends]) if len(arr) else np.zeros(0, dtype=bool)
    return c._on_rows(arr, full | double | edge, c._fix_spaces)


def ref_filter_codes(arr, options):
    offsets, data = c._byte_view(arr)
    nbytes = np.diff(offsets).astype(np.int64)
    counts = c._exact_counts(offsets, data)
    spaces, punct, symbols, markup, high, url = counts
    high = high > 0
    chars = nbytes.copy()
    letters = (nbytes - spaces - punct - symbols).astype(np.float64)
    symbols = symbols.copy()
    if high.any():
        sub = arr.filter(pa.array(high))
        chars[high] = pc.utf8_length(sub).to_numpy(zero_copy_only=False)
        letters[high] = pc.count_substring_regex(sub, r"[\pL\pM]").to_numpy(zero_copy_only=False)
        symbols[high] = pc.count_substring_regex(sub, r"[^\pL\pM\s.,!?'\"\-;:()]").to_numpy(
            zero_copy_only=False
        )
    counted = letters + symbols
    fraction = np.where(counted > 0, letters / np.maximum(counted, 1), 1.0)
    words = np.where(chars > 0, spaces + 1, 0)
    maybe_markup, maybe_url = (markup > 0) | high, (url > 0) | high
    checks = [
        ("empty", chars == 0),
        ("special_token", c._match(arr, c._SPECIAL_TOKEN, maybe_markup)),
        ("url", c._match(arr, c._URL, maybe_url)),
        ("markup", c._match(arr, c._MARKUP, maybe_markup)),
        ("not_prose", fraction < options.min_letter_fraction),
        ("too_short", chars < options.min_chars),
        ("too_long", chars > options.max_chars),
        ("too_few_words", words < options.min_words),
        ("too_many_words", words > options.max_words),
    ]
    codes = np.zeros(len(arr), dtype=np.int8)
    for name, hit in reversed(checks):
        codes[hit] = c.REASON_CODE[name]
    return codes, chars, words, fraction


# --- the sample ---------------------------------------------------------------------------------------
PIECES = [
    "The quick brown fox jumps over the lazy dog.", "café", "naïve", "Ångström", "Straße", "Øresund",
    "\u201cquoted\u201d", "\u2018single\u2019", "it\u2019s", "\u00abguillemets\u00bb", "\u201elow\u201c",
    "en\u2013dash", "em\u2014dash", "minus \u2212 5", "non\u2011breaking", "\u2015bar", "\u2032prime\u2033",
    "…", "\u2024", "\u203c", "ﬁne ﬂow", "ＦＵＬＬ ｗｉｄｔｈ", "＜｜eot｜＞", "<|eot_id|>", "𝐁𝐨𝐥𝐝 𝔣𝔯𝔞𝔨",
    "\u212a elvin", "\u017fong s", "ſtraße", "\u0130stanbul", "\u0131", "e\u0301", "a\u0308\u0323",
    "\u1100\u1161", "한국어", "日本語のテキスト", "中文", "Ελληνικά", "русский", "עברית", "العربية",
    "हिन्दी", "emoji 😀👍🏽", "\U000e0041tag", "zero\u200bwidth", "join\u200dme", "\ufeffbom", "\u00adsoft",
    "bidi\u202eevil\u202c", "\u2066iso\u2069", "nb\u00a0sp", "thin\u2009space", "ideo\u3000space",
    "tab\there", "new\nline", "vt\x0bff\x0c", "cr\r", "nel\x85", "ogham\u1680", "ls\u2028ps\u2029",
    "bell\x07", "del\x7f", "c1\x9f", "www.example.com", "WwW.exämple", "www. later", "wWw.ñ",
    "mail ñ@x.org", "http://ü.de", "visit exämple.com", "exämple.COM!", "<p>é</p>", "&amp;é", "[[wiki]] é",
    "**bold** é", "__init__ é", "# título", "{{tpl}}", "a|b", "back\\slash", "½ ¼ ³", "№ ™ ℃", "Ⅻ ⅷ",
    "①②", "¨", "ǅ ǈ", "ĳ", "ŉ", "\u0345", "\u0f73", "\u0cc6\u0cc2", "\u09c7\u09be", "x" * 300,
    "ü" * 600, "  double  spaces  ", " lead", "trail ", "", " ", "12 34 56 78", "$$$ %%% é",
    "\ud7ff\ue000\uffff", "\U0010fffd", "\U0001f600\U0001f600",
]  # fmt: skip


def sample(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    out = list(PIECES)
    blocks = [(0x20, 0x7F), (0x80, 0x250), (0x250, 0x2000), (0x2000, 0x2070), (0x2070, 0x3000),
              (0x3000, 0xD800), (0xE000, 0x10000), (0x10000, 0x30000), (0xE0000, 0xE0080)]  # fmt: skip
    for _ in range(n):
        parts = []
        for _ in range(int(rng.integers(1, 8))):
            r = rng.random()
            if r < 0.5:
                parts.append(PIECES[int(rng.integers(len(PIECES)))])
            else:
                lo, hi = blocks[int(rng.integers(len(blocks)))]
                parts.append("".join(chr(int(x)) for x in rng.integers(lo, hi, size=int(rng.integers(1, 6)))))
        out.append(" ".join(parts) if rng.random() < 0.7 else "".join(parts))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_same_rows_as_reference(seed):
    texts = pa.array(sample(seed=seed) + [None], pa.string())
    options = c.CleanOptions()
    ours, ref = c.normalize(texts), ref_normalize(texts)
    assert ours.to_pylist() == ref.to_pylist()
    codes, stats = c.filter_codes(ours, options)
    ref_codes, chars, words, fraction = ref_filter_codes(ref, options)
    np.testing.assert_array_equal(stats.chars, chars)
    np.testing.assert_array_equal(stats.words, words)
    np.testing.assert_array_equal(stats.letter_fraction, fraction)
    np.testing.assert_array_equal(codes, ref_codes)
    assert (codes == c.KEEP).sum() > 100 and len(set(codes.tolist())) >= 6  # the sample exercises the filters


def test_same_rows_on_sliced_and_ascii_arrays():
    texts = pa.array(sample(n=500, seed=2), pa.string()).slice(37, 300)  # an array with an offset
    assert c.normalize(texts).to_pylist() == ref_normalize(texts).to_pylist()
    ascii_only = pa.array(["Plain text here.", "visit www. now", "a  b ", ""], pa.string())
    assert c.normalize(ascii_only).to_pylist() == ref_normalize(ascii_only).to_pylist()
    codes, _ = c.filter_codes(c.normalize(ascii_only), c.CleanOptions())
    np.testing.assert_array_equal(codes, ref_filter_codes(ref_normalize(ascii_only), c.CleanOptions())[0])


def test_stable_table_is_what_it_claims():
    """Every character the fast path lets skip NFKC and the invisible pass: NFKC keeps it, also next to
    ASCII letters and the other table characters, and RE2 does not call it a control/format character."""
    table = c._stable_table()
    chars = [chr(i) for i in np.flatnonzero(table)]
    assert "é" in chars and "\u2019" in chars and "\u00a0" not in chars and "\u00ad" not in chars
    pairs = pa.array([a + b for a in chars + ["a", "e"] for b in chars + ["a", "e"]])
    assert pc.all(pc.equal(pc.utf8_normalize(pairs, "NFKC"), pairs)).as_py()
    assert not pc.any(pc.match_substring_regex(pa.array(chars), c._INVISIBLE)).as_py()


def test_nfkc_changes_is_the_direct_comparison():
    texts = pa.array(sample(n=3000, seed=3) + [None, "", "plain"], pa.string())
    direct = pc.fill_null(pc.not_equal(pc.utf8_normalize(texts, "NFKC"), texts), False)
    ours = c.nfkc_changes(texts)
    np.testing.assert_array_equal(ours, direct.to_numpy(zero_copy_only=False))
    assert 100 < ours.sum() < len(texts) - 100  # both kinds of rows are in the sample
    marked = pc.fill_null(pc.match_substring_regex(texts, r"[<|>]"), False).to_numpy(zero_copy_only=False)
    with_marks = c.nfkc_changes(texts, marks=b"<|>")  # the prompt check: a marker byte or an NFKC change
    np.testing.assert_array_equal(with_marks, ours | marked)
    assert (marked & ~ours).any() and (ours & ~marked).any()


def test_long_rows_and_prose_like_rows_match_the_reference():
    """Rows longer than the compiled counters' 16-bit fields (flushed every 65,535 bytes), and prose with
    curly quotes, accents, dashes, NFKC forms and control characters as a real corpus has them."""
    rng = np.random.default_rng(4)
    words = ["the", "café", "naïve", "it\u2019s", "\u201cyes\u201d", "a\u2014b", "ﬁne", "x:y", "www.a", "ok."]
    long_rows = [" ".join(rng.choice(words, size=n)) for n in (20_000, 40_000)]
    prose = [
        f"{'  ' if i % 7 == 0 else ''}{' '.join(rng.choice(words, size=int(rng.integers(3, 30))))}"
        f"{chr(int(rng.choice([9, 10, 13, 0x85, 0x200B, 0xA0, 0x3000, 32])))}"
        for i in range(3000)
    ]
    texts = pa.array(long_rows + prose + ["\u00e9" * 70_000, "a." * 40_000], pa.string())
    ours, ref = c.normalize(texts), ref_normalize(texts)
    assert ours.to_pylist() == ref.to_pylist()
    options = c.CleanOptions(max_chars=10**6, max_words=10**6)
    codes, stats = c.filter_codes(ours, options)
    ref_codes, chars, words_, fraction = ref_filter_codes(ref, options)
    np.testing.assert_array_equal(stats.chars, chars)
    np.testing.assert_array_equal(stats.words, words_)
    np.testing.assert_array_equal(stats.letter_fraction, fraction)
    np.testing.assert_array_equal(codes, ref_codes)
    assert stats.chars[0] > 65_535 and (codes == c.KEEP).sum() > 300


def test_text_hashes_are_pandas_hash_array():
    """The compiled SipHash gives pandas' hashes (they decide the split: changing them moves texts)."""
    import pandas as pd

    texts = pa.array(sample(n=2000, seed=5) + ["", "a", "x" * 7, "y" * 8, "z" * 9, "é" * 15], pa.string())
    want = pd.util.hash_array(texts.to_numpy(zero_copy_only=False), categorize=False)
    np.testing.assert_array_equal(c.text_hashes(texts), want)
    np.testing.assert_array_equal(c.text_hashes(texts.slice(10, 50)), want[10:60])
    rows = np.array([5, 0, 2000, 5, 2005])  # chosen rows, in any order, repeated
    np.testing.assert_array_equal(c.text_hashes(texts, rows), want[rows])
    np.testing.assert_array_equal(c.text_hashes(texts.slice(10, 50), np.array([3])), want[[13]])
    with pytest.raises(IndexError):
        c.text_hashes(texts.slice(10, 50), np.array([50]))


@pytest.mark.parametrize("seed", [6, 7])
def test_normalize_measure_is_normalize_then_measure(seed):
    """The build's one-pass version (counts taken while rewriting) equals the two calls."""
    texts = pa.array(sample(n=3000, seed=seed) + [None, "", " ", "\u00e9 ", " \u3000x\u3000"], pa.string())
    joint, stats = c.normalize_measure(texts)
    alone = c.normalize(texts)
    assert joint.to_pylist() == alone.to_pylist()
    want = c.measure(alone)
    for name in ("chars", "words", "letter_fraction", "maybe_markup", "maybe_url"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(want, name), err_msg=name)


def test_printable_ascii_rows_counted_while_rewritten_equal_the_counts_after():
    """Rows of printable ASCII are counted during the rewrite (12-bit fields, up to 4,095 bytes); the
    counts and hints equal those of ``measure`` on the written rows: collapsed, leading and trailing
    spaces, "." before a letter (also at the row end or before a dropped space), ":" and "@", markup
    bytes, and rows either side of the field limit."""
    rng = np.random.default_rng(8)
    alphabet = list("abcXYZ .,!?;:'\"-()<>[]{}|#*_&@/\\$%0123456789") + ["  ", "   ", ". a", ".b", "www."]
    rows = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 60)))) for _ in range(4000)]
    rows += ["   ", " ", "", "a.", "a. ", " .b ", "x:y", "me@you", "<p>", "a  .  b", "end.z"]
    rows += ["ab " * 1365, "ab " * 1365 + "c", " " + "a" * 4094, "a" * 4095, "a" * 4096, "a." * 3000]
    texts = pa.array(rows, pa.string())
    joint, stats = c.normalize_measure(texts)
    assert joint.to_pylist() == ref_normalize(texts).to_pylist()
    want = c.measure(joint)
    for name in ("chars", "words", "letter_fraction", "maybe_markup", "maybe_url"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(want, name), err_msg=name)
    assert stats.maybe_url.sum() > 100 and (~stats.maybe_url).sum() > 100  # both kinds of rows


def test_take_strings_is_arrow_take():
    """The builder's sized compiled take equals Arrow's on sliced arrays, repeats, empty strings, non-ASCII
    text and no rows; arrays with nulls go to Arrow's take; a row out of range raises."""
    texts = pa.array(sample(n=500, seed=9) + ["", "é" * 300], pa.string())
    rng = np.random.default_rng(9)
    for arr in (texts, texts.slice(17, 300)):
        for rows in (rng.integers(0, len(arr), 1000), np.array([], dtype=np.int64), np.arange(len(arr))):
            assert c.take_strings(arr, rows).equals(arr.take(pa.array(rows, pa.int64())))
    with_null = pa.array(["a", None, "b"])
    assert c.take_strings(with_null, np.array([1, 2])).to_pylist() == [None, "b"]
    with pytest.raises(IndexError):
        c.take_strings(texts, np.array([len(texts)]))
