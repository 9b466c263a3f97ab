"""CLAP style judge on the tiny twin: shapes, determinism (also for clips over the 10 s window),
the text-embedding cache, own-description similarity and the style softmax."""

import numpy as np
import pytest

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers import ClapScorer, ScorerError, candidates_from_catalog
from stylegrpo.scorers._base import fixed_windows


@pytest.fixture(scope="module")
def clap():
    return ClapScorer("tiny:clap", device="cpu", batch_size=4)


def _clips(seconds=(1.0, 2.5, 4.0), seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(max(seconds) * SAMPLE_RATE)) / SAMPLE_RATE
    out = []
    for i, s in enumerate(seconds):
        n = int(s * SAMPLE_RATE)
        tone = 0.3 * np.sin(2 * np.pi * (120 + 60 * i) * t[:n])
        out.append((tone + 0.05 * rng.standard_normal(n)).astype(np.float32))
    return out


def test_lazy_load():
    scorer = ClapScorer("tiny:clap")
    assert not scorer.loaded  # constructing never loads a model
    scorer.text_embeddings(["a man whispering"])
    assert scorer.loaded
    import torch

    # CLAP stays fp32 unless a dtype is named: similarities within a group differ by less than bf16 resolves
    assert scorer.model.dtype == torch.float32 and ClapScorer("tiny:clap", dtype=None).dtype == torch.float32
    assert ClapScorer("tiny:clap", dtype="bfloat16").dtype == torch.bfloat16


def test_audio_embeddings_shape_norm_determinism(clap):
    wavs = _clips()
    a = clap.audio_embeddings(wavs)
    b = clap.audio_embeddings(wavs)
    assert a.shape == (3, clap.model.config.projection_dim) and a.dtype == np.float32
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    # batching does not change a clip's embedding
    single = np.concatenate([clap.audio_embeddings([w]) for w in wavs])
    np.testing.assert_allclose(a, single, atol=1e-5)


def test_long_clip_is_scored_deterministically(clap):
    long = _clips(seconds=(21.0,), seed=3)[0]  # 2.1 CLAP windows: the extractor alone would crop at random
    np.random.seed(1)  # the feature extractor's random crops use numpy's global generator
    s1 = clap.similarity([long], ["a man whispering"])
    np.random.seed(2)
    s2 = clap.similarity([long], ["a man whispering"])
    assert s1[0] == s2[0]
    # the windows cover the whole clip at 48 kHz: fixed starts, first at 0, last ending at the end
    n48 = len(long) * clap.sampling_rate // SAMPLE_RATE
    wins = fixed_windows(np.arange(n48), clap.window)
    assert len(wins) == 3 and all(len(w) == clap.window for w in wins)
    assert wins[0][0] == 0 and wins[-1][-1] == n48 - 1
    # the long clip's embedding differs from its first 10 s alone: the whole clip counts
    first = clap.audio_embeddings([long[: 10 * SAMPLE_RATE]])
    assert not np.allclose(clap.audio_embeddings([long]), first, atol=1e-4)


def test_log_mel_matches_the_feature_extractor(clap):
    """Our batched torch features equal ClapFeatureExtractor's own (numpy) ones, short and full windows."""
    rng = np.random.default_rng(5)
    windows = [
        (0.2 * rng.standard_normal(n)).astype(np.float32) for n in (clap.window, clap.window // 3 + 7, 4800)
    ]
    ours = clap.log_mel(windows).cpu().numpy()
    ref = clap.feature_extractor(
        windows,
        sampling_rate=clap.sampling_rate,
        truncation="rand_trunc",
        padding="repeatpad",
        return_tensors="np",
    )["input_features"]
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_text_embedding_cache(clap):
    calls = []
    original = clap.model.get_text_features

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    clap.model.get_text_features = counting
    try:
        texts = ["a quiet, breathy whisper", "a loud, forceful shout", "a quiet, breathy whisper"]
        first = clap.text_embeddings(texts)
        hits = clap.text_cache_hits
        second = clap.text_embeddings(texts[:2])
    finally:
        del clap.model.get_text_features
    assert calls == [2]  # two distinct texts embedded once, in one batch; the repeat and 2nd call are cached
    assert clap.text_cache_hits == hits + 2
    np.testing.assert_array_equal(first[:2], second)
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_similarity_uses_each_clips_own_description(clap):
    wavs = _clips()
    descs = ["a man whispering", "a man shouting loudly", "an elderly woman speaking slowly"]
    sims = clap.similarity(wavs, descs)
    assert sims.shape == (3,) and np.all(np.abs(sims) <= 1.0 + 1e-6)
    # same clip, different descriptions -> different scores
    other = clap.similarity([wavs[0]] * 3, descs)
    assert len(set(np.round(other, 6))) == 3
    # clip i is compared with description i only
    full = clap.audio_embeddings(wavs) @ clap.text_embeddings(descs).T
    np.testing.assert_allclose(sims, np.diag(full), atol=1e-5)


def test_style_probabilities(clap, repo_styles):
    wavs = _clips()
    cands = candidates_from_catalog(repo_styles)
    assert list(cands) == repo_styles.names
    emb = clap.audio_embeddings(wavs)
    p = clap.style_probabilities(wavs, cands)
    np.testing.assert_allclose(clap.style_probabilities(wavs, cands, embeddings=emb), p, atol=1e-6)
    np.testing.assert_allclose(clap.similarity(wavs, ["a sad person"] * 3, embeddings=emb),
                               clap.similarity(wavs, ["a sad person"] * 3), atol=1e-6)  # fmt: skip
    assert p.shape == (3, len(cands)) and np.all(p > 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    # columns follow the candidates' order
    rev = dict(reversed(list(cands.items())))
    np.testing.assert_allclose(clap.style_probabilities(wavs, rev, embeddings=emb), p[:, ::-1], atol=1e-6)
    # default temperature is CLAP's learned scale; a smaller one sharpens the distribution
    assert clap.temperature == pytest.approx(1.0 / clap.logit_scale)
    sharp = clap.style_probabilities(wavs, cands, temperature=clap.temperature / 10, embeddings=emb)
    assert np.all(sharp.max(axis=1) >= p.max(axis=1))
    # a style's score is its paraphrases' mean embedding (re-normalised)
    protos = clap.style_embeddings(cands)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-5)


def test_edge_cases(clap):
    emb = clap.audio_embeddings([np.zeros(0, np.float32), np.zeros(SAMPLE_RATE, np.float32)])
    assert np.all(np.isfinite(emb))
    assert clap.similarity([], []).shape == (0,)
    with pytest.raises(ScorerError):
        clap.similarity(_clips(), ["only one description"])
    with pytest.raises(ScorerError):
        clap.style_probabilities(_clips(), {})
    with pytest.raises(ScorerError):
        clap.similarity(_clips(), ["a", "b", "c"], embeddings=np.zeros((2, 16), np.float32))
    assert len(clap.tokenizer) > len(clap.tokenizer.all_special_tokens)  # the FACTS offline trap
