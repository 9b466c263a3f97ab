"""The style-judge interface (stylegrpo.scorers.judges): registry, specs, shapes and NaN columns, and that
each wrapped judge gives exactly the numbers of the code the rewards and eval call directly."""

import numpy as np
import pytest

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers import ScorerError
from stylegrpo.scorers.acoustic import measure_batch, target_score
from stylegrpo.scorers.clap import ClapScorer, candidates_from_catalog
from stylegrpo.scorers.judges import (
    JUDGES,
    AcousticJudge,
    ClapJudge,
    StyleJudge,
    build_judge,
    list_judges,
    own_style_scores,
    split_spec,
)
from stylegrpo.styles import parse_catalog

CATALOG = """
styles:
  - name: quiet
    phrase: a whisper
    descriptions: [a man whispering, a quiet breathy whisper]
    targets: {loudness_dbfs: [-45, -25], voiced_fraction: [0.0, 0.25]}
    quality: {bak_target: 2.3}
    classifier_labels: [Whispering]
  - name: fast
    phrase: a fast voice
    descriptions: [a news anchor reading the news quickly]
    targets: {speaking_rate: [5.0, 7.0]}
  - name: plain
    phrase: a plain voice
    descriptions: [someone speaking]
    quality: {clean: false, bak_target: 3.0}
"""
TEXTS = ["the quick brown fox", "jumps over the lazy dog", "hello there"]


@pytest.fixture(scope="module")
def catalog():
    return parse_catalog(CATALOG)


def _clips(seconds=(1.0, 2.5, 4.0), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(seconds):
        t = np.arange(int(s * SAMPLE_RATE)) / SAMPLE_RATE
        amp = 0.02 if i == 0 else 0.3
        out.append(
            (amp * np.sin(2 * np.pi * (120 + 60 * i) * t) + 0.02 * rng.standard_normal(t.size)).astype(
                np.float32
            )
        )
    return out


def test_registry_and_specs():
    assert list(JUDGES) == ["clap", "acoustic", "quality", "ast"]
    assert [p for p, _ in list_judges()] == list(JUDGES) and all(d for _, d in list_judges())
    assert split_spec("clap") == ("clap", None)
    assert split_spec("clap:laion/larger_clap_general") == ("clap", "laion/larger_clap_general")
    assert split_spec(" AST:tiny:ast ") == ("ast", "tiny:ast")  # only the first ':' splits
    with pytest.raises(
        ScorerError, match=r"unknown style judge 'paraspeech'; valid judges: clap, acoustic, quality, ast"
    ):
        build_judge("paraspeech:some/model")
    for bad in ("", "   ", None):
        with pytest.raises(ScorerError, match="valid prefixes"):
            build_judge(bad)
    with pytest.raises(ScorerError, match="judge 'clap:tiny:clap'.*temperatur"):
        build_judge("clap:tiny:clap", temperatur=2.0)  # a keyword the judge does not take
    with pytest.raises(ScorerError, match="has no model"):
        build_judge("acoustic:foo")
    with pytest.raises(ScorerError, match="score must be one of cosine, probability"):
        build_judge("clap:tiny:clap", score="softmax")


def test_lazy_names_and_default_models():
    judge = build_judge("clap:tiny:clap", device="cpu")
    assert isinstance(judge, ClapJudge) and isinstance(judge, StyleJudge)
    assert judge.name == "clap:tiny:clap" and not judge.loaded  # nothing loads before the first score
    assert build_judge("clap").scorer.spec == "laion/larger_clap_general"  # no model: the judge's default
    assert build_judge("ast").scorer.spec == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert build_judge("quality").scorer.spec == "speechmos"
    assert build_judge("acoustic").name == "acoustic" and build_judge("acoustic").loaded


def test_clap_judge_equals_the_scorer(catalog):
    wavs = _clips()
    judge = build_judge("clap:tiny:clap", device="cpu", batch_size=2)
    scores = judge.style_scores(wavs, catalog.styles)
    assert scores.shape == (3, 3) and scores.dtype == np.float64 and judge.loaded
    direct = ClapScorer("tiny:clap", device="cpu").style_similarities(wavs, candidates_from_catalog(catalog))
    np.testing.assert_allclose(scores, direct, atol=1e-6)
    # the probability score is the style softmax the style_contrastive reward and eval's style_prob use
    prob = ClapJudge("tiny:clap", device="cpu", score="probability", scorer=judge.scorer)
    p = prob.style_scores(wavs, catalog.styles)
    np.testing.assert_allclose(
        p, judge.scorer.style_probabilities(wavs, candidates_from_catalog(catalog)), atol=1e-6
    )
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    # columns follow the styles given; a subset is scored against that subset only
    np.testing.assert_allclose(judge.style_scores(wavs, catalog.styles[::-1]), scores[:, ::-1], atol=1e-6)
    assert judge.style_scores([], catalog.styles).shape == (0, 3)


def test_acoustic_judge_equals_target_score(catalog):
    wavs = _clips()
    judge = build_judge("acoustic")
    with_text = judge.style_scores(wavs, catalog.styles, texts=TEXTS)
    measures = measure_batch(wavs, TEXTS)
    expected = [[target_score(m, s.targets) for s in catalog.styles[:2]] for m in measures]
    np.testing.assert_array_equal(with_text[:, :2], expected)
    assert np.isnan(with_text[:, 2]).all()  # 'plain' has no targets: not this judge's style
    assert judge.applies_to(catalog.get("quiet")) and not judge.applies_to(catalog.get("plain"))
    # the quiet first clip meets 'quiet' better than the loud ones do: the judge sees the targets
    assert with_text[0, 0] > with_text[1, 0] and with_text[0, 0] > with_text[2, 0]
    # without texts the speaking rate cannot be measured: 'fast' (only that target) is not judged
    no_text = judge.style_scores(wavs, catalog.styles)
    np.testing.assert_array_equal(no_text[:, 0], with_text[:, 0])
    assert np.isnan(no_text[:, 1:]).all()
    with pytest.raises(ScorerError, match="3 clips but 2 texts"):
        judge.style_scores(wavs, catalog.styles, texts=TEXTS[:2])
    assert isinstance(judge, AcousticJudge)


def test_quality_judge_equals_clean_score(catalog):
    from stylegrpo.scorers.quality import QualityScorer, clean_score

    wavs = _clips(seconds=(1.0, 1.5))
    judge = build_judge("quality", device="cpu")
    scores = judge.style_scores(wavs, catalog.styles)
    bak = QualityScorer(device="cpu").bak(wavs)
    np.testing.assert_allclose(scores[:, 0], [clean_score(b, 2.3) for b in bak], atol=1e-9)
    # 'fast' declares no quality block (defaults), 'plain' opts out of the clean reward: neither applies
    assert np.isnan(scores[:, 1:]).all()


def test_own_style_scores(catalog):
    scores = np.arange(9, dtype=float).reshape(3, 3)
    own = own_style_scores(scores, catalog.styles, ["fast", "quiet", "unknown"])
    np.testing.assert_array_equal(own[:2], [1.0, 3.0])
    assert np.isnan(own[2])


class LoudnessJudge(StyleJudge):
    """The README's "Adding a judge" example, verbatim (keep the two in step)."""

    prefix = "loudness"
    description = "RMS level against the middle of the style's loudness target"

    def applies_to(self, style):
        return "loudness_dbfs" in style.targets

    def _scores(self, wavs, styles, texts):  # only the styles it applies to; the rest become NaN
        level = np.array([20 * np.log10(np.sqrt(np.mean(w**2)) + 1e-9) for w in wavs])
        middle = np.array([sum(s.targets["loudness_dbfs"]) / 2 for s in styles])
        return np.exp(-np.abs(level[:, None] - middle[None, :]) / 6.0)  # 1 at the middle, 0.37 at 6 dB off


def test_adding_a_judge_is_one_class_and_one_registry_line(catalog, monkeypatch):
    """What the README shows: the subclass above plus one JUDGES line is a judge build_judge, list_judges,
    the audit and the style_classifier reward can use."""
    monkeypatch.setitem(JUDGES, "loudness", f"{__name__}:LoudnessJudge")
    judge = build_judge("loudness", device="cpu")
    assert isinstance(judge, LoudnessJudge) and judge.name == "loudness"
    assert ("loudness", LoudnessJudge.description) in list_judges()
    wavs = _clips()
    scores = judge.style_scores(wavs, catalog.styles)
    assert (
        np.isfinite(scores[:, 0]).all() and np.isnan(scores[:, 1:]).all()
    )  # only 'quiet' has a loudness target
    # the quiet first clip (-32 dBFS) is 3 dB from the middle of [-45, -25]; the loud ones (-13 dBFS) are far
    assert scores[0, 0] > 0.5 > 0.1 > scores[1, 0]
