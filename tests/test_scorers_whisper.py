"""Whisper NLL judge on the tiny twin: batched teacher forcing agrees with the model's own labels loss."""

import numpy as np
import pytest
import torch

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers import ScorerError, WhisperNllScorer

TEXTS = ["The quick brown fox.", "She sells sea shells by the sea shore, and more!", "Hi", ""]


@pytest.fixture(scope="module")
def whisper():
    return WhisperNllScorer("tiny:whisper", device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(0)
    return [
        (0.1 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32) for s in (1.0, 3.0, 0.5, 2.0)
    ]


def test_nll_shape_finite_deterministic(whisper, clips):
    assert not WhisperNllScorer("tiny:whisper").loaded
    a = whisper.nll(clips, TEXTS)
    b = whisper.nll(clips, TEXTS)
    assert a.shape == (4,) and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and np.all(a > 0)
    np.testing.assert_array_equal(a, b)
    assert whisper.nll([], []).shape == (0,)


def test_nll_matches_labels_loss_one_at_a_time(whisper, clips):
    batched = whisper.nll(clips, TEXTS)
    n_prefix = len(whisper.prefix_ids)
    for wav, text, got in zip(clips, TEXTS, batched, strict=True):
        target = whisper.text_ids(text)
        assert target[-1] == whisper.eot_id
        feats = whisper.feature_extractor(
            [wav], sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features
        decoder_input = torch.tensor([whisper.prefix_ids + target[:-1]])
        labels = torch.tensor([[-100] * (n_prefix - 1) + target])  # the prefix is given, not scored
        with torch.inference_mode():
            loss = whisper.model(input_features=feats, decoder_input_ids=decoder_input, labels=labels).loss
        assert got == pytest.approx(loss.item(), abs=1e-4)


def test_nll_depends_on_text_and_prefix(whisper, clips):
    tokens = whisper.tokenizer.convert_ids_to_tokens(whisper.prefix_ids)
    assert tokens == ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    x = whisper.nll([clips[0]] * 2, ["The quick brown fox.", "Stella and the blue cheese."])
    assert x[0] != pytest.approx(x[1])


def test_long_text_and_mismatch(whisper, clips):
    long = " ".join(["the quick brown fox"] * 300)  # far beyond Whisper's 448-token limit
    out = whisper.nll([clips[0]], [long])
    assert np.isfinite(out[0])
    with pytest.raises(ScorerError):
        whisper.nll(clips, TEXTS[:2])
