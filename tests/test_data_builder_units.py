"""Units of the data builder: cleaning rules, sentence splitting, hashing, split and pairing arithmetic."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from stylegrpo.data_builder import cleaning, segment
from stylegrpo.data_builder.cleaning import REASON_CODE, CleanOptions, HashSet64
from stylegrpo.data_builder.corpora import default_corpus_path
from stylegrpo.data_builder.pairing import (
    CountSplitter,
    CyclingSampler,
    FractionSplitter,
    Pairer,
    parse_test_size,
)
from stylegrpo.data_builder.prompts import PromptRenderer
from stylegrpo.errors import StyleGRPOError
from stylegrpo.styles import PromptTemplate


def norm(*texts: str) -> list[str]:
    return cleaning.normalize(pa.array(list(texts))).to_pylist()


def reasons(*texts: str, **options) -> list[str]:
    codes, _ = cleaning.filter_codes(cleaning.normalize(pa.array(list(texts))), CleanOptions(**options))
    names = {v: k for k, v in REASON_CODE.items()}
    return [names.get(int(c), "keep") for c in codes]


def test_normalization():
    assert norm(
        "\ufeffＨｅｌｌｏ　ｗｏｒｌｄ",  # BOM, full-width letters and space
        "\u201cCurly\u201d and \u2018single\u2019 quotes \u00abhere\u00bb",
        "A dash\u2014then a range 3\u20135 and \u2212 minus",
        "zero\u200bwidth\u00adsoft and non\u00a0breaking",
        "  tabs\tand\nnew\r\nlines   and  spaces  ",
        "Wait\u2026 what",
        "plain ascii stays",
        None,
    ) == [
        "Hello world",
        '"Curly" and \'single\' quotes "here"',
        "A dash - then a range 3-5 and - minus",
        "zerowidthsoft and non breaking",
        "tabs and new lines and spaces",
        "Wait... what",
        "plain ascii stays",
        "",
    ]


def test_filter_reasons_and_their_priority():
    good = "This is a perfectly ordinary sentence."
    assert reasons(
        good,
        "   ",
        "Say <|SPEECH_GENERATION_END|> now please.",
        "Read more at https://example.com today.",
        "Mail me at someone@example.org tomorrow.",
        "Our site www.example.net has news.",
        "Bold <b>words</b> are not speech.",
        "An &amp; entity is markup too.",
        "Wiki [[links]] are markup as well.",
        "A function call foo{bar} is code.",
        "Call 555 0123 4567 at 12:30 on 3/4.",
        "Too short",
        "Hi there.",
        "word " * 50,
        "x" * 300,
    ) == [
        "keep",
        "empty",
        "special_token",
        "url",
        "url",
        "url",
        "markup",
        "markup",
        "markup",
        "markup",
        "not_prose",
        "too_short" if len("Too short") < 10 else "too_few_words",
        "too_short",
        "too_many_words",  # 249 characters but 50 words
        "too_long",
    ]
    assert reasons("Just two.", min_chars=1) == ["too_few_words"]
    assert reasons("one two three four five six", max_words=5) == ["too_many_words"]
    assert reasons("Ordinary text, with punctuation; quotes 'and' dashes - fine!") == ["keep"]
    # letters vs digits and symbols; punctuation and spaces are not counted
    assert reasons("In 1999 the town had 4,500 people.") == ["keep"]
    assert reasons("Ünïcödé sentences are prose as well.", "Café au lait, s'il vous plaît.") == [
        "keep",
        "keep",
    ]
    assert reasons("これは日本語の文です。", min_words=1) == ["keep"]
    assert reasons("€€€ ### 100% ¥¥¥ ok", "# A markdown heading", min_words=1) == ["not_prose", "markup"]


def test_lengths_are_counted_in_characters_not_bytes():
    stats = cleaning.measure(cleaning.normalize(pa.array(["naïve café", "plain text", ""])))
    assert stats.chars.tolist() == [10, 10, 0]
    assert stats.words.tolist() == [2, 2, 0]


def test_clean_options_validation(caplog):
    with pytest.raises(StyleGRPOError, match="--min-chars 50 is above --max-chars 20"):
        CleanOptions(min_chars=50, max_chars=20).validate()
    with pytest.raises(StyleGRPOError, match="--min-letter-fraction"):
        CleanOptions(min_letter_fraction=2).validate()
    CleanOptions(max_chars=1000).validate()
    assert "above Llasa's 2048" in caplog.text
    # the defaults fit the budget, with the slowest styles
    assert cleaning.worst_case_tokens(cleaning.MAX_CHARS) < cleaning.LLASA_MAX_TOKENS


@pytest.mark.parametrize(
    ("paragraph", "sentences"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("Dr. Who met Mrs. Hudson. They talked.", ["Dr. Who met Mrs. Hudson.", "They talked."]),
        ("J. R. R. Tolkien wrote it. Then he rested.", ["J. R. R. Tolkien wrote it.", "Then he rested."]),
        ('He said "Stop!" Then he left.', ['He said "Stop!"', "Then he left."]),
        ("It costs 3.50 dollars. Cheap.", ["It costs 3.50 dollars.", "Cheap."]),
        ("We sat in the sun. It was warm.", ["We sat in the sun.", "It was warm."]),
        ("Fruit, e.g. apples, is good. Yes.", ["Fruit, e.g. apples, is good.", "Yes."]),
        ("Wait... Is it you?", ["Wait...", "Is it you?"]),
        ("lower. case does not split", ["lower. case does not split"]),
        ("你好。再见！", ["你好。", "再见！"]),
    ],
)
def test_split_sentences(paragraph, sentences):
    assert segment.split_sentences(paragraph) == sentences


def test_detect_mode():
    assert segment.detect_mode(["One sentence.", "Another one here.", "", "And a third!"])[0] == "lines"
    assert segment.detect_mode(["no punctuation here", "nor here", "still none"])[0] == "lines"
    assert segment.detect_mode(["First. Second. Third.", "Fourth. Fifth."])[0] == "paragraphs"
    wrapped = [
        "It was the best of times, it was",
        "the worst of times, and so on.",
        "",
        "Another para that",
        "wraps.",
    ]
    assert segment.detect_mode(wrapped)[0] == "paragraphs"


def test_hash_set_matches_a_python_set():
    rng = np.random.default_rng(0)
    s = HashSet64(capacity=8)
    reference: set[int] = set()
    for _ in range(30):  # many batches, with repeats inside and across batches, and the reserved value 0
        batch = rng.integers(0, 3000, size=200).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        batch[:3] = 0
        fresh = s.add(batch)
        expected = []
        for h in batch.tolist():
            h = h or 1
            expected.append(h not in reference)
            reference.add(h)
        assert fresh.tolist() == expected
    assert len(s) == len(reference) and s.capacity >= 2 * len(s)


def test_text_hashes_and_seeded_mix_are_stable():
    h = cleaning.text_hashes(pa.array(["a", "b", "a"]))
    assert h[0] == h[2] != h[1]
    assert cleaning.text_hashes(pa.array(["a"]))[0] == h[0]
    assert (cleaning.mix64(h, 1) == cleaning.mix64(h, 1)).all()
    assert (cleaning.mix64(h, 1) != cleaning.mix64(h, 2)).all()


def test_fraction_splitter_is_exact_over_batches():
    rng = np.random.default_rng(1)
    split = FractionSplitter(0.13)
    sizes = [7, 100, 1, 0, 333, 59]
    total = 0
    for i, n in enumerate(sizes):
        mask = split.assign(rng.integers(0, 2**63, size=n, dtype=np.uint64), last=i == len(sizes) - 1)
        total += mask.sum()
    assert total == split.test == round(0.13 * sum(sizes))
    tiny = FractionSplitter(0.1)
    assert tiny.assign(np.array([5, 3, 9], dtype=np.uint64), last=True).tolist() == [False, True, False]
    one = FractionSplitter(0.9)
    assert one.assign(np.array([5, 3], dtype=np.uint64), last=True).sum() == 1  # train is never empty


def test_count_splitter_keeps_the_smallest():
    assert CountSplitter(2).select(np.array([9, 1, 5, 0], dtype=np.uint64)).tolist() == [1, 3]
    assert CountSplitter(5).select(np.array([9, 1], dtype=np.uint64)).tolist() == [0, 1]


def test_parse_test_size():
    assert parse_test_size("0.1") == 0.1 and isinstance(parse_test_size("0.1"), float)
    assert parse_test_size("200") == 200 and isinstance(parse_test_size("200"), int)
    assert parse_test_size("0") == 0.0
    for bad in ("-1", "2.5", "lots"):
        with pytest.raises(StyleGRPOError, match="--test-size"):
            parse_test_size(bad)


def test_cycling_sampler_and_pairer():
    sampler = CyclingSampler(4, np.random.default_rng(0))
    draws = np.concatenate([sampler.take(3), sampler.take(10), sampler.take(3)])
    assert sorted(Counter(draws.tolist()).values()) == [4, 4, 4, 4]
    pairer = Pairer("cross", [2, 3], seed=0, split="train")
    text, style, desc = pairer.pair(3)
    assert text.tolist() == [0, 0, 1, 1, 2, 2] and style.tolist() == [0, 1, 0, 1, 0, 1]
    assert (desc[style == 0] < 2).all() and (desc[style == 1] < 3).all()
    a = Pairer("balanced", [2, 3], seed=5, split="test").pair(7)
    b = Pairer("balanced", [2, 3], seed=5, split="test").pair(7)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))


def test_prompt_renderer_equals_render_and_falls_back_when_needed():
    template = PromptTemplate()
    texts = pa.array(["Hello there.", "Ünïcödé “x” — y", "{text} and {style} and {description}"])
    ids = np.array([0, 1, 0])
    descs = ["a calm voice", "a {style} {description} voice"]
    r = PromptRenderer(template, descs)
    assert r.vectorized
    got = r.render(texts, ids).to_pylist()
    assert got == [template.render(t, descs[i]) for t, i in zip(texts.to_pylist(), ids, strict=True)]
    # placeholders inside a description are literal text: still a plain substitution of the text
    descs = ["a calm voice", "a {text} voice"]
    r = PromptRenderer(template, descs)
    assert r.vectorized
    got = r.render(texts, ids).to_pylist()
    assert got == [template.render(t, descs[i]) for t, i in zip(texts.to_pylist(), ids, strict=True)]
    assert "a {text} voice" in got[1][0]["content"]

    @dataclasses.dataclass(frozen=True)
    class Shouty(PromptTemplate):  # a render that is not a plain substitution of the text
        def render(self, text, description=None):
            return super().render(text.upper(), description)

    r = PromptRenderer(Shouty(), descs[:1])
    assert not r.vectorized
    assert (
        r.render(texts, np.zeros(3, dtype=np.int64))
        .to_pylist()[0][0]["content"]
        .endswith("HELLO THERE.<|TEXT_UNDERSTANDING_END|>")
    )


def test_compiled_prompt_assembly_equals_render_row_by_row():
    """The one compiled copy pass (``_compiled.assemble``) gives ``render``'s messages for every row: empty,
    long and non-ASCII texts and descriptions, a sliced array (nonzero offset), rows with and without a
    reference speaker, and zero rows."""
    from stylegrpo.styles import Reference

    template = PromptTemplate()
    descs = ["a calm voice", "", "a {text} voice with “quotes” — and ünïcödé", "x" * 300]
    r = PromptRenderer(template, descs)
    assert r.vectorized
    rng = np.random.default_rng(3)
    pool = ["Hello there.", "", "Ünïcödé “x” — 中文 😀", "a b", "y" * 250]
    texts = pa.array([pool[i] for i in rng.integers(0, len(pool), 401)]).slice(1)
    ids = rng.integers(0, len(descs), len(texts))
    want = [template.render(t, descs[i]) for t, i in zip(texts.to_pylist(), ids, strict=True)]
    assert r.render(texts, ids).to_pylist() == want
    refs = [Reference("Said before.", [1, 2, 3]), Reference("Ünï “z”", [7])]
    ref_ids = rng.integers(-1, len(refs), len(texts))
    got = r.render(texts, ids, ref_ids, refs).to_pylist()
    assert got == [
        template.render(t, descs[i], refs[k] if k >= 0 else None)
        for t, i, k in zip(texts.to_pylist(), ids, ref_ids, strict=True)
    ]
    assert (ref_ids == -1).any() and (ref_ids >= 0).any()
    assert r.render(texts.slice(0, 0), ids[:0]).to_pylist() == []


def test_embedded_corpus():
    lines = default_corpus_path().read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 400 and len(set(lines)) == len(lines)
    words = [len(line.split()) for line in lines]
    assert min(words) == 3 and max(words) >= 30
    moods = Counter(line[-1] for line in lines)
    assert moods["?"] >= 50 and moods["!"] >= 50 and moods["."] >= 250
    codes, _ = cleaning.filter_codes(cleaning.normalize(pa.array(lines)), CleanOptions())
    assert (codes == 0).all()  # every sentence passes the default cleaning


def test_smallest_is_the_stable_sort_prefix_with_ties():
    """The O(n) selection of the test split equals the first k of a stable argsort, ties included."""
    from stylegrpo.data_builder.pairing import smallest

    rng = np.random.default_rng(5)
    for n, high in [(0, 5), (1, 5), (50, 4), (1000, 30), (1000, 2**63)]:
        u = rng.integers(0, high, size=n, dtype=np.uint64)  # small ranges: many ties at the cut
        for k in {0, 1, n // 3, n - 1, n, n + 2} - {-1}:
            want = np.zeros(n, dtype=bool)
            want[np.argsort(u, kind="stable")[: max(k, 0)]] = True
            assert np.array_equal(smallest(u, k), want), (n, high, k)


def test_prompt_assembly_refuses_description_ids_out_of_range():
    r = PromptRenderer(PromptTemplate(), ["a calm voice", "a loud voice"])
    texts = pa.array(["Hello.", "Hi."])
    for bad in ([0, 2], [-1, 0]):
        with pytest.raises(IndexError, match="description ids"):
            r.render(texts, np.array(bad))


@pytest.mark.parametrize("chunk", [3, 7, 64, 1 << 20])
def test_text_lines_across_chunks_and_line_ends(tmp_path, monkeypatch, chunk):
    """Lines of a text file are the same whatever the read size: "\\n", "\\r\\n" and "\\r" endings (also
    split between two reads), a byte-order mark, empty lines, lines longer than a read, no final newline;
    each with its 1-based line number."""
    import re

    from stylegrpo.data_builder import corpora

    rng = np.random.default_rng(chunk)
    words = ["alpha", "béta", "", "x" * 150, "gamma delta", "ü"]
    lines = [str(rng.choice(words)) + f" {i}" * int(rng.integers(0, 2)) for i in range(300)]
    ends = [str(rng.choice(["\n", "\r\n", "\r"])) for _ in lines]
    body = "".join(line + end for line, end in zip(lines, ends, strict=True))[:-1]  # no final line end
    path = tmp_path / "c.txt"
    path.write_bytes(corpora._BOM + body.encode("utf-8"))
    monkeypatch.setattr(corpora, "CHUNK_BYTES", chunk)
    reader = corpora.Reader(corpora.resolve_sources([str(path)]), corpora.ReadOptions(text_mode="lines"))
    got, numbers = [], []
    for batch in reader:
        got += batch.texts.to_pylist()
        numbers += batch.lines.tolist()
    want = re.split(r"\r\n|\r|\n", body)
    assert got == want and numbers == list(range(1, len(want) + 1))
