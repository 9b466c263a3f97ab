"""Style judge: CLAP audio-text similarity (transformers ``ClapModel``).

Checkpoint choice. LAION's three "larger" CLAP checkpoints share one architecture (HTS-AT audio
encoder, RoBERTa text encoder) and differ only in training data: ``larger_clap_music`` (music),
``larger_clap_music_and_speech`` (music + speech) and ``larger_clap_general`` (music + speech +
AudioSet + LAION-Audio-630K). We default to ``laion/larger_clap_general``: our style descriptions are
about HOW someone speaks (whispering, shouting, an elderly woman, a child, sad, fast), and AudioSet's
label set names exactly these sound events ("Whispering", "Shout", "Yell", "Child speech",
"Male/Female speech", "Narration, monologue", "Laughter", "Crying, sobbing"), so the general model has
seen paralinguistic captions that the music-and-speech one has not, at equal ESC-50 accuracy
(89.98 vs 89.25 %). It is also what the design and the origin blog post use. Any CLAP checkpoint in
transformers format can be passed instead (``--clap`` / the preset).

Determinism. CLAP looks at a fixed 10 s window at 48 kHz. The feature extractor crops longer audio at
RANDOM ("rand_trunc") or stacks random crops ("fusion") and, in fusion mode, even marks a random clip
of the batch as "longer"; a random crop makes a reward noisy. We never let it crop: a clip longer than
the window is cut by us into ceil(L / W) windows of exactly W samples with evenly spaced, fixed starts
(the first at 0, the last ending at the clip's end; neighbours overlap a little), each window is
embedded, and the clip's embedding is the re-normalised mean of its window embeddings, so every part of
the clip counts and the same clip always gets the same score. Shorter clips (and each window) go
through the extractor's own padding ("repeatpad": the clip repeated, then zero-padded, as in CLAP's
training) and ``is_longer`` is forced to False (no random fusion).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, resample
from ._base import (
    DEFAULT_BATCH_SIZE,
    LazyScorer,
    ScorerError,
    as_waveforms,
    batched,
    check_same_length,
    fixed_windows,
    sum_over_windows,
    train_tiny_bpe,
    window_pieces,
)

log = logging.getLogger(__name__)

DEFAULT_CLAP = "laion/larger_clap_general"  # trained on speech + AudioSet's speaking-style labels (see above)
# fp32 even on GPU: the model is small (~0.8 GB) and a group's similarities can differ by less than
# bf16's resolution (~0.004 on a cosine), which would turn the style reward's spread into rounding noise.
CLAP_DTYPE = "float32"
PADDING = "repeatpad"  # how CLAP was trained on clips shorter than its window: repeat, then zero-pad
MEL_FLOOR = 1e-10  # the extractor's power floor before dB (transformers' spectrogram mel_floor/min_value)
MIN_CLIP_S = 0.1  # an empty clip is scored as this much silence (repeatpad cannot repeat nothing)


class ClapScorer(LazyScorer):
    """CLAP embeddings and similarities for 16 kHz waveforms and free-text descriptions.

    ``temperature`` of ``style_probabilities``: None uses CLAP's own learned logit scale
    (``exp(logit_scale_a)``, the factor ClapModel multiplies audio-to-text cosines by before its
    softmax in training), i.e. the sharpness the model was trained to express; pass a number to
    soften (larger) or sharpen (smaller) the distribution: logits = cosine / temperature.
    """

    default_spec = DEFAULT_CLAP
    default_dtype = CLAP_DTYPE  # None (or "auto") means this; an explicit dtype is used as given

    def __init__(
        self,
        spec: str | None = None,
        device: Any = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
        dtype: Any = None,
        temperature: float | None = None,
    ):
        super().__init__(spec, device, batch_size, dtype)
        if temperature is not None and not temperature > 0:
            raise ScorerError(f"ClapScorer: temperature must be > 0 (got {temperature})")
        self._temperature = temperature
        self._text_cache: dict[str, np.ndarray] = {}
        self.text_cache_hits = 0  # how many text embeddings came from the cache (for tests and logs)

    # -- loading ---------------------------------------------------------------------------------
    def _load(self, path: str) -> None:
        from transformers import ClapModel, ClapProcessor

        try:
            processor = ClapProcessor.from_pretrained(path)
            model = ClapModel.from_pretrained(path, dtype=self.dtype)
        except (OSError, ValueError) as e:
            raise ScorerError(f"cannot load CLAP model {self.spec!r}: {e}") from None
        tokenizer = processor.tokenizer
        # Offline trap: a Roberta tokenizer can "load" with only its special tokens; it would embed
        # every description identically. Refuse it instead of scoring garbage.
        if len(tokenizer) <= len(tokenizer.all_special_tokens):
            raise ScorerError(
                f"CLAP tokenizer of {self.spec!r} has only {len(tokenizer)} tokens (special tokens only): "
                "the tokenizer files are missing from the checkpoint or cache; download the model again"
            )
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.feature_extractor = processor.feature_extractor
        self.tokenizer = tokenizer
        self.sampling_rate = int(self.feature_extractor.sampling_rate)  # CLAP's rate (48 kHz for LAION)
        self.window = int(self.feature_extractor.nb_max_samples)  # max_length_s * sampling_rate
        fused = bool(getattr(model.config.audio_config, "enable_fusion", False))
        # Fused models take 4-channel input (mode "fusion"); unfused ones one channel ("rand_trunc").
        # Neither crops here: every window we pass is at most one window long.
        self.truncation = "fusion" if fused else "rand_trunc"
        self.max_text_length = int(model.config.text_config.max_position_embeddings) - 2  # Roberta offset

    @property
    def logit_scale(self) -> float:
        """CLAP's learned audio-to-text logit scale, exp(logit_scale_a)."""
        self._ensure_loaded()
        return float(self.model.logit_scale_a.detach().float().exp().item())

    @property
    def temperature(self) -> float:
        return self._temperature if self._temperature is not None else 1.0 / self.logit_scale

    # -- audio -----------------------------------------------------------------------------------
    def windows(self, wav48: np.ndarray) -> list[np.ndarray]:
        """Fixed, evenly spaced windows of exactly one CLAP window covering a 48 kHz clip."""
        self._ensure_loaded()
        return fixed_windows(wav48, self.window)

    def audio_embeddings(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """Unit-norm CLAP embeddings [N, D] of 16 kHz clips (deterministic for any length)."""
        self._ensure_loaded()
        import torch

        wavs = as_waveforms(wavs)
        if not wavs:
            return np.zeros((0, self.model.config.projection_dim), dtype=np.float32)
        min_len = max(1, int(MIN_CLIP_S * self.sampling_rate))
        wavs48 = [resample(w, SAMPLE_RATE, self.sampling_rate) for w in wavs]
        pieces, owner = window_pieces(wavs48, self.window, min_len)
        emb = np.zeros((len(pieces), self.model.config.projection_dim), dtype=np.float32)
        with torch.inference_mode():
            for start, chunk in batched(pieces, self.batch_size):
                features = self.log_mel(list(chunk))
                is_longer = torch.zeros((len(chunk), 1), dtype=torch.bool, device=self.device)
                out = self.model.get_audio_features(
                    input_features=features.to(self.device, self.model.dtype), is_longer=is_longer
                )
                emb[start : start + len(chunk)] = out.pooler_output.float().cpu().numpy()
        return _normalize(sum_over_windows(emb, owner, len(wavs)))

    def log_mel(self, windows: list[np.ndarray]) -> Any:
        """CLAP input features [B, C, T, mels] of 48 kHz windows (each at most one window long).

        Unfused models: the feature extractor's own recipe (repeat-pad to the window, Hann STFT, power,
        Slaney mel, dB) computed with torch on the judge's device in one batch; it matches the
        extractor's numpy loop (see the tests) at a fraction of its CPU time. Fused models go through
        the extractor itself (4-channel input).
        """
        import torch

        if self.truncation == "fusion":
            feats = self.feature_extractor(
                windows,
                sampling_rate=self.sampling_rate,
                truncation="fusion",
                padding=PADDING,
                return_tensors="pt",
            )
            return feats["input_features"]
        fe = self.feature_extractor
        x = torch.from_numpy(np.stack([_repeat_pad(w, self.window) for w in windows])).to(self.device)
        window = torch.hann_window(fe.fft_window_size, periodic=True, dtype=torch.float32, device=self.device)
        spec = torch.stft(
            x.float(),
            n_fft=fe.fft_window_size,
            hop_length=fe.hop_length,
            window=window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real**2 + spec.imag**2  # [B, freq, frames]
        mel_fb = torch.as_tensor(
            fe.mel_filters_slaney, dtype=torch.float32, device=self.device
        )  # [freq, mels]
        mel = torch.clamp(torch.einsum("fm,bft->btm", mel_fb, power), min=MEL_FLOOR)
        return (10.0 * torch.log10(mel)).unsqueeze(1)  # [B, 1, frames, mels]

    # -- text ------------------------------------------------------------------------------------
    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm CLAP embeddings [N, D] of descriptions; each distinct text is embedded once."""
        self._ensure_loaded()
        import torch

        texts = [str(t) for t in texts]
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        self.text_cache_hits += sum(1 for t in texts if t in self._text_cache)
        if missing:
            with torch.inference_mode():
                for _, chunk in batched(missing, self.batch_size):
                    tok = self.tokenizer(
                        list(chunk),
                        padding=True,
                        truncation=True,
                        max_length=self.max_text_length,
                        return_tensors="pt",
                    ).to(self.device)
                    out = self.model.get_text_features(
                        input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
                    )
                    vecs = _normalize(out.pooler_output.float().cpu().numpy())
                    for t, v in zip(chunk, vecs, strict=True):
                        self._text_cache[t] = v
        if not texts:
            return np.zeros((0, self.model.config.projection_dim), dtype=np.float32)
        return np.stack([self._text_cache[t] for t in texts])

    # -- scores ----------------------------------------------------------------------------------
    def similarity(
        self, wavs: Sequence[np.ndarray], descriptions: Sequence[str], *, embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """Cosine similarity [N] of each clip with its OWN description (in [-1, 1]).

        ``embeddings``: this batch's ``audio_embeddings(wavs)`` if already computed (e.g. to get both
        ``similarity`` and ``style_probabilities`` of the same clips with one pass of the audio model).
        """
        check_same_length("clips", wavs, "descriptions", descriptions)
        if len(wavs) == 0:
            return np.zeros(0, dtype=np.float32)
        audio = self._audio(wavs, embeddings)
        text = self.text_embeddings(descriptions)
        return np.sum(audio * text, axis=1).astype(np.float32)

    def _audio(self, wavs: Sequence[np.ndarray], embeddings: np.ndarray | None) -> np.ndarray:
        if embeddings is None:
            return self.audio_embeddings(wavs)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(wavs):
            raise ScorerError(
                f"embeddings must be audio_embeddings(wavs): [{len(wavs)}, D], got {embeddings.shape}"
            )
        return embeddings

    def style_embeddings(self, candidates: Mapping[str, Sequence[str]]) -> np.ndarray:
        """One unit vector per style [S, D]: the re-normalised mean of its paraphrases' embeddings.

        This is CLIP's "prompt ensembling": averaging the paraphrases in embedding space gives a
        prototype of the style, and re-normalising it keeps a style with more varied paraphrases
        (whose raw mean is shorter) from looking less similar to everything. (The mean of the
        per-paraphrase similarities equals the un-normalised version, which carries that bias.)
        """
        if not candidates:
            raise ScorerError("style_probabilities needs at least one candidate style")
        protos = []
        for name, paraphrases in candidates.items():
            if isinstance(paraphrases, str):
                paraphrases = [paraphrases]
            if not paraphrases:
                raise ScorerError(f"style {name!r} has no descriptions to compare audio with")
            protos.append(self.text_embeddings(list(paraphrases)).mean(axis=0))
        return _normalize(np.stack(protos))

    def style_similarities(
        self,
        wavs: Sequence[np.ndarray],
        candidates: Mapping[str, Sequence[str]],
        *,
        embeddings: np.ndarray | None = None,
    ) -> np.ndarray:
        """Cosine [N, S] of each clip with each style's prototype (columns in candidates order)."""
        protos = self.style_embeddings(candidates)
        if len(wavs) == 0:
            return np.zeros((0, len(protos)), dtype=np.float32)
        return (self._audio(wavs, embeddings) @ protos.T).astype(np.float32)

    def style_probabilities(
        self,
        wavs: Sequence[np.ndarray],
        candidates: Mapping[str, Sequence[str]],
        temperature: float | None = None,
        *,
        embeddings: np.ndarray | None = None,
    ) -> np.ndarray:
        """Softmax over styles [N, S] of the style similarities / temperature; rows sum to 1.

        Column j is the probability of ``list(candidates)[j]``. ``embeddings`` as in ``similarity``.
        """
        t = self.temperature if temperature is None else float(temperature)
        if not t > 0:
            raise ScorerError(f"temperature must be > 0 (got {temperature})")
        sims = self.style_similarities(wavs, candidates, embeddings=embeddings).astype(np.float64)
        logits = sims / t
        if len(logits):
            logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return p.astype(np.float32)


def candidates_from_catalog(catalog: Any) -> dict[str, tuple[str, ...]]:
    """{style name: its descriptions} for every style of a Catalog, in catalog order."""
    return {style.name: tuple(style.descriptions) for style in catalog.styles}


def _repeat_pad(wav: np.ndarray, length: int) -> np.ndarray:
    """ClapFeatureExtractor's "repeatpad": tile the clip as many whole times as fit, zero-pad the rest."""
    wav = np.asarray(wav, dtype=np.float32)[:length]
    if 0 < wav.size < length:
        wav = np.tile(wav, length // wav.size)
    return np.pad(wav, (0, length - wav.size))


def _normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


# -- tiny twin ------------------------------------------------------------------------------------
TINY_VOCAB = 600  # BPE vocabulary of the tiny tokenizer: enough to split descriptions into sub-words
TINY_CORPUS = (
    "a man whispering softly",
    "someone speaking in a hushed whisper",
    "a quiet breathy whisper",
    "a man shouting loudly across a room",
    "someone yelling at the top of their voice",
    "an elderly woman speaking slowly in a gentle frail voice",
    "a news anchor reading the news quickly and clearly",
    "a calm narrator reading a bedtime story",
    "a sad person speaking quietly",
    "a happy child laughing and talking fast",
    "the sound of a dog barking",
    "music playing in the background",
)


def build_tiny(folder: Any) -> None:
    """A tiny random-weight ClapModel with a real processor (locally trained Roberta BPE), saved."""

    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab, merges = train_tiny_bpe(TINY_CORPUS, TINY_VOCAB, specials)
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
    if len(tokenizer) <= len(specials):
        raise ScorerError("tiny CLAP tokenizer has no learned tokens")
    config = ClapConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=80,
            pad_token_id=tokenizer.pad_token_id,
        ),
        audio_config=dict(
            depths=[1, 1],
            num_attention_heads=[2, 2],
            patch_embeds_hidden_size=16,
            hidden_size=32,
            spec_size=256,  # HTS-AT reshapes the mel into a 256x256 image: must stay 256
            num_mel_bins=64,
            window_size=8,
            enable_fusion=False,
        ),
        projection_dim=16,
    )
    model = ClapModel(config).eval()
    # Unfused model: one-channel input. The scorer never lets it crop (see the module docstring).
    feature_extractor = ClapFeatureExtractor(truncation="rand_trunc", padding=PADDING)
    processor = ClapProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
