"""Random-weight model folders of the real architectures (stylegrpo.architectures), for the benches.

``save_real_models(folder, scale)`` writes one ``from_pretrained`` folder per model of the llasa-1b preset
(policy, codec, clap, asr, whisper; ``kinds`` may add ``ast``, the AudioSet classifier judge) and returns
their paths. The configs come from
``stylegrpo.architectures`` (the one definition of each real checkpoint); the tokenizers are the tiny
twins' (the real ones need the hub), widened where a model needs it (the policy gets all 65,536 speech
tokens); the feature extractors are built with the real checkpoints' settings (mel bins, sample rates).

``scale="small"`` shrinks every width and depth (same classes, same vocabularies and codebook, same code
path) so the whole chain runs on a CPU in seconds: what ``gpu_check.py --dry-run`` and the tests use.
Nothing is downloaded; no weights are meaningful (rewards are noise, timings and memory are real).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from stylegrpo import architectures as A

POLICY = A.LLASA["1B"]
SPECS = {"policy": POLICY, "codec": A.XCODEC2, "clap": A.CLAP, "asr": A.PARAKEET, "whisper": A.WHISPER}

# scale="small": per checkpoint, overrides of its real config (widths and depths only)
SMALL: dict[str, dict[str, Any]] = {
    POLICY: dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16,
    ),
    A.XCODEC2: dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        head_dim=16, encoder_hidden_size=8, quantization_dim=64,
        semantic_model_config=dict(
            model_type="wav2vec2-bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64, output_hidden_size=32,
        ),
    ),
    A.CLAP: dict(
        audio=dict(depths=[1, 1], num_attention_heads=[2, 4], hidden_size=64, patch_embeds_hidden_size=32),
        text=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
    ),
    A.PARAKEET: dict(
        encoder=dict(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            subsampling_conv_channels=8,
        )
    ),
    A.WHISPER: dict(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64,
    ),
    A.AST: dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
}  # fmt: skip


def config_for(spec: str, scale: str, **overrides: Any) -> Any:
    """The real config of ``spec`` (``scale="small"``: shrunk), with ``overrides`` (token ids) on top."""
    small = SMALL[spec] if scale == "small" else {}
    merged = dict(small)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return A.real_config(spec, **merged)


def save_real_models(
    folder: Path,
    scale: str = "full",
    dtype: Any = None,
    kinds: tuple[str, ...] = tuple(SPECS),
    device: str = "cpu",
) -> dict[str, str]:
    """Save random-weight models of the real architectures into ``folder``; returns kind -> folder.

    ``device`` is where the random weights are initialised (``cuda`` is much faster for full sizes)."""
    import torch
    from transformers import (
        ASTFeatureExtractor,
        AutoTokenizer,
        ClapFeatureExtractor,
        ClapProcessor,
        ParakeetFeatureExtractor,
        ParakeetProcessor,
        WhisperFeatureExtractor,
        WhisperProcessor,
    )

    from stylegrpo.llasa import LLASA_SPECIAL_TOKENS, speech_token
    from stylegrpo.tiny import resolve_model

    if scale not in ("full", "small"):
        raise ValueError(f"scale must be full or small, got {scale!r}")
    dtype = dtype or (torch.bfloat16 if scale == "full" else torch.float32)
    folder.mkdir(parents=True, exist_ok=True)
    specs: dict[str, str] = {}
    torch.manual_seed(0)

    def save(kind: str, model: Any, processor: Any) -> None:
        path = folder / kind
        model.save_pretrained(path)
        processor.save_pretrained(path)
        specs[kind] = str(path)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()

    init = torch.device(device)

    if "policy" in kinds:
        # Policy: the tiny tokenizer widened to all 65,536 speech tokens (their ids differ from the real ones;
        # the vocabulary width is the real 193,800)
        tok = AutoTokenizer.from_pretrained(resolve_model("tiny:llasa"))
        have = sum(1 for t in tok.get_vocab() if t.startswith("<|s_"))
        tok.add_tokens([speech_token(n) for n in range(have, A.XCODEC2_CODES)])
        assert all(t in tok.get_vocab() for t in LLASA_SPECIAL_TOKENS) and len(tok) <= A.LLASA_VOCAB
        end = tok.convert_tokens_to_ids("<|SPEECH_GENERATION_END|>")
        cfg = config_for(POLICY, scale, bos_token_id=tok.bos_token_id, eos_token_id=end, pad_token_id=None)
        with init:
            model = A.model_class(POLICY)(cfg).to(dtype)
        save("policy", model, tok)

    if "codec" in kinds:
        # Codec: fp32 like stylegrpo.codec; the tiny twin's feature extractor (encode() only)
        with init:
            codec = A.model_class(A.XCODEC2)(config_for(A.XCODEC2, scale))
        codec.save_pretrained(folder / "codec")
        del codec
        _copy_processor_files(resolve_model("tiny:xcodec2"), folder / "codec")
        specs["codec"] = str(folder / "codec")

    if "clap" in kinds:
        # CLAP: the real feature extractor (48 kHz, 64 mel bins, 10 s windows); the tiny Roberta tokenizer
        tiny_clap = ClapProcessor.from_pretrained(resolve_model("tiny:clap"))
        f = A.FEATURES[A.CLAP]
        fe = ClapFeatureExtractor(
            feature_size=f.mel_bins, sampling_rate=f.sample_rate, truncation="rand_trunc", padding="repeatpad"
        )
        cfg = config_for(A.CLAP, scale, text={"pad_token_id": tiny_clap.tokenizer.pad_token_id})
        with init:
            model = A.model_class(A.CLAP)(cfg).to(dtype)
        save("clap", model, ClapProcessor(fe, tiny_clap.tokenizer))

    if "asr" in kinds:
        # Parakeet CTC: the real feature extractor (80 mel bins, 16 kHz); the tiny tokenizer, vocab 1,025
        tiny_asr = ParakeetProcessor.from_pretrained(resolve_model("tiny:parakeet"))
        f = A.FEATURES[A.PARAKEET]
        fe = ParakeetFeatureExtractor(feature_size=f.mel_bins, sampling_rate=f.sample_rate)
        cfg = config_for(A.PARAKEET, scale, pad_token_id=tiny_asr.tokenizer.pad_token_id)
        with init:
            model = A.model_class(A.PARAKEET)(cfg).to(dtype)
        save("asr", model, ParakeetProcessor(fe, tiny_asr.tokenizer))

    if "whisper" in kinds:
        # Whisper: the real feature extractor (128 mel bins, 30 s); the tiny tokenizer's special-token ids
        tiny_wh = WhisperProcessor.from_pretrained(resolve_model("tiny:whisper"))
        wt = tiny_wh.tokenizer
        f = A.FEATURES[A.WHISPER]
        cfg = config_for(
            A.WHISPER,
            scale,
            decoder_start_token_id=wt.convert_tokens_to_ids("<|startoftranscript|>"),
            pad_token_id=wt.eos_token_id,
            bos_token_id=wt.eos_token_id,
            eos_token_id=wt.eos_token_id,
        )
        fe = WhisperFeatureExtractor(feature_size=f.mel_bins, sampling_rate=f.sample_rate)
        with init:
            model = A.model_class(A.WHISPER)(cfg).to(dtype)
        save("whisper", model, WhisperProcessor(fe, wt))

    if "ast" in kinds:
        # AST: the real feature extractor (kaldi fbank, 128 mel bins, 1024 frames); numbered placeholder labels
        f = A.FEATURES[A.AST]
        with init:
            model = A.model_class(A.AST)(config_for(A.AST, scale)).to(dtype)
        save("ast", model, ASTFeatureExtractor(num_mel_bins=f.mel_bins, max_length=f.fixed_frames))
    return specs


def _copy_processor_files(src: str, dst: Path) -> None:
    """A tiny twin's processor/tokenizer files (never its config or weights)."""
    skip = {"config.json", "model.safetensors", ".complete", "generation_config.json"}
    for f in Path(src).iterdir():
        if f.is_file() and f.name not in skip and not (dst / f.name).exists():
            shutil.copy(f, dst / f.name)
