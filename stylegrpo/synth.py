"""Text (+ style description) -> speech: the Llasa policy, the XCodec2 codec and the catalog's prompt template.

Used by ``stylegrpo say`` and by eval. Models load lazily on first use, so constructing a Synthesizer is
free. Prompts come from ``PromptTemplate.render``: the same function the training data uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import SAMPLE_RATE
from .errors import StyleGRPOError
from .llasa import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P, generate, load_policy
from .presets import DEFAULT_PRESET, Preset, get_preset, resolve_device
from .styles import Catalog, PromptTemplate, Reference

if TYPE_CHECKING:
    import torch

    from .codec import Codec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """One synthesized utterance."""

    wav: np.ndarray  # float32 mono at SAMPLE_RATE; empty when the model wrote no speech token
    codes: list[int]  # codec ids the policy wrote
    truncated: bool  # the length cap came before <|SPEECH_GENERATION_END|>
    prompt: list[dict[str, str]] = field(repr=False)  # the chat messages given to the policy
    text: str = ""
    description: str | None = None
    reference: Reference | None = field(default=None, repr=False)  # the voice prompt (never in wav/codes)

    @property
    def seconds(self) -> float:
        return len(self.wav) / SAMPLE_RATE


class Synthesizer:
    """Policy + codec + prompt template.

    ``preset`` is a Preset or its name; ``policy``/``codec`` override single model specs. ``adapter`` is
    a PEFT folder put on the policy; it is merged for speed unless ``merge=False`` (keep it separate to
    compare with the base through :meth:`adapter_disabled` without loading the model twice).
    """

    def __init__(
        self,
        preset: Preset | str = DEFAULT_PRESET,
        device: str | torch.device = "auto",
        adapter: str | os.PathLike[str] | None = None,
        catalog: Catalog | None = None,
        *,
        policy: str | None = None,
        codec: str | None = None,
        merge: bool = True,
        dtype: torch.dtype | None = None,
        batch_size: int | None = None,
        max_new_tokens: int | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = DEFAULT_TOP_P,
        top_k: int | None = DEFAULT_TOP_K,
        encoder: bool = False,
    ):
        self.preset = get_preset(preset).with_overrides(policy=policy, codec=codec)
        self.encoder = encoder  # load the codec's encoder too (reference speakers are encoded with it)
        self.device = resolve_device(device)
        self.adapter = adapter
        self.catalog = catalog
        self.template: PromptTemplate = catalog.template if catalog is not None else PromptTemplate()
        self.merge = merge
        self.dtype = dtype
        self.batch_size = batch_size or self.preset.batch_size
        self.max_new_tokens = max_new_tokens or self.preset.max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self._model: Any = None
        self._tokenizer: Any = None
        self._codec: Codec | None = None

    # -- lazy models
    def _load_policy(self) -> None:
        if self._model is None:
            self._model, self._tokenizer = load_policy(
                self.preset.policy, self.device, self.dtype, adapter=self.adapter, merge=self.merge
            )

    @property
    def model(self) -> Any:
        self._load_policy()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self._load_policy()
        return self._tokenizer

    @property
    def codec(self) -> Codec:
        if self._codec is None:
            from .codec import Codec

            self._codec = Codec.load(self.preset.codec, self.device, decode_only=not self.encoder)
            from .llasa import speech_tokens

            n_tok = speech_tokens(self.tokenizer).num_codes
            if n_tok != self._codec.num_codes:
                raise StyleGRPOError(
                    f"policy {self.preset.policy} has {n_tok} speech tokens but codec {self.preset.codec} "
                    f"has {self._codec.num_codes} codes: they do not belong together"
                )
        return self._codec

    @contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Within the block, generate with the base model (needs an unmerged adapter)."""
        model = self.model
        if self.adapter is None:
            with nullcontext():
                yield
            return
        if self.merge or not hasattr(model, "disable_adapter"):
            raise StyleGRPOError("adapter_disabled() needs Synthesizer(..., adapter=DIR, merge=False)")
        with model.disable_adapter():
            yield

    def encode_reference(self, audio: Any, text: str) -> Reference:
        """The prompt reference of a prepared clip (``reference.ReferenceAudio``) and its transcript,
        encoded by this synthesizer's codec (``Synthesizer(..., encoder=True)``)."""
        from .reference import encode_reference

        if not self.codec.can_encode:
            raise StyleGRPOError("encode_reference() needs Synthesizer(..., encoder=True)")
        return encode_reference(self.codec, audio, text)

    # -- synthesis
    def prompts(
        self,
        texts: Sequence[str],
        descriptions: Sequence[str | None] | None = None,
        references: Sequence[Reference | None] | None = None,
    ) -> list:
        if descriptions is None:
            descriptions = [None] * len(texts)
        if references is None:
            references = [None] * len(texts)
        if len(descriptions) != len(texts) or len(references) != len(texts):
            raise StyleGRPOError(
                f"{len(texts)} texts but {len(descriptions)} descriptions and {len(references)} references"
            )
        return [
            self.template.render(t, d, r) for t, d, r in zip(texts, descriptions, references, strict=True)
        ]

    def synthesize(
        self,
        texts: Sequence[str],
        descriptions: Sequence[str | None] | None = None,
        seed: int | None = 0,
        *,
        progress: bool | None = None,
        references: Sequence[Reference | None] | None = None,
    ) -> list[Clip]:
        """Speak each text (in its description's style, or plainly when None); clips in input order.

        ``references`` (one per text, or None) puts a reference speaker into each prompt: the model
        continues after the reference's codes, and each clip's codes and audio are only what it generated.

        ``seed`` makes the result reproducible (same texts, descriptions, seed and batch size -> same
        audio); None samples freshly. ``progress`` None shows a bar when there are several batches.
        """
        from .console import progress_bar

        texts = list(texts)
        for i, t in enumerate(texts):
            if not t or not t.strip():
                raise StyleGRPOError(f"text #{i + 1} is empty: give words to speak")
        prompts = self.prompts(texts, descriptions, references)
        descs = list(descriptions) if descriptions is not None else [None] * len(texts)
        refs = list(references) if references is not None else [None] * len(texts)
        model, tokenizer, codec = self.model, self.tokenizer, self.codec
        from .llasa import check_reference_codes

        for i, ref in enumerate(refs):
            check_reference_codes(tokenizer, ref, f"text #{i + 1}" if len(refs) > 1 else "")
        clips: list[Clip] = []
        n = len(prompts)
        show = (n > self.batch_size) if progress is None else progress
        bar = progress_bar(total=n, desc="synthesizing", unit="text", disable=not show)
        for k, start in enumerate(range(0, n, self.batch_size)):
            chunk = prompts[start : start + self.batch_size]
            gens = generate(
                model,
                tokenizer,
                chunk,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=self.top_k,
                seed=None if seed is None else seed + k,
                batch_size=self.batch_size,
                progress=False,
            )
            # only the generated codes: generate() returns the completion after the prompt, and a
            # reference's codes are in the prompt
            wavs = codec.decode([g.codes for g in gens])
            for j, (g, wav) in enumerate(zip(gens, wavs, strict=True)):
                i = start + j
                clips.append(Clip(wav, g.codes, g.truncated, prompts[i], texts[i], descs[i], refs[i]))
            bar.update(len(chunk))
        bar.close()
        n_trunc = sum(c.truncated for c in clips)
        if n_trunc:
            log.warning(
                "%d of %d clip(s) reached the cap of %d tokens (%.1f s) before the model ended them",
                n_trunc,
                len(clips),
                self.max_new_tokens,
                self.max_new_tokens / codec.tokens_per_second,
            )
        return clips
