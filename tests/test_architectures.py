"""Every real-size model of every real preset, built on the meta device (no memory, no download) from
stylegrpo.architectures, runs a shape-level forward of its stage: a wrong dimension fails here."""

import math

import pytest
import torch

from stylegrpo import architectures as A
from stylegrpo.audio import CODEC_TOKENS_PER_SECOND
from stylegrpo.presets import MODEL_FIELDS, PRESETS

META = torch.device("meta")
REAL_PRESETS = [p for p in PRESETS.values() if not p.random_weights]
BATCH = 4  # clips / rollouts per shape-level forward


def test_every_real_preset_model_has_a_recorded_architecture():
    assert REAL_PRESETS, "no real presets"
    for preset in REAL_PRESETS:
        for field in MODEL_FIELDS:
            spec = getattr(preset, field)
            assert spec in A.BUILDERS, f"{preset.name}.{field} = {spec}: add it to stylegrpo/architectures.py"


@pytest.mark.parametrize("spec", sorted(A.PARAMETERS))
def test_parameter_counts_match_the_real_checkpoints(spec):
    model = A.build(spec)
    n = A.count_parameters(model, decode_only=spec == A.XCODEC2)
    assert n == pytest.approx(A.PARAMETERS[spec], rel=2e-3), f"{spec}: {n / 1e9:.3f} B parameters"


@pytest.mark.parametrize("size", sorted(A.LLASA))
def test_policy_step_shapes(size):
    """A policy forward over prompt + completion gives logits over Llasa's full vocabulary, and backward runs."""
    model = A.build(A.LLASA[size])
    config = model.config
    assert config.vocab_size == A.LLASA_VOCAB == A.LLAMA3_TEXT_VOCAB + A.LLASA_SPECIAL + A.XCODEC2_CODES
    assert model.get_output_embeddings().weight.shape == (A.LLASA_VOCAB, config.hidden_size)
    model.train()
    ids = torch.zeros(BATCH, 64, dtype=torch.long, device=META)
    logits = model(input_ids=ids).logits
    assert logits.shape == (BATCH, 64, A.LLASA_VOCAB)
    logits[:, -16:].float().log_softmax(-1).mean().backward()
    assert (
        model.model.layers[0].self_attn.q_proj.weight.grad.shape
        == model.model.layers[0].self_attn.q_proj.weight.shape
    )


def test_codec_decode_shapes():
    """XCodec2 turns T codes of its 65,536-code book into T x hop samples at 16 kHz (50 codes per second)."""
    model = A.build(A.XCODEC2)
    config = model.config
    assert math.prod(config.quantization_levels) == A.XCODEC2_CODES
    assert config.hop_length == A.XCODEC2_HOP and config.sampling_rate == A.XCODEC2_SAMPLE_RATE
    assert config.sampling_rate / config.hop_length == CODEC_TOKENS_PER_SECOND
    codes = torch.zeros(BATCH, 1, 2 * CODEC_TOKENS_PER_SECOND, dtype=torch.long, device=META)
    audio = model.decode(audio_codes=codes).audio_values
    assert audio.shape == (BATCH, 1, 2 * A.XCODEC2_SAMPLE_RATE)


def test_clap_audio_and_text_embeddings_shapes():
    model = A.build(A.CLAP)
    f = A.FEATURES[A.CLAP]
    assert model.config.audio_config.num_mel_bins == f.mel_bins
    features = torch.zeros(BATCH, 1, f.fixed_frames, f.mel_bins, device=META)
    is_longer = torch.zeros(BATCH, 1, dtype=torch.bool, device=META)
    audio = model.get_audio_features(input_features=features, is_longer=is_longer).pooler_output
    assert audio.shape == (BATCH, model.config.projection_dim)
    model.text_model.warn_if_padding_and_no_attention_mask = lambda *a, **k: None  # it reads values
    n = 20
    text = model.get_text_features(
        input_ids=torch.zeros(BATCH, n, dtype=torch.long, device=META),
        attention_mask=torch.ones(BATCH, 1, n, n, dtype=torch.bool, device=META),  # 4-D: no value checks
        position_ids=torch.arange(2, n + 2, device=META).expand(BATCH, n),  # RoBERTa positions start at 2
    ).pooler_output
    assert text.shape == audio.shape == (BATCH, 512)
    assert model.config.text_config.vocab_size == 50_265


def test_parakeet_ctc_shapes():
    model = A.build(A.PARAKEET)
    f = A.FEATURES[A.PARAKEET]
    frames = int(12 * f.frames_per_second)  # a 12 s clip
    features = torch.zeros(BATCH, frames, f.mel_bins, device=META)
    mask = torch.ones(BATCH, frames, dtype=torch.long, device=META)
    logits = model(input_features=features, attention_mask=mask).logits
    sub = model.config.encoder_config.subsampling_factor
    assert logits.shape == (BATCH, math.ceil(frames / sub), 1025)


def test_whisper_teacher_forced_shapes():
    model = A.build(A.WHISPER)
    f = A.FEATURES[A.WHISPER]
    features = torch.zeros(BATCH, f.mel_bins, f.fixed_frames, device=META)
    decoder_ids = torch.zeros(BATCH, 40, dtype=torch.long, device=META)
    logits = model(input_features=features, decoder_input_ids=decoder_ids).logits
    assert logits.shape == (BATCH, 40, 51_866)


def test_wavlm_speaker_embedding_shapes():
    """The speaker judge's WavLM x-vector: raw 16 kHz samples in, one 512-d speaker embedding per clip."""
    model = A.build(A.WAVLM_SV)
    config = model.config
    assert config.inputs_to_logits_ratio == A.XCODEC2_HOP  # 320 samples per frame: 50 frames per second
    assert config.hidden_size == 768 and config.num_hidden_layers == 12 and config.use_weighted_layer_sum
    samples = torch.zeros(BATCH, 3 * A.XCODEC2_SAMPLE_RATE, device=META)  # 3 s clips
    out = model(input_values=samples)
    assert out.embeddings.shape == (BATCH, config.xvector_output_dim) == (BATCH, 512)
    assert A.count_parameters(model) == pytest.approx(0.100e9, rel=0.01)


def test_ast_classifier_shapes():
    """The AudioSet classifier judge: 1024 frames x 128 kaldi mel bins in, 527 AudioSet logits out."""
    model = A.build(A.AST)
    f = A.FEATURES[A.AST]
    config = model.config
    assert (config.max_length, config.num_mel_bins) == (f.fixed_frames, f.mel_bins) == (1024, 128)
    assert config.hidden_size == 768 and config.num_hidden_layers == 12 and config.num_labels == 527
    logits = model(input_values=torch.zeros(BATCH, f.fixed_frames, f.mel_bins, device=META)).logits
    assert logits.shape == (BATCH, A.AUDIOSET_LABELS)
    # ViT-base with 1212 patch positions + the 527-way head: 86.6 M (computed from this config)
    assert A.count_parameters(model) == pytest.approx(86.6e6, rel=1e-3)
