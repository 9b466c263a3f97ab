"""Second style judge: an AudioSet sound-event classifier (transformers ``ASTForAudioClassification``).

Model. The Audio Spectrogram Transformer fine-tuned on AudioSet (``MIT/ast-finetuned-audioset-10-10-0.4593``
by default: 527 labels, 16 kHz, 128 kaldi mel bins, 1024 frames of 10 ms). AudioSet's ontology names
speaking styles and conditions a CLAP text prompt can only paraphrase ("Whispering", "Shout", "Yell",
"Child speech, kid speaking", "Narration, monologue", "Speech synthesizer") and recording faults
("Reverberation", "Echo", "Noise", "Distortion"). It fails differently from CLAP (a classifier trained on
labels, not an audio-text embedding), which is why it is offered as a second judge and reward.

Probabilities. AudioSet is multi-label (a clip can be "Speech" and "Shout" and "Reverberation"), so AST
is trained with a sigmoid per label, not a softmax: ``label_probabilities`` returns sigmoid(logits), each
in (0, 1), rows not summing to 1. A style names one or more labels (``classifier_labels`` in
styles.yaml); its score is the probability that AT LEAST ONE of them is present, the noisy-OR
``1 - prod(1 - p_label)`` (labels treated as independent events): in [0, 1], equal to the label's own
probability for a one-label style, at least the largest of them, and never above 1 (a plain sum could
be).

Long clips. AST sees a fixed window of ``max_length`` frames (10.24 s + one 25 ms frame); its feature
extractor cuts longer audio at the end (the tail would be ignored) and zero-pads shorter audio (as in
training on 10 s AudioSet clips). As for CLAP (``stylegrpo.scorers.clap``; both use ``_base.fixed_windows``), a clip longer than the window
is cut into ceil(L / W) windows of exactly W samples at fixed, evenly spaced starts (first at 0, last
ending at the clip's end); each window is classified and the clip's label probabilities are the MEAN of
its windows' (a style should hold over the whole clip, so a label heard in one window of three counts a
third). The same clip always gets the same score. Shorter clips (and windows) go through the
extractor's own padding. The extractor computes kaldi fbanks with torchaudio when it is installed and
with its own numpy code otherwise (both are transformers' implementation of the same features).
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._base import (
    DEFAULT_BATCH_SIZE,
    LazyScorer,
    ScorerError,
    as_waveforms,
    batched,
    sum_over_windows,
    window_pieces,
)
from .judges import StyleJudge

log = logging.getLogger(__name__)

DEFAULT_AST = "MIT/ast-finetuned-audioset-10-10-0.4593"  # AST fine-tuned on AudioSet (527 labels, mAP 0.459)
# fp32 even on GPU, as CLAP: a group's label probabilities can differ by less than bf16's resolution
AST_DTYPE = "float32"
FRAME_S = 0.025  # the extractor's kaldi frame (400 samples at 16 kHz)
HOP_S = 0.010  # its frame shift (160 samples): max_length frames span (max_length - 1) hops + one frame
MIN_CLIP_S = 0.1  # an empty or very short clip is scored as this much audio (one frame needs 25 ms)
CLOSE_MATCHES = 3  # how many similar label names an unknown label's message suggests
# transformers' numpy fbank (used without torchaudio) warns at construction that some of the real
# extractor's 128 mel filters is empty (band 3: a low band narrower than one of the 257 FFT bins). It is
# the checkpoint's own feature setting (that band is constant for every clip), so it is not reported
EMPTY_MEL_FILTER_WARNING = "At least one mel filter has all zero values"


class AstScorer(LazyScorer):
    """AudioSet label probabilities (sigmoid) of 16 kHz clips, deterministic for any length."""

    default_spec = DEFAULT_AST
    default_dtype = AST_DTYPE  # None (or "auto") means this; an explicit dtype is used as given
    _labels: tuple[str, ...] | None = None  # read from the config on first use (or set by _load)

    def _load(self, path: str) -> None:
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=EMPTY_MEL_FILTER_WARNING, category=UserWarning)
                feature_extractor = ASTFeatureExtractor.from_pretrained(path)
            model = ASTForAudioClassification.from_pretrained(path, dtype=self.dtype)
        except (OSError, ValueError) as e:
            raise ScorerError(f"cannot load AST classifier {self.spec!r}: {e}") from None
        self.model = model.to(self.device).eval()
        self.feature_extractor = feature_extractor
        self.sampling_rate = int(feature_extractor.sampling_rate)
        frame, hop = round(FRAME_S * self.sampling_rate), round(HOP_S * self.sampling_rate)
        self.window = (int(feature_extractor.max_length) - 1) * hop + frame  # samples one input covers
        self._labels = _label_names(model.config)

    @property
    def labels(self) -> tuple[str, ...]:
        """The classifier's label names in output order (from the config alone: no weights are loaded)."""
        if self._labels is None:
            from transformers import AutoConfig

            from ..tiny import resolve_model

            try:
                config = AutoConfig.from_pretrained(resolve_model(self.spec))
            except (OSError, ValueError) as e:
                raise ScorerError(f"cannot read the labels of AST classifier {self.spec!r}: {e}") from None
            self._labels = _label_names(config)
        return self._labels

    def check_labels(self, styles: Sequence[Any]) -> None:
        """Every ``classifier_labels`` entry of ``styles`` is a label of this model, or ScorerError naming
        the style, the label and the closest label names."""
        known = set(self.labels)
        for style in styles:
            for label in getattr(style, "classifier_labels", ()) or ():
                if label not in known:
                    close = difflib.get_close_matches(label, self.labels, n=CLOSE_MATCHES, cutoff=0.4)
                    lower = [x for x in self.labels if x.lower() == label.lower() and x not in close]
                    hint = ", ".join(repr(x) for x in lower + close) or "none"
                    raise ScorerError(
                        f"style {style.name!r}: classifier_labels entry {label!r} is not a label of "
                        f"{self.spec} ({len(self.labels)} labels); closest: {hint}. Fix it in styles.yaml"
                    )

    def label_probabilities(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """Sigmoid label probabilities [N, n_labels] (float64); a long clip: the mean over its windows."""
        self._ensure_loaded()
        import torch

        wavs = as_waveforms(wavs)
        n_labels = len(self.labels)
        if not wavs:
            return np.zeros((0, n_labels), dtype=np.float64)
        min_len = max(1, int(MIN_CLIP_S * self.sampling_rate))
        pieces, owner = window_pieces(wavs, self.window, min_len)
        probs = np.zeros((len(pieces), n_labels), dtype=np.float64)
        with torch.inference_mode():
            for start, chunk in batched(pieces, self.batch_size):
                feats = self.feature_extractor(
                    list(chunk), sampling_rate=self.sampling_rate, return_tensors="pt"
                )
                logits = self.model(
                    input_values=feats["input_values"].to(self.device, self.model.dtype)
                ).logits
                probs[start : start + len(chunk)] = torch.sigmoid(logits.float()).cpu().numpy()
        total = sum_over_windows(probs, owner, len(wavs))
        return total / np.bincount(owner, minlength=len(wavs))[:, None]

    def label_mass(self, probs: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """Noisy-OR of the named labels' probabilities per clip: P(at least one of them present)."""
        index = {name: k for k, name in enumerate(self.labels)}
        cols = [index[label] for label in labels]
        return 1.0 - np.prod(1.0 - probs[:, cols], axis=1)


def _label_names(config: Any) -> tuple[str, ...]:
    id2label = getattr(config, "id2label", None) or {}
    return tuple(str(id2label[k]) for k in sorted(id2label, key=int))


class AstJudge(StyleJudge):
    """AudioSet classifier: the probability mass on the labels a style names (``classifier_labels``)."""

    prefix = "ast"
    description = "AudioSet classifier (AST): probability of the style's classifier_labels"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: Any = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        dtype: Any = None,
        scorer: AstScorer | None = None,
    ):
        super().__init__(model, device=device, batch_size=batch_size)
        self.scorer = scorer or AstScorer(self.model_spec, device=device, batch_size=batch_size, dtype=dtype)

    def applies_to(self, style: Any) -> bool:
        return bool(getattr(style, "classifier_labels", ()))

    def check_styles(self, styles: Sequence[Any]) -> None:
        """Refuse a style naming a label the model does not have (reads the model's config only)."""
        self.scorer.check_labels(styles)

    def _scores(self, wavs: list[np.ndarray], styles: list[Any], texts: Sequence[str] | None) -> np.ndarray:
        self.scorer.check_labels(styles)
        probs = self.scorer.label_probabilities(wavs)
        return np.stack([self.scorer.label_mass(probs, s.classifier_labels) for s in styles], axis=1)


# -- tiny twin ------------------------------------------------------------------------------------
# Real AudioSet display names (the class list AudioSet publishes, as AST's id2label spells them): the
# labels styles.yaml uses plus a few neighbours, so label checks and masses run on real names.
TINY_LABELS = (
    "Speech",
    "Male speech, man speaking",
    "Female speech, woman speaking",
    "Child speech, kid speaking",
    "Narration, monologue",
    "Speech synthesizer",
    "Shout",
    "Yell",
    "Whispering",
    "Laughter",
    "Crying, sobbing",
    "Reverberation",
    "Noise",
)
TINY_MEL_BINS = 64  # fewer mel bins than the real 128: 5 frequency patches instead of 12
TINY_MAX_LENGTH = 200  # 2 s windows (the real model: 1024 frames, 10.24 s): tests hit the windowing cheaply


def build_tiny(folder: Any) -> None:
    """A tiny random-weight ASTForAudioClassification with a real ASTFeatureExtractor, saved."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=TINY_MAX_LENGTH,
        num_mel_bins=TINY_MEL_BINS,
        id2label=dict(enumerate(TINY_LABELS)),
        label2id={name: k for k, name in enumerate(TINY_LABELS)},
    )
    model = ASTForAudioClassification(config).eval()
    feature_extractor = ASTFeatureExtractor(num_mel_bins=TINY_MEL_BINS, max_length=TINY_MAX_LENGTH)
    model.save_pretrained(folder)
    feature_extractor.save_pretrained(folder)
