"""XCodec2 decoding (codec ids -> 16 kHz waveforms) and encoding (a reference clip -> codec ids) through
transformers' native ``Xcodec2Model``.

One codebook of ``prod(quantization_levels)`` codes (65,536 for the real ``HKUSTAudio/xcodec2-hf``); one
code per ``hop_length`` samples (320 at 16 kHz = 50 codes per second).

Batching and padding: the XCodec2 decoder is not padding-safe. Its ResNet blocks use GroupNorm, whose
statistics are taken over the whole time axis, and its transformer attends over every frame without a
mask, so padding a short sequence changes its audio everywhere, not only at the end (measured at the real
size in ``bench/bench_codec.py``: 0.26-0.48 relative RMS for clips padded by 2-4 s, margins do not help). :meth:`Codec.decode` therefore batches sequences of EQUAL length together
(exact, as if decoded one by one) and only pads when asked to (``exact=False``: one forward pass, faster
when lengths all differ, approximate).
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import SAMPLE_RATE, resample
from .errors import StyleGRPOError
from .tiny import resolve_model

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
MIN_DECODE_CODES = 2  # the decoder needs more than one frame per channel for its normalization

DEFAULT_DECODE_BATCH_SIZE = 16  # sequences decoded together; the decoder is light next to the policy
TINY_QUANTIZATION_LEVELS = (4, 4, 4)  # tiny codebook of 64 codes (the real one: 4^8 = 65,536)


class Codec:
    """An XCodec2 decoder: ``Codec.load(spec, device)`` then ``decode([codes, ...])``."""

    def __init__(self, model: Any, *, spec: str = "", batch_size: int = DEFAULT_DECODE_BATCH_SIZE):
        self.model = model
        self.spec = spec
        self.batch_size = batch_size
        config = model.config
        self.num_codes = int(math.prod(config.quantization_levels))
        self.samples_per_token = int(config.hop_length)  # the decoder's ISTFT hop: samples per code
        self.sample_rate = int(config.sampling_rate)  # the codec's own rate (16 kHz for XCodec2)

    @classmethod
    def load(
        cls,
        spec: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        *,
        batch_size: int = DEFAULT_DECODE_BATCH_SIZE,
        decode_only: bool = True,
    ) -> Codec:
        """Load ``spec`` (hub id, folder or ``tiny:xcodec2``) on ``device``.

        ``dtype`` None keeps fp32: the decoder is small and fp32 avoids bf16 artifacts in the audio.
        ``decode_only`` drops the semantic encoder (w2v-BERT, ~0.6 B params), which decoding never uses.
        """
        import torch
        from transformers import Xcodec2Model

        from .presets import resolve_device

        device = resolve_device(device)
        path = resolve_model(spec)
        try:
            model = Xcodec2Model.from_pretrained(path, dtype=dtype or torch.float32)
        except (OSError, ValueError) as e:
            from .llasa import _load_error

            raise _load_error("codec", spec, e) from e
        if decode_only:
            model.semantic_encoder = None  # encode() needs it; decode() does not
        model.to(device).eval()
        codec = cls(model, spec=spec, batch_size=batch_size)
        hop = _feature_extractor_hop(path)
        if hop is not None and hop != codec.samples_per_token:
            log.warning(
                "%s: feature extractor hop_length %d differs from the model's %d; using the model's",
                spec,
                hop,
                codec.samples_per_token,
            )
        log.debug(  # detail for -v: the policy's line already says what runs where
            "loaded codec %s (%s, %d codes, %d samples per code at %d Hz)",
            spec,
            device,
            codec.num_codes,
            codec.samples_per_token,
            codec.sample_rate,
        )
        return codec

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def can_encode(self) -> bool:
        """Whether this codec holds the encoder path (``Codec.load(..., decode_only=False)``)."""
        return getattr(self.model, "semantic_encoder", None) is not None

    def encode(self, wav: np.ndarray) -> list[int]:
        """Codec ids of one clip (float32 mono at SAMPLE_RATE): ``Xcodec2Model.encode`` on the features
        ``Xcodec2FeatureExtractor`` computes (see :func:`encoder_inputs`), one code per ``hop_length``
        samples, the codes of the padding masked off as transformers does."""
        import torch

        if not self.can_encode:
            raise StyleGRPOError(
                f"codec {self.spec or '(unnamed)'} was loaded for decoding only; load it with decode_only=False "
                "to encode a reference"
            )
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if self.sample_rate != SAMPLE_RATE:
            wav = resample(wav, SAMPLE_RATE, self.sample_rate)
        inputs = encoder_inputs(wav, self.samples_per_token, self.sample_rate)
        device, dtype = self.device, next(self.model.parameters()).dtype
        inputs = {
            k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            out = self.model.encode(**inputs)
        codes = out.audio_codes[0, 0]
        if out.audio_codes_mask is not None:  # [1, T]: the codes of whole hops of real audio
            codes = codes[out.audio_codes_mask.reshape(-1).bool()]
        return [int(c) for c in codes.tolist()]

    @property
    def tokens_per_second(self) -> float:
        return self.sample_rate / self.samples_per_token

    def clean(self, codes: Sequence[int] | Any) -> list[int]:
        """Codes as a list of ints in range; out-of-range ids are dropped with a warning."""
        if hasattr(codes, "tolist"):
            codes = codes.tolist()
        codes = [int(c) for c in codes]
        kept = [c for c in codes if 0 <= c < self.num_codes]
        if len(kept) != len(codes):
            bad = [c for c in codes if not 0 <= c < self.num_codes]
            log.warning(
                "dropped %d codec id(s) outside 0..%d (e.g. %s)", len(bad), self.num_codes - 1, bad[:3]
            )
        return kept

    def decode(
        self, codes_batch: Sequence[Sequence[int]], *, exact: bool = True, batch_size: int | None = None
    ) -> list[np.ndarray]:
        """Waveforms (float32 at SAMPLE_RATE, 1-D) for lists of codec ids, in input order.

        Each clip has exactly ``len(codes) * samples_per_token`` samples (after dropping out-of-range ids);
        an empty sequence gives an empty array. ``exact`` batches equal lengths only (identical to one by
        one); ``exact=False`` pads to the longest and decodes once per batch (approximate, see module doc).
        """
        import torch

        batch_size = batch_size or self.batch_size
        cleaned = [self.clean(c) for c in codes_batch]
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32) for _ in cleaned]
        todo = [i for i, c in enumerate(cleaned) if c]
        groups: list[list[int]]
        if exact:
            by_len: dict[int, list[int]] = defaultdict(list)
            for i in todo:
                by_len[len(cleaned[i])].append(i)
            groups = [
                idx[j : j + batch_size] for idx in by_len.values() for j in range(0, len(idx), batch_size)
            ]
        else:
            todo.sort(key=lambda i: len(cleaned[i]))  # neighbours in length waste the least padding
            groups = [todo[j : j + batch_size] for j in range(0, len(todo), batch_size)]
        device = self.device
        for group in groups:
            # XCodec2's decoder normalizes over time and fails on a single frame: decode at least
            # MIN_DECODE_CODES (repeating the last code) and trim back to the clip's own length below.
            width = max(MIN_DECODE_CODES, *(len(cleaned[i]) for i in group))
            # pad with the last code of each sequence (closer to its own audio than code 0)
            rows = [cleaned[i] + [cleaned[i][-1]] * (width - len(cleaned[i])) for i in group]
            codes = torch.tensor(rows, dtype=torch.long, device=device).unsqueeze(1)  # [B, 1, T]
            with torch.inference_mode():
                audio = self.model.decode(audio_codes=codes).audio_values  # [B, 1, T * hop]
            audio = audio[:, 0].float().cpu().numpy()
            for row, i in zip(audio, group, strict=True):
                wav = row[: len(cleaned[i]) * self.samples_per_token]
                wav = np.ascontiguousarray(wav, dtype=np.float32)
                if self.sample_rate != SAMPLE_RATE:
                    wav = resample(wav, self.sample_rate, SAMPLE_RATE)
                out[i] = wav
        return out


# -- the encoder's input features, without torchaudio ---------------------------------------------------
# transformers' Xcodec2FeatureExtractor needs torchaudio (only for torchaudio.compliance.kaldi.fbank), which
# has no build for the torch this project pins. These are the same computations with its settings, in
# torch: Kaldi log-mel filterbanks (torchaudio's compliance port of compute-fbank-feats) and the
# extractor's padding, normalisation and frame stacking. tests/test_reference.py checks the filterbank
# against lhotse's Kaldi-compatible one and, where torchaudio imports, the whole against the extractor.
FBANK_MEL_BINS = 80  # Xcodec2FeatureExtractor.num_mel_bins (w2v-BERT 2.0's input)
FBANK_FRAME = 400  # samples per analysis frame (25 ms at 16 kHz): frame_length
FBANK_SHIFT = 160  # samples between frames (10 ms): frame_shift
FBANK_PREEMPHASIS = 0.97  # Kaldi's default pre-emphasis, as the extractor passes
FBANK_LOW_HZ = 20.0  # lowest mel-bank edge (the extractor's low_freq)
FBANK_POVEY_POWER = 0.85  # Kaldi's "povey" window: a Hann window raised to 0.85
FEATURE_STRIDE = 2  # the extractor stacks 2 consecutive 80-bin frames into one 160-wide feature
FEATURE_PADDING_VALUE = 1.0  # the extractor's padding_value for spectrogram frames
FEATURE_VAR_EPS = 1e-7  # the extractor's epsilon in its per-bin normalisation
WAVE_SCALE = 2**15  # the extractor feeds Kaldi 16-bit-scaled samples


def kaldi_fbank(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Log mel filterbanks [frames, FBANK_MEL_BINS] of a 1-D float32 waveform, as
    ``torchaudio.compliance.kaldi.fbank`` with Xcodec2FeatureExtractor's arguments (povey window,
    pre-emphasis 0.97, DC offset removed, no dither, snip_edges, 512-point FFT, power spectrum, low 20 Hz,
    high = Nyquist, no energy term)."""
    import torch
    import torch.nn.functional as F

    wave = wave.contiguous()
    n = wave.numel()
    if n < FBANK_FRAME:
        return torch.empty((0, FBANK_MEL_BINS), dtype=wave.dtype, device=wave.device)
    m = 1 + (n - FBANK_FRAME) // FBANK_SHIFT
    frames = wave.as_strided((m, FBANK_FRAME), (FBANK_SHIFT * wave.stride(0), wave.stride(0)))
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = F.pad(frames.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)[:, :-1]
    frames = frames - FBANK_PREEMPHASIS * previous
    window = torch.hann_window(FBANK_FRAME, periodic=False, dtype=wave.dtype, device=wave.device)
    frames = frames * window.pow(FBANK_POVEY_POWER).unsqueeze(0)
    n_fft = 1 << (FBANK_FRAME - 1).bit_length()  # round_to_power_of_two: 512
    frames = F.pad(frames, (0, n_fft - FBANK_FRAME))
    spectrum = torch.fft.rfft(frames).abs().pow(2.0)
    banks = _mel_banks(FBANK_MEL_BINS, n_fft, float(sample_rate), FBANK_LOW_HZ, sample_rate / 2)
    banks = F.pad(banks.to(device=wave.device, dtype=wave.dtype), (0, 1))
    eps = torch.tensor(torch.finfo(torch.float).eps, dtype=wave.dtype, device=wave.device)
    return torch.max(spectrum @ banks.T, eps).log()


def _mel_banks(num_bins: int, n_fft: int, sample_freq: float, low: float, high: float) -> torch.Tensor:
    """Kaldi's triangular mel banks [num_bins, n_fft // 2] (torchaudio's get_mel_banks without VTLN)."""
    import torch

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    mel_low, mel_high = mel(low), mel(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + bins * delta
    center = mel_low + (bins + 1.0) * delta
    right = mel_low + (bins + 2.0) * delta
    freqs = (sample_freq / n_fft) * torch.arange(n_fft / 2)
    mels = (1127.0 * (1.0 + freqs / 700.0).log()).unsqueeze(0)
    up = (mels - left) / (center - left)
    down = (right - mels) / (right - center)
    return torch.max(torch.zeros(1), torch.min(up, down))


def encoder_inputs(wav: np.ndarray, hop: int, sample_rate: int = SAMPLE_RATE) -> dict[str, torch.Tensor]:
    """``Xcodec2FeatureExtractor(wav, sampling_rate=sample_rate, return_tensors="pt")`` for one clip:
    ``input_values`` [1, 1, L] (one zero sample appended, zero-padded to a multiple of ``hop``),
    ``padding_mask`` [1, L], ``input_features`` [1, T, 160] (normalised log-mel frames, stacked in pairs)
    and ``input_features_mask`` [1, T]."""
    import torch
    import torch.nn.functional as F

    audio = F.pad(torch.as_tensor(np.asarray(wav, dtype=np.float32)), (0, 1), value=0.0)
    length = -(-audio.numel() // hop) * hop
    padding_mask = torch.zeros((1, length), dtype=torch.long)
    padding_mask[0, : audio.numel()] = 1
    audio = F.pad(audio, (0, length - audio.numel()))
    framed = F.pad(audio, (hop // 2, hop // 2))
    features = kaldi_fbank(framed * WAVE_SCALE, sample_rate)
    features = (features - features.mean(0)) / torch.sqrt(features.var(0, unbiased=True) + FEATURE_VAR_EPS)
    mask = torch.ones(features.shape[0], dtype=torch.long)
    extra = (-features.shape[0]) % FEATURE_STRIDE
    if extra:
        features = torch.cat([features, torch.full((extra, features.shape[1]), FEATURE_PADDING_VALUE)])
        mask = torch.cat([mask, torch.zeros(extra, dtype=torch.long)])
    frames = features.shape[0] // FEATURE_STRIDE
    return {
        "input_values": audio[None, None, :],
        "padding_mask": padding_mask,
        "input_features": features.reshape(1, frames, FBANK_MEL_BINS * FEATURE_STRIDE),
        "input_features_mask": mask.reshape(frames, FEATURE_STRIDE).min(dim=-1).values[None, :],
    }


def _feature_extractor_hop(path: str) -> int | None:
    """hop_length of the folder's Xcodec2FeatureExtractor, when there is one locally (a cross-check)."""
    if not Path(path).is_dir():
        return None
    fe = Path(path) / "preprocessor_config.json"
    if not fe.is_file():
        return None
    import json

    try:
        hop = json.loads(fe.read_text()).get("hop_length")
    except (OSError, ValueError):
        return None
    return int(hop) if hop else None


def build_tiny(folder: str | os.PathLike[str]) -> None:
    """Write a tiny XCodec2 (random weights, ~1.3 M params, 64 codes, hop 320 at 16 kHz) to ``folder``."""
    from transformers import Xcodec2Config, Xcodec2Model

    config = Xcodec2Config(
        # hidden_size 64 rather than FACTS.md's 32: GroupNorm(32 groups) over 32 channels fails on a
        # one-code clip decoded alone (one value per group); 64 channels keep 2 per group, like the real 1024
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=16,
        encoder_hidden_size=8,
        quantization_dim=96,  # = hidden_size + the semantic hidden size (the decoder's input width)
        quantization_levels=list(TINY_QUANTIZATION_LEVELS),
        sampling_rate=SAMPLE_RATE,
        semantic_model_config=dict(
            model_type="wav2vec2-bert",
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            output_hidden_size=32,
        ),
    )
    model = Xcodec2Model(config)
    model.save_pretrained(folder)
    # The feature extractor makes the folder complete (encode() needs it), as on the hub. Its class needs
    # torchaudio (only for encoding); without it, write the same preprocessor_config.json by hand.
    fe_kwargs = dict(
        feature_size=80, sampling_rate=SAMPLE_RATE, padding_value=1.0, hop_length=config.hop_length
    )
    try:
        from transformers import Xcodec2FeatureExtractor

        Xcodec2FeatureExtractor(**fe_kwargs).save_pretrained(folder)
    except ImportError:
        import json

        fe = {"feature_extractor_type": "Xcodec2FeatureExtractor", "padding_side": "right", **fe_kwargs}
        (Path(folder) / "preprocessor_config.json").write_text(json.dumps(fe, indent=2) + "\n")
