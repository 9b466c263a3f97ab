"""AudioSet classifier judge (AST) on its tiny twin: lazy loading, label names from the config, sigmoid
probabilities, deterministic windows for clips over AST's window, the noisy-OR style mass, label checks
with close matches, and the catalog's ``classifier_labels`` field."""

import numpy as np
import pytest

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers import ScorerError
from stylegrpo.scorers._base import fixed_windows
from stylegrpo.scorers.ast_classifier import TINY_LABELS, AstJudge, AstScorer
from stylegrpo.scorers.judges import build_judge
from stylegrpo.styles import CatalogError, parse_catalog


@pytest.fixture(scope="module")
def ast():
    return AstScorer("tiny:ast", device="cpu", batch_size=2)


def _clips(seconds=(0.5, 1.5, 1.9), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(seconds):
        t = np.arange(int(s * SAMPLE_RATE)) / SAMPLE_RATE
        tone = 0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t))
        out.append((tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32))
    return out


def _catalog(labels_line: str = "    classifier_labels: [Whispering]\n"):
    return parse_catalog(
        "styles:\n"
        "  - name: whisper\n    phrase: a whisper\n    descriptions: [a whisper]\n" + labels_line + ""
        "  - name: shout\n    phrase: a shout\n    descriptions: [a shout]\n    classifier_labels: [Shout, Yell]\n"
        "  - name: sad\n    phrase: sad\n    descriptions: [a sad voice]\n",
        "styles.yaml",
    )


def test_lazy_load_and_labels_from_the_config():
    scorer = AstScorer("tiny:ast")
    assert scorer.labels == TINY_LABELS and not scorer.loaded  # the label list needs no weights
    import torch

    scorer.label_probabilities(_clips(seconds=(0.5,)))
    assert scorer.loaded and scorer.model.dtype == torch.float32  # fp32 unless asked, as CLAP
    assert AstScorer("tiny:ast", dtype="bfloat16").dtype == torch.bfloat16


def test_probabilities_are_sigmoids_deterministic_and_batch_independent(ast):
    wavs = _clips()
    p = ast.label_probabilities(wavs)
    assert p.shape == (3, len(TINY_LABELS)) and np.all((p > 0) & (p < 1))
    assert not np.allclose(p.sum(axis=1), 1.0)  # multi-label: independent sigmoids, not a softmax
    np.testing.assert_array_equal(p, ast.label_probabilities(wavs))
    single = np.concatenate([ast.label_probabilities([w]) for w in wavs])
    np.testing.assert_allclose(p, single, atol=1e-6)
    # the extractor's features and the model's logits, by hand for one clip
    import torch

    feats = ast.feature_extractor([wavs[1]], sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_values"]
    with torch.inference_mode():
        ref = torch.sigmoid(ast.model(input_values=feats).logits).numpy()[0]
    np.testing.assert_allclose(p[1], ref, atol=1e-6)


def test_long_clip_windows(ast):
    window = ast.window
    assert window == (ast.feature_extractor.max_length - 1) * 160 + 400  # kaldi frames: 25 ms, 10 ms hop
    long = _clips(seconds=(5.0,), seed=4)[0]  # 2.5 windows of the tiny twin's 2 s
    pieces = fixed_windows(long, window)
    assert len(pieces) == 3 and all(len(x) == window for x in pieces)
    p = ast.label_probabilities([long])
    np.testing.assert_allclose(p[0], ast.label_probabilities(pieces).mean(axis=0), atol=1e-6)
    np.testing.assert_array_equal(p, ast.label_probabilities([long]))
    # the whole clip counts, not only its first window (which the extractor alone would keep)
    assert not np.allclose(p, ast.label_probabilities([long[:window]]), atol=1e-5)


def test_style_mass_is_noisy_or(ast):
    catalog = _catalog()
    wavs = _clips()
    judge = AstJudge("tiny:ast", device="cpu", scorer=ast)
    scores = judge.style_scores(wavs, catalog.styles)
    p = ast.label_probabilities(wavs)
    k = {name: j for j, name in enumerate(TINY_LABELS)}
    np.testing.assert_allclose(scores[:, 0], p[:, k["Whispering"]], atol=1e-9)
    both = 1 - (1 - p[:, k["Shout"]]) * (1 - p[:, k["Yell"]])
    np.testing.assert_allclose(scores[:, 1], both, atol=1e-9)
    assert np.all(scores[:, 1] >= np.maximum(p[:, k["Shout"]], p[:, k["Yell"]])) and np.all(scores[:, 1] <= 1)
    assert np.isnan(scores[:, 2]).all()  # 'sad' names no label: not this judge's style
    assert judge.applies_to(catalog.get("shout")) and not judge.applies_to(catalog.get("sad"))
    assert build_judge("ast:tiny:ast", device="cpu").name == "ast:tiny:ast"


def test_unknown_label_names_close_matches(ast):
    judge = AstJudge("tiny:ast", device="cpu", scorer=ast)
    catalog = _catalog("    classifier_labels: [Whisper]\n")
    with pytest.raises(ScorerError, match=r"style 'whisper': classifier_labels entry 'Whisper' is not a label of tiny:ast \(13 labels\); closest: 'Whispering'"):  # fmt: skip
        judge.check_styles(catalog.styles)
    with pytest.raises(ScorerError, match="closest: 'Child speech, kid speaking'"):
        judge.style_scores(_clips(seconds=(0.5,)), _catalog("    classifier_labels: [child speech]\n").styles)


def test_repo_catalog_labels_are_real_audioset_names(repo_styles):
    named = {label for s in repo_styles for label in s.classifier_labels}
    assert {"Whispering", "Shout", "Child speech, kid speaking"} <= named
    assert named <= set(TINY_LABELS)  # the twin carries every name the catalog uses
    AstJudge("tiny:ast").check_styles(repo_styles.styles)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("    classifier_labels: Whispering\n", "styles.yaml:5: style #1 'whisper': field 'classifier_labels' must be a non-empty list"),
        ("    classifier_labels: []\n", "styles.yaml:5: style #1 'whisper': field 'classifier_labels' must be a non-empty list"),
        ("    classifier_labels: [Whispering, 3]\n", "styles.yaml:5: style #1 'whisper': field 'classifier_labels' item 2 must be an AudioSet label name"),
        ("    classifier_labels: [Whispering, Whispering]\n", "item 2: 'Whispering' is named twice"),
        ("    classifier_labels:\n      - Shout\n      - ''\n", "styles.yaml:7: style #1 'whisper': field 'classifier_labels' item 2"),
    ],
)  # fmt: skip
def test_catalog_field_errors(line, message):
    with pytest.raises(CatalogError) as err:
        _catalog(line)
    assert message in str(err.value)


def test_edge_cases(ast):
    p = ast.label_probabilities([np.zeros(0, np.float32), np.zeros(SAMPLE_RATE, np.float32)])
    assert p.shape == (2, len(TINY_LABELS)) and np.all(np.isfinite(p))
    assert ast.label_probabilities([]).shape == (0, len(TINY_LABELS))


def test_eval_classifier_metric(tmp_path):
    """eval's classifier_prob: the judge's own-style score, NaN for a style without labels (and no speech)."""
    from stylegrpo.eval.metrics import METRIC_BY_NAME
    from stylegrpo.eval.run import EvalSettings, Judges
    from stylegrpo.presets import get_preset

    catalog = _catalog()
    settings = EvalSettings(
        out=tmp_path / "eval", catalog=catalog, texts=["hi"], texts_source="test", preset=get_preset("tiny")
    )
    judges = Judges(settings)
    assert judges.classifier.name == "ast:tiny:ast" and not judges.classifier.loaded
    records = [{"style": s} for s in ("sad", "shout", "whisper", "shout")]
    wavs = _clips(seconds=(0.5, 1.0, 1.5, 1.9))
    got = judges.classifier_scores(records, wavs, catalog)
    direct = judges.classifier.style_scores(wavs, catalog.styles)
    assert np.isnan(got[0])  # 'sad' names no AudioSet label
    np.testing.assert_allclose(got[1:], [direct[1, 1], direct[2, 0], direct[3, 1]], atol=1e-9)
    assert METRIC_BY_NAME["classifier_prob"].better == "higher"
    only_sad = judges.classifier_scores(records[:1], wavs[:1], catalog)
    assert np.isnan(only_sad).all()
