"""XCodec2 decoding on the tiny twin: lengths, batching, empty and out-of-range input."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegrpo.audio import CODEC_TOKENS_PER_SECOND, SAMPLE_RATE
from stylegrpo.codec import Codec
from stylegrpo.tiny import resolve_model


@pytest.fixture(scope="module")
def codec():
    return Codec.load("tiny:xcodec2", "cpu")


def _codes(n, seed):
    return np.random.default_rng(seed).integers(0, 64, n).tolist()


def test_loaded_geometry(codec):
    assert codec.num_codes == 64
    assert codec.samples_per_token == SAMPLE_RATE // CODEC_TOKENS_PER_SECOND == 320
    assert codec.tokens_per_second == CODEC_TOKENS_PER_SECOND
    assert codec.model.semantic_encoder is None  # dropped: decoding never uses it
    fe = json.loads((Path(resolve_model("tiny:xcodec2")) / "preprocessor_config.json").read_text())
    assert fe["hop_length"] == 320 and fe["sampling_rate"] == SAMPLE_RATE


def test_batched_lengths_and_types(codec):
    batch = [_codes(5, 0), _codes(17, 1), [], _codes(17, 2), _codes(1, 3)]
    wavs = codec.decode(batch, batch_size=2)
    assert [len(w) for w in wavs] == [len(c) * 320 for c in batch]
    for w in wavs:
        assert w.dtype == np.float32 and w.ndim == 1 and np.isfinite(w).all()
    assert np.abs(wavs[1]).max() > 0


def test_exact_batching_equals_one_by_one(codec):
    batch = [_codes(12, 4), _codes(30, 5), _codes(12, 6), _codes(30, 7)]
    together = codec.decode(batch)
    alone = [codec.decode([c])[0] for c in batch]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_padded_batching_keeps_lengths_but_changes_audio(codec):
    """Why exact (group by length) is the default: padding changes the shorter clip's audio."""
    batch = [_codes(10, 8), _codes(60, 9)]
    exact = codec.decode(batch)
    padded = codec.decode(batch, exact=False)
    assert [len(w) for w in padded] == [len(w) for w in exact]
    short_diff = np.sqrt(np.mean((padded[0] - exact[0]) ** 2)) / np.sqrt(np.mean(exact[0] ** 2))
    assert short_diff > 1e-3  # GroupNorm/attention over the padded time axis leak into the real frames
    np.testing.assert_allclose(padded[1], exact[1], atol=1e-5)  # the longest is not padded


def test_empty_and_out_of_range_never_crash(codec, caplog):
    assert [len(w) for w in codec.decode([])] == []
    assert [len(w) for w in codec.decode([[], []])] == [0, 0]
    with caplog.at_level(logging.WARNING, logger="stylegrpo.codec"):
        wavs = codec.decode([[1, 999, -3, 2], [64]])
    assert [len(w) for w in wavs] == [2 * 320, 0]
    assert "outside 0..63" in caplog.text
    np.testing.assert_allclose(wavs[0], codec.decode([[1, 2]])[0], atol=1e-6)
    # tensors and numpy arrays are accepted as code sequences
    assert len(codec.decode([torch.tensor([3, 4, 5])])[0]) == 3 * 320
    assert len(codec.decode([np.array([3, 4])])[0]) == 2 * 320


def test_single_code_clip_decodes_with_a_narrow_decoder(tmp_path):
    """XCodec2 normalizes over time: one frame alone fails inside the model (e.g. 32 channels, 32 groups).
    The codec must still return the clip's own 320 samples."""
    from transformers import Xcodec2Config, Xcodec2Model

    semantic = dict(
        model_type="wav2vec2-bert",
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        output_hidden_size=32,
    )
    config = Xcodec2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        encoder_hidden_size=8,
        quantization_dim=64,
        quantization_levels=[4, 4, 4],
        semantic_model_config=semantic,
    )
    model = Xcodec2Model(config).eval()
    with pytest.raises(ValueError):  # the model itself cannot decode one frame
        model.decode(audio_codes=torch.zeros(1, 1, 1, dtype=torch.long))
    model.save_pretrained(tmp_path / "narrow")
    codec = Codec.load(str(tmp_path / "narrow"), device="cpu")
    hop = codec.samples_per_token
    wavs = codec.decode([[5], [1, 2, 3]])
    assert [len(w) for w in wavs] == [hop, 3 * hop]
    assert all(np.isfinite(w).all() for w in wavs)
