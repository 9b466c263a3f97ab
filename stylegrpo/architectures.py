"""The real checkpoints' architectures, in one place: their transformers configs, built without a download.

Nothing here reads the hub. Each function returns the configuration of the real checkpoint a preset names
(Llasa-1B/3B/8B, XCodec2, ``laion/larger_clap_general``, ``nvidia/parakeet-ctc-1.1b``,
``openai/whisper-large-v3-turbo``), with its real sizes and vocabularies. Users of it:

* ``tests/test_architectures.py`` builds every model of every real preset on the meta device (no memory)
  and runs shape-level forwards of each stage, so a wrong dimension fails ``make test``;
* ``bench/bench_grpo.py`` / ``bench/bench_scorers.py --real-architectures`` and ``bench/gpu_check.py``
  build full-size random-weight models from them on a GPU.

``PARAMETERS`` holds each checkpoint's parameter count as read from its real config (FACTS.md), which
the test compares with the configs here. The input sizes each judge's feature extractor produces
(mel bins, frames, sample rates) are in ``FEATURES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .audio import CODEC_TOKENS_PER_SECOND

# Llasa's vocabulary: Llama-3's 128,256 text tokens + 8 Llasa special tokens + 65,536 speech tokens
LLAMA3_TEXT_VOCAB = 128_256
LLASA_SPECIAL = 8
XCODEC2_CODES = 4**8  # 65,536: XCodec2's one FSQ codebook (8 levels of 4)
LLASA_VOCAB = LLAMA3_TEXT_VOCAB + LLASA_SPECIAL + XCODEC2_CODES  # 193,800
LLAMA3_BOS, LLAMA3_EOS = 128_000, 128_001  # <|begin_of_text|>, <|end_of_text|>

# The checkpoints a real preset names (the same ids as stylegrpo.presets)
LLASA = {"1B": "HKUSTAudio/Llasa-1B", "3B": "HKUSTAudio/Llasa-3B", "8B": "HKUSTAudio/Llasa-8B"}
XCODEC2 = "HKUSTAudio/xcodec2-hf"
CLAP = "laion/larger_clap_general"
PARAKEET = "nvidia/parakeet-ctc-1.1b"
WHISPER = "openai/whisper-large-v3-turbo"
AST = "MIT/ast-finetuned-audioset-10-10-0.4593"  # the AudioSet classifier judge (stylegrpo.scorers.ast_classifier)
AUDIOSET_LABELS = 527  # AudioSet's ontology: the classifier's outputs
WAVLM_SV = "microsoft/wavlm-base-plus-sv"  # the speaker judge (stylegrpo.scorers.speaker)

# Parameter counts of the real configs (FACTS.md "Real-checkpoint path", meta device); the test checks the
# configs below against them. XCodec2: without the w2v-BERT semantic encoder, which stylegrpo.codec drops.
PARAMETERS = {
    LLASA["1B"]: 1.370e9,
    XCODEC2: 0.242e9,
    CLAP: 0.194e9,
    PARAKEET: 1.063e9,
    WHISPER: 0.809e9,
}


@dataclass(frozen=True)
class Features:
    """What a judge's feature extractor feeds its model."""

    sample_rate: int
    mel_bins: int
    frames_per_second: float  # feature frames per second of audio (before any model subsampling)
    fixed_frames: int | None = None  # Whisper pads every clip to 30 s; CLAP windows are 10 s


FEATURES = {
    CLAP: Features(sample_rate=48_000, mel_bins=64, frames_per_second=100.0, fixed_frames=1001),
    PARAKEET: Features(sample_rate=16_000, mel_bins=80, frames_per_second=100.0),
    WHISPER: Features(sample_rate=16_000, mel_bins=128, frames_per_second=100.0, fixed_frames=3000),
    AST: Features(sample_rate=16_000, mel_bins=128, frames_per_second=100.0, fixed_frames=1024),  # 10.24 s
}
XCODEC2_SAMPLE_RATE = 16_000
XCODEC2_HOP = 320  # samples per code: 16,000 / 320 = CODEC_TOKENS_PER_SECOND
assert XCODEC2_SAMPLE_RATE // XCODEC2_HOP == CODEC_TOKENS_PER_SECOND


def _llama3_rope() -> dict[str, Any]:
    """Llama 3.1/3.2's rope: theta 500,000 with the llama3 frequency scaling to 128k positions."""
    return {
        "rope_type": "llama3",
        "rope_theta": 500_000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }


_LLAMA_SIZES = {
    # Llama-3.2-1B / 3.2-3B / 3.1-8B shapes (Llasa keeps them and widens the vocabulary)
    "1B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               head_dim=64, tie_word_embeddings=True, rope_factor=32.0),
    "3B": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
               head_dim=128, tie_word_embeddings=True, rope_factor=32.0),
    "8B": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               head_dim=128, tie_word_embeddings=False, rope_factor=8.0),
}  # fmt: skip


def llasa_config(size: str = "1B", **overrides: Any) -> Any:
    """LlamaConfig of HKUSTAudio/Llasa-{size}: the Llama-3 shape with the 193,800-token vocabulary."""
    from transformers import LlamaConfig

    if size not in _LLAMA_SIZES:
        raise ValueError(f"unknown Llasa size {size!r}; known: {', '.join(_LLAMA_SIZES)}")
    shape = dict(_LLAMA_SIZES[size])
    rope = {**_llama3_rope(), "factor": shape.pop("rope_factor")}
    kwargs = dict(
        vocab_size=LLASA_VOCAB,
        num_key_value_heads=8,
        hidden_act="silu",
        max_position_embeddings=131_072,
        rms_norm_eps=1e-5,
        rope_parameters=rope,
        bos_token_id=LLAMA3_BOS,
        eos_token_id=LLAMA3_EOS,
        **shape,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def xcodec2_config(**overrides: Any) -> Any:
    """Xcodec2Config of HKUSTAudio/xcodec2-hf: transformers' defaults are the released architecture."""
    from transformers import Xcodec2Config

    config = Xcodec2Config(**overrides)
    return config


def clap_config(**overrides: Any) -> Any:
    """ClapConfig of laion/larger_clap_general: HTS-AT (depths 2-2-12-2, patch embeds 128 -> 1024 features,
    unfused, 64 mel bins) + RoBERTa-base text tower (vocab 50,265), both projected to 512."""
    from transformers import ClapConfig

    audio = dict(
        depths=[2, 2, 12, 2],
        num_attention_heads=[4, 8, 16, 32],
        hidden_size=1024,  # = patch_embeds_hidden_size * 2 ** (len(depths) - 1): what the projection gets
        patch_embeds_hidden_size=128,
        window_size=8,
        num_mel_bins=FEATURES[CLAP].mel_bins,
        spec_size=256,
        enable_fusion=False,
    )
    text = dict(
        vocab_size=50_265,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
    )
    audio.update(overrides.pop("audio", {}))
    text.update(overrides.pop("text", {}))
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=512, **overrides)


def parakeet_config(**overrides: Any) -> Any:
    """ParakeetCTCConfig of nvidia/parakeet-ctc-1.1b: FastConformer, 42 layers of 1024, vocab 1,025."""
    from transformers import ParakeetCTCConfig

    encoder = dict(
        hidden_size=1024,
        num_hidden_layers=42,
        num_attention_heads=8,
        intermediate_size=4096,
        subsampling_factor=8,
        subsampling_conv_channels=256,
        num_mel_bins=FEATURES[PARAKEET].mel_bins,
    )
    encoder.update(overrides.pop("encoder", {}))
    kwargs = dict(vocab_size=1025, pad_token_id=1024, encoder_config=encoder)
    kwargs.update(overrides)
    return ParakeetCTCConfig(**kwargs)


def whisper_config(**overrides: Any) -> Any:
    """WhisperConfig of openai/whisper-large-v3-turbo: 32 encoder and 4 decoder layers of 1280, 128 mel bins,
    vocab 51,866."""
    from transformers import WhisperConfig

    kwargs = dict(
        vocab_size=51_866,
        num_mel_bins=FEATURES[WHISPER].mel_bins,
        d_model=1280,
        encoder_layers=32,
        decoder_layers=4,
        encoder_attention_heads=20,
        decoder_attention_heads=20,
        encoder_ffn_dim=5120,
        decoder_ffn_dim=5120,
        max_source_positions=FEATURES[WHISPER].fixed_frames // 2,  # the conv stem halves 3000 frames
        max_target_positions=448,
        decoder_start_token_id=50_258,  # <|startoftranscript|>
        pad_token_id=50_257,
        bos_token_id=50_257,
        eos_token_id=50_257,  # <|endoftext|>
    )
    kwargs.update(overrides)
    return WhisperConfig(**kwargs)


def wavlm_sv_config(**overrides: Any) -> Any:
    """WavLMConfig of microsoft/wavlm-base-plus-sv: WavLM-base (12 layers of 768, the 7-layer convolution stem
    with group norm, 50 frames per second) + the x-vector head (TDNN 512-512-512-512-1500, 512-d embedding).
    transformers' WavLMConfig defaults ARE this shape (its docs name microsoft/wavlm-base); the x-vector head
    reads every layer (weighted layer sum). Not read from the hub config (offline): the head's speaker count
    (num_labels, only the training loss uses it) is left at the default."""
    from transformers import WavLMConfig

    kwargs: dict[str, Any] = dict(use_weighted_layer_sum=True)
    kwargs.update(overrides)
    return WavLMConfig(**kwargs)


def ast_config(**overrides: Any) -> Any:
    """ASTConfig of MIT/ast-finetuned-audioset-10-10-0.4593: ViT-base (12 layers of 768, 16x16 patches at
    stride 10 over 1024 frames x 128 mel bins: 1212 patches) with a 527-way AudioSet head. transformers'
    ASTConfig defaults are this checkpoint (its docs name it); the label names are the checkpoint's own
    (not read offline: numbered placeholders here, only the count matters for shapes)."""
    from transformers import ASTConfig

    kwargs: dict[str, Any] = dict(
        max_length=FEATURES[AST].fixed_frames,
        num_mel_bins=FEATURES[AST].mel_bins,
        frequency_stride=10,
        time_stride=10,
        patch_size=16,
        num_labels=AUDIOSET_LABELS,
    )
    kwargs.update(overrides)
    return ASTConfig(**kwargs)


BUILDERS = {
    **{spec: (lambda s=size, **kw: llasa_config(s, **kw)) for size, spec in LLASA.items()},
    XCODEC2: xcodec2_config,
    CLAP: clap_config,
    PARAKEET: parakeet_config,
    WHISPER: whisper_config,
    AST: ast_config,
    WAVLM_SV: wavlm_sv_config,
}


def real_config(spec: str, **overrides: Any) -> Any:
    """The config of the real checkpoint ``spec`` (a hub id of a real preset)."""
    try:
        return BUILDERS[spec](**overrides)
    except KeyError:
        raise KeyError(f"no real architecture recorded for {spec!r}; known: {', '.join(BUILDERS)}") from None


def model_class(spec: str) -> Any:
    """The transformers class stylegrpo loads ``spec`` with."""
    import transformers

    if spec in LLASA.values():
        return transformers.LlamaForCausalLM
    return {
        XCODEC2: transformers.Xcodec2Model,
        CLAP: transformers.ClapModel,
        PARAKEET: transformers.ParakeetForCTC,
        WHISPER: transformers.WhisperForConditionalGeneration,
        AST: transformers.ASTForAudioClassification,
        WAVLM_SV: transformers.WavLMForXVector,
    }[spec]


def build(spec: str, *, device: Any = "meta", dtype: Any = None, **overrides: Any) -> Any:
    """The model of ``spec`` with random (or, on ``meta``, no) weights, from its real config."""
    import torch

    config = real_config(spec, **overrides)
    cls = model_class(spec)
    with torch.device(device):
        model = cls(config) if dtype is None else cls(config).to(dtype)
    return model.eval()


def count_parameters(model: Any, *, decode_only: bool = False) -> int:
    """Parameters of ``model``; ``decode_only`` (XCodec2) counts only what decoding uses."""
    skip = ("semantic_encoder.",) if decode_only else ()  # stylegrpo.codec drops it: decode never uses it
    seen: set[int] = set()
    total = 0
    for name, p in model.named_parameters():
        if id(p) in seen or name.startswith(skip):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
