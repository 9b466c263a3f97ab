"""Judges of audio: style (CLAP), intelligibility (ASR error rates, Whisper NLL), acoustic measures,
speech quality (DNSMOS).

Plain library code (no TRL): each takes lists of 1-D float32 waveforms at ``stylegrpo.audio.SAMPLE_RATE``
and returns numbers per clip. Model-backed judges load their model lazily, on first use, through
``stylegrpo.tiny.resolve_model(spec)`` (so ``tiny:KIND`` twins run the same code as real checkpoints).
Importing this package loads no model and no torch.
"""

from ._base import DEFAULT_BATCH_SIZE, ScorerError
from .acoustic import AcousticMeasures, count_syllables, field_scores, measure, measure_batch, target_score
from .asr import DEFAULT_ASR, AsrScorer, ErrorRates, cer, normalize_text, wer
from .clap import DEFAULT_CLAP, ClapScorer, candidates_from_catalog
from .quality import DEFAULT_QUALITY, QUALITY_FIELDS, QualityScorer, QualityScores, clean_score
from .whisper_nll import DEFAULT_WHISPER, WhisperNllScorer

__all__ = [
    "DEFAULT_ASR",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CLAP",
    "DEFAULT_QUALITY",
    "DEFAULT_WHISPER",
    "AcousticMeasures",
    "AsrScorer",
    "ClapScorer",
    "ErrorRates",
    "QUALITY_FIELDS",
    "QualityScorer",
    "QualityScores",
    "ScorerError",
    "WhisperNllScorer",
    "candidates_from_catalog",
    "cer",
    "clean_score",
    "count_syllables",
    "field_scores",
    "measure",
    "measure_batch",
    "normalize_text",
    "target_score",
    "wer",
]
