"""Speaker judge: how much a clip sounds like a reference speaker (speaker-embedding cosine).

Model. transformers' ``WavLMForXVector``: WavLM (a self-supervised speech encoder) with an x-vector head
(TDNN layers, mean + standard-deviation pooling over time, a linear layer) trained for speaker
verification; its ``embeddings`` output (before the speaker classifier) is the speaker embedding. The
default ``microsoft/wavlm-base-plus-sv`` is the checkpoint transformers documents for this class (its model
card compares L2-normalised embeddings by cosine, same speaker above ~0.86). The checkpoint's own feature
extractor (``AutoFeatureExtractor``: ``Wav2Vec2FeatureExtractor``, 16 kHz raw samples) prepares the input.

Computation. Each clip's embedding is L2-normalised; the similarity of a clip to a reference is the
cosine of the two embeddings, in [-1, 1] (higher = more alike). Batches hold clips of EQUAL length only
(as the codec's decode does): WavLM-base's first convolution uses group normalisation over the whole
input, so zero padding would change a short clip's embedding, and a clip's score must not depend on its
neighbours in a batch. Clips shorter than ``MIN_SECONDS`` are zero-padded to it (the x-vector head needs
that many frames for its pooling); clips longer than ``MAX_SECONDS`` are scored on their first
``MAX_SECONDS`` (with a warning).

The tiny twin (``tiny:wavlm-sv``) is the same class with random weights: it proves the plumbing, not
speaker similarity.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE
from ._base import LazyScorer, ScorerError, as_waveforms, batched, check_same_length

log = logging.getLogger(__name__)

DEFAULT_SPEAKER = "microsoft/wavlm-base-plus-sv"  # WavLM + x-vector head fine-tuned for speaker verification
# fp32 even on GPU (as CLAP): the reward compares rollouts of one prompt in one voice, whose cosines to the
# reference differ in the second or third decimal; bf16 keeps ~3 significant digits. The model is 0.1 B.
SPEAKER_DTYPE = "float32"
MIN_SECONDS = 0.5  # shorter clips are zero-padded to this: the TDNN head's pooling needs enough frames
MAX_SECONDS = 30.0  # longer clips are scored on their first 30 s (a reference or an utterance is shorter)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two [N, D] arrays (rows need not be normalised; a zero row gives 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ScorerError(f"cannot compare embeddings of shapes {a.shape} and {b.shape}")
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    denom = np.where((na > 0) & (nb > 0), na * nb, 1.0)
    return np.sum(a * b, axis=-1) / denom


class SpeakerScorer(LazyScorer):
    """Speaker embeddings (``embeddings``) and similarity to references (``similarity``) for 16 kHz clips."""

    default_spec = DEFAULT_SPEAKER
    default_dtype = SPEAKER_DTYPE

    def _load(self, path: str) -> None:
        from transformers import AutoFeatureExtractor, WavLMForXVector

        try:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(path)
            model = WavLMForXVector.from_pretrained(path, dtype=self.dtype)
        except (OSError, ValueError) as e:
            raise ScorerError(f"cannot load speaker model {self.spec!r}: {e}") from None
        rate = getattr(self.feature_extractor, "sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ScorerError(
                f"speaker model {self.spec!r} expects {rate} Hz audio; stylegrpo gives {SAMPLE_RATE} Hz"
            )
        self.model = model.to(self.device).eval()
        self.dim = int(model.config.xvector_output_dim)

    def embeddings(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised speaker embeddings [N, D] (float32), batched over clips of equal length."""
        self._ensure_loaded()
        import torch

        wavs = as_waveforms(wavs)
        out = np.zeros((len(wavs), self.dim), dtype=np.float32)
        if not wavs:
            return out
        lo, hi = int(MIN_SECONDS * SAMPLE_RATE), int(MAX_SECONDS * SAMPLE_RATE)
        if any(len(w) > hi for w in wavs):
            log.warning(
                "clips longer than %.0f s are scored on their first %.0f s by the speaker judge",
                MAX_SECONDS,
                MAX_SECONDS,
            )
        clips = [w[:hi] if len(w) >= lo else np.pad(w, (0, lo - len(w))) for w in wavs]
        by_length: dict[int, list[int]] = {}
        for i, w in enumerate(clips):
            by_length.setdefault(len(w), []).append(i)
        with torch.inference_mode():
            for length in sorted(by_length, reverse=True):
                for _, idx in batched(by_length[length], self.batch_size):
                    feats = self.feature_extractor(
                        [clips[i] for i in idx], sampling_rate=SAMPLE_RATE, return_tensors="pt"
                    )
                    values = feats["input_values"].to(self.device, self.model.dtype)
                    emb = self.model(input_values=values).embeddings.float()
                    emb = torch.nn.functional.normalize(emb, dim=-1)
                    out[list(idx)] = emb.cpu().numpy()
        return out

    def similarity(
        self, wavs: Sequence[np.ndarray], references: Sequence[np.ndarray] | np.ndarray
    ) -> np.ndarray:
        """Cosine [N] of each clip's embedding with its reference: a clip (1-D waveform) per clip, or an
        [N, D] array of reference embeddings (e.g. cached, from :meth:`embeddings`)."""
        check_same_length("clips", wavs, "references", references)
        if not len(wavs):
            return np.zeros(0, dtype=np.float32)
        if isinstance(references, np.ndarray) and references.ndim == 2:
            ref = references
        else:
            ref = self.embeddings(references)
        return cosine(self.embeddings(wavs), ref).astype(np.float32)


class ReferenceEmbeddings:
    """Speaker embeddings of references given as XCodec2 CODES (the dataset columns ``reference_codes`` and
    ``speaker_id``): each reference is decoded by the codec and embedded once, then cached by its speaker
    id and codes. Both the training ``speaker`` reward and eval's ``speaker_similarity`` use it, so the
    reference side passes through the same codec as the generated clips (the codec's own colouring is no
    difference between them).

    ``decode`` turns one code list into a 16 kHz waveform (e.g. ``codec.decode([codes])[0]``; it may load
    the codec on first call); ``embed`` gives :meth:`SpeakerScorer.embeddings` of waveforms. Thread-safe;
    at most ``max_items`` embeddings are kept (least recently used dropped first).
    """

    def __init__(
        self,
        decode: Callable[[list[int]], np.ndarray],
        embed: Callable[[list[np.ndarray]], np.ndarray],
        max_items: int = 4096,  # a 512-d float32 embedding each: 8 MB at most
    ):
        self.decode = decode
        self.embed = embed
        self.max_items = max_items
        self.decoded = 0  # references decoded so far (each once while it stays cached)
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(speaker_id: Any, codes: Sequence[int]) -> tuple:
        codes = tuple(int(c) for c in codes)
        return (str(speaker_id or ""), len(codes), hash(codes))

    def get(self, speaker_id: Any, codes: Sequence[int]) -> np.ndarray:
        """The embedding of one reference (decoded from its codes), computed once per reference."""
        key = self.key(speaker_id, codes)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        wav = self.decode([int(c) for c in codes])
        emb = self.embed([np.asarray(wav, dtype=np.float32)])[0]
        with self._lock:
            self.decoded += 1
            self._cache[key] = emb
            while len(self._cache) > self.max_items:
                self._cache.popitem(last=False)
        return emb

    def stack(self, speaker_ids: Sequence[Any], codes: Sequence[Sequence[int]]) -> np.ndarray:
        """[N, D] embeddings of N references (one per clip; repeated references are embedded once)."""
        return np.stack([self.get(s, c) for s, c in zip(speaker_ids, codes, strict=True)])


# -- tiny twin ------------------------------------------------------------------------------------


def build_tiny(folder: Any) -> None:
    """A tiny random-weight WavLMForXVector (the real class) with a Wav2Vec2 feature extractor, saved."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    config = WavLMConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,  # the real 7-layer convolution stem (stride 320: 50 frames/s), narrow
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_buckets=32,
        max_bucket_distance=80,
        tdnn_dim=(16, 16, 16, 16, 48),
        xvector_output_dim=16,
        num_labels=4,
        use_weighted_layer_sum=True,
    )
    model = WavLMForXVector(config).eval()
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
