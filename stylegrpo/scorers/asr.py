"""Intelligibility judge: speech recognition, then character and word error rates against the text.

Backends:
- transformers (default): ``ParakeetForCTC`` + ``AutoProcessor``; spec a hub id (default
  ``nvidia/parakeet-ctc-1.1b``), a folder, or ``tiny:parakeet``.
- NeMo (optional extra ``pip install stylegrpo[nemo]``): spec ``nemo:NAME_OR_PATH`` where the rest is a
  NeMo model name (e.g. ``nemo:nvidia/parakeet-tdt-0.6b-v2``), a ``.nemo`` file, or a folder holding one
  (``nemo:tiny:parakeet-nemo``). NeMo is imported only when such a spec is used.

Error rates use ONE normalizer for hypothesis and reference (``normalize_text``) and are capped at 1:
an ASR that hallucinates a long transcript on bad audio gives CER 1 (as bad as saying nothing), never
more, so one runaway clip cannot dominate a group's reward statistics; nothing here raises on odd text.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE
from ._base import (
    LazyScorer,
    ScorerError,
    as_waveforms,
    batched,
    check_same_length,
    order_by_length,
)

log = logging.getLogger(__name__)

DEFAULT_ASR = "nvidia/parakeet-ctc-1.1b"  # strong English ASR in native transformers format, CTC = one pass
# fp32 even on GPU (as CLAP): the transcript is the per-frame argmax, and bf16 moves frame log-probs by up to
# ~0.05 nats, as much as the margins of the uncertain frames where a group's rollouts differ (measured on
# the full-size random-weight model, CPU: 18 % of frame argmaxes flipped, median margin 0.07). Costs 2.1 GB
# more than bf16; recipes can pick bfloat16 with asr_dtype.
ASR_DTYPE = "float32"
NEMO_PREFIX = "nemo:"  # spec prefix selecting the NeMo backend
MAX_ERROR_RATE = 1.0  # cap: a transcript longer than the reference can exceed 1 (insertions)
MIN_CLIP_S = 0.1  # an empty clip is recognised as this much silence (feature extractors need samples)

_APOSTROPHES = "'\u2019\u02bc\u2018`"  # joined, not split: "don't" -> "dont", same for hyp and ref
_APOSTROPHE_RE = re.compile(f"[{re.escape(_APOSTROPHES)}]")
_SPACE_RE = re.compile(r"\s+")


def normalize_text(text: str | None) -> str:
    """The one text normalizer for ASR scoring: NFKC, lower case, punctuation removed, spaces collapsed.

    Apostrophes are deleted (so "Don't" and "dont" agree); every other punctuation character becomes a
    space ("well-known" -> "well known"). Digits and other symbols are kept as they are (no number
    expansion: texts in the data set should be written the way they are spoken).
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = _APOSTROPHE_RE.sub("", text)
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return _SPACE_RE.sub(" ", text).strip()


def cer(hypothesis: str | None, reference: str | None) -> float:
    """Character error rate of the normalised texts, in [0, 1]; never raises.

    Empty reference: 0 when the hypothesis is empty too, else 1. Empty hypothesis: 1.
    """
    return _error_rate(hypothesis, reference, chars=True)


def wer(hypothesis: str | None, reference: str | None) -> float:
    """Word error rate of the normalised texts, in [0, 1]; never raises (same edge cases as ``cer``)."""
    return _error_rate(hypothesis, reference, chars=False)


def _error_rate(hypothesis: str | None, reference: str | None, *, chars: bool) -> float:
    import jiwer

    hyp, ref = normalize_text(hypothesis), normalize_text(reference)
    if not ref:
        return 0.0 if not hyp else MAX_ERROR_RATE
    if not hyp:
        return MAX_ERROR_RATE
    try:
        value = jiwer.cer(ref, hyp) if chars else jiwer.wer(ref, hyp)
    except Exception as e:  # noqa: BLE001 - a scoring helper must never take training down
        log.warning("error rate failed for %r vs %r: %s; scoring it as %s", hyp, ref, e, MAX_ERROR_RATE)
        return MAX_ERROR_RATE
    return float(min(MAX_ERROR_RATE, max(0.0, value)))


@dataclass(frozen=True)
class ErrorRates:
    cer: float  # character error rate, normalised texts, capped at 1
    wer: float  # word error rate, normalised texts, capped at 1
    hypothesis: str  # the raw transcript


class AsrScorer(LazyScorer):
    """Transcribes 16 kHz clips in batches and scores them against reference texts."""

    default_spec = DEFAULT_ASR
    default_dtype = ASR_DTYPE

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        spec = self.spec
        self.backend = "nemo" if spec.startswith(NEMO_PREFIX) else "transformers"
        self._feature_kwargs: dict[str, Any] = {}  # extra feature-extractor kwargs (device=), set on load

    # -- loading ---------------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        from ..tiny import resolve_model

        spec = self.spec[len(NEMO_PREFIX) :] if self.backend == "nemo" else self.spec
        path = resolve_model(spec)
        nemo_file = _find_nemo_file(path)
        if nemo_file is not None:  # a tiny:parakeet-nemo folder, or a .nemo file, is NeMo either way
            self.backend = "nemo"
        log.debug("AsrScorer: loading %s (%s backend) on %s", self.spec, self.backend, self.device)
        if self.backend == "nemo":
            self._load_nemo(nemo_file or path)
        else:
            self._load(path)
        self._loaded = True

    def _load(self, path: str) -> None:
        from transformers import AutoConfig, AutoProcessor, ParakeetForCTC

        try:
            config = AutoConfig.from_pretrained(path)
            if config.model_type != "parakeet_ctc":
                raise ScorerError(
                    f"ASR model {self.spec!r} is a {config.model_type!r} model; the transformers backend takes "
                    f"Parakeet CTC checkpoints (e.g. {DEFAULT_ASR}); use nemo:NAME for NeMo TDT models"
                )
            self.processor = AutoProcessor.from_pretrained(path)
            model = ParakeetForCTC.from_pretrained(path, dtype=self.dtype)
        except OSError as e:
            raise ScorerError(f"cannot load ASR model {self.spec!r}: {e}") from None
        self.model = model.to(self.device).eval()
        self._feature_kwargs = features_on_device(self.processor.feature_extractor, self.device)

    def _features(self, wavs: list[np.ndarray]) -> Any:
        """Padded log-mel features (and attention mask) of a batch, on the judge's device when the
        feature extractor can compute them there (see features_on_device)."""
        return self.processor(
            audio=wavs, sampling_rate=SAMPLE_RATE, return_tensors="pt", **self._feature_kwargs
        )

    def _load_nemo(self, target: str) -> None:
        try:
            import nemo.collections.asr as nemo_asr
        except ImportError:
            raise ScorerError(
                f"ASR spec {self.spec!r} needs NeMo: pip install 'stylegrpo[nemo]' (nemo_toolkit[asr])"
            ) from None
        try:
            if target.endswith(".nemo") and Path(target).is_file():
                model = nemo_asr.models.ASRModel.restore_from(target, map_location=self.device)
            else:
                model = nemo_asr.models.ASRModel.from_pretrained(target, map_location=self.device)
        except (OSError, FileNotFoundError, ValueError) as e:
            raise ScorerError(f"cannot load NeMo ASR model {self.spec!r}: {e}") from None
        self.model = model.to(self.device).eval()

    # -- recognition -----------------------------------------------------------------------------
    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """One transcript per clip (raw model output; empty string for silence)."""
        self._ensure_loaded()
        wavs = as_waveforms(wavs)
        min_len = int(MIN_CLIP_S * SAMPLE_RATE)
        wavs = [w if w.size >= min_len else np.pad(w, (0, min_len - w.size)) for w in wavs]
        if not wavs:
            return []
        if self.backend == "nemo":
            return self._transcribe_nemo(wavs)
        import torch

        order = order_by_length(wavs)  # similar lengths share a batch: less padding, less compute
        out: list[str] = [""] * len(wavs)
        with torch.inference_mode():
            for _, idx in batched(order, self.batch_size):
                inputs = self._features([wavs[i] for i in idx])
                ids = self.model.generate(
                    input_features=inputs["input_features"].to(self.device, self.model.dtype),
                    attention_mask=inputs["attention_mask"].to(self.device),
                )
                # CTC: merge repeats, drop blanks (set explicitly: older processors guess the decoder type)
                texts = self.processor.batch_decode(ids.cpu(), skip_special_tokens=True, group_tokens=True)
                for i, text in zip(idx, texts, strict=True):
                    out[i] = text.strip()
        return out

    def _transcribe_nemo(self, wavs: list[np.ndarray]) -> list[str]:
        import torch

        with torch.inference_mode():
            hyps = self.model.transcribe(list(wavs), batch_size=self.batch_size, verbose=False)
        if isinstance(hyps, tuple):  # some NeMo models return (best, all) hypotheses
            hyps = hyps[0]
        return [(h.text if hasattr(h, "text") else str(h)).strip() for h in hyps]

    def error_rates(self, wavs: Sequence[np.ndarray], references: Sequence[str]) -> list[ErrorRates]:
        """Transcribe each clip and compare it with its own reference text."""
        check_same_length("clips", wavs, "references", references)
        hyps = self.transcribe(wavs)
        return [ErrorRates(cer(h, r), wer(h, r), h) for h, r in zip(hyps, references, strict=True)]


def features_on_device(feature_extractor: Any, device: Any) -> dict[str, Any]:
    """Set a transformers feature extractor up to compute on ``device``; returns the call's extra kwargs.

    ParakeetFeatureExtractor.__call__ takes ``device=`` (its STFT, mel filter and normalisation run there),
    but in transformers 5.x it pads the waveforms through ``pad()``, which returns CPU tensors, so on any
    device but the CPU its STFT fails (input on the CPU, window on the device). Moving ``pad()``'s output to
    the device makes the rest of its own ``__call__`` run there: the same operations, on the device. On the
    CPU, or for an extractor without a ``device`` argument, nothing changes (features on the CPU).
    """
    import inspect

    import torch

    device = torch.device(device)
    if device.type == "cpu" or "device" not in inspect.signature(feature_extractor.__call__).parameters:
        return {}
    pad = feature_extractor.pad

    def pad_on_device(*args: Any, **kwargs: Any) -> Any:
        return pad(*args, **kwargs).to(device)

    feature_extractor.pad = pad_on_device
    return {"device": str(device)}


def _find_nemo_file(path: str) -> str | None:
    p = Path(path)
    if p.is_file() and p.suffix == ".nemo":
        return str(p)
    if p.is_dir() and not (p / "config.json").exists():
        found = sorted(p.glob("*.nemo"))
        if found:
            return str(found[0])
    return None


# -- tiny twins -----------------------------------------------------------------------------------
TINY_VOCAB = 256  # sub-word vocabulary of the tiny Parakeet tokenizer
TINY_CORPUS = (
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "a man whispering softly in the dark",
    "please call stella and ask her to bring these things with her from the store",
    "six spoons of fresh snow peas five thick slabs of blue cheese",
    "we also need a small plastic snake and a big toy frog for the kids",
)


def build_tiny(folder: Any) -> None:
    """A tiny random-weight ParakeetForCTC with a real processor (locally trained Metaspace BPE), saved."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import (
        ParakeetCTCConfig,
        ParakeetFeatureExtractor,
        ParakeetForCTC,
        ParakeetProcessor,
        ParakeetTokenizer,
    )

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=["<pad>", "<unk>"])
    tok.train_from_iterator(list(TINY_CORPUS) * 4, trainer=trainer)
    tokenizer = ParakeetTokenizer(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    config = ParakeetCTCConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,  # the CTC blank is the pad token
        encoder_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            subsampling_conv_channels=16,
        ),
    )
    model = ParakeetForCTC(config).eval()
    processor = ParakeetProcessor(
        feature_extractor=ParakeetFeatureExtractor(),
        tokenizer=tokenizer,
        blank_token="<pad>",
        decoder_type="ctc",
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


TINY_NEMO_FILE = "parakeet-tiny.nemo"
TINY_NEMO_LABELS = list(" abcdefghijklmnopqrstuvwxyz'")  # character CTC vocabulary of the tiny NeMo model


def build_tiny_nemo(folder: Any) -> None:
    """A tiny random-weight NeMo EncDecCTCModel (Conformer, character CTC) saved as a .nemo file."""
    try:
        from nemo.collections.asr.models import EncDecCTCModel
        from omegaconf import OmegaConf
    except ImportError:
        raise ScorerError("building tiny:parakeet-nemo needs NeMo: pip install 'stylegrpo[nemo]'") from None

    d_model = 32
    n_mels = 64
    cfg = OmegaConf.create(
        {
            "sample_rate": SAMPLE_RATE,
            "labels": TINY_NEMO_LABELS,
            "preprocessor": {
                "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                "sample_rate": SAMPLE_RATE,
                "features": n_mels,
                "window_size": 0.025,
                "window_stride": 0.01,
                "normalize": "per_feature",
                "dither": 0.0,  # deterministic features (NeMo adds dither noise in training)
            },
            "encoder": {
                "_target_": "nemo.collections.asr.modules.ConformerEncoder",
                "feat_in": n_mels,
                "n_layers": 1,
                "d_model": d_model,
                "n_heads": 2,
                "subsampling": "striding",
                "subsampling_factor": 4,
                "subsampling_conv_channels": 16,
                "ff_expansion_factor": 2,
                "conv_kernel_size": 9,
                "dropout": 0.0,
                "dropout_emb": 0.0,
                "dropout_att": 0.0,
            },
            "decoder": {
                "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
                "feat_in": d_model,
                "num_classes": len(TINY_NEMO_LABELS),
                "vocabulary": TINY_NEMO_LABELS,
            },
            "optim": None,
        }
    )
    model = EncDecCTCModel(cfg=cfg).eval()
    model.save_to(str(Path(folder) / TINY_NEMO_FILE))
