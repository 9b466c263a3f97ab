"""Intelligibility judge 2: Whisper's teacher-forced negative log-likelihood of the reference text.

Unlike an error rate, the NLL is smooth: it says how surprised Whisper is by the right words given the
audio, even when greedy decoding would get them all right (or all wrong). Each clip's decoder input is
``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>`` + the text's tokens, and the score is the
mean negative log-probability of the text tokens and the final ``<|endoftext|>`` (the prefix tokens are
given, not scored). Batches are right-padded and pads masked, so a clip's score does not depend on its
batch. Whisper hears at most 30 s: longer clips are cut there (with a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
    train_tiny_bpe,
)

log = logging.getLogger(__name__)

DEFAULT_WHISPER = "openai/whisper-large-v3-turbo"  # large-v3 quality, 4 decoder layers: cheap teacher forcing
# fp32 even on GPU (as CLAP): the NLL is a continuous score whose differences within a group (same text,
# 8 rollouts) are small. Measured at full width with random weights (CPU): bf16 moved the NLL by 1e-3 nats,
# 2 % of the spread across clips; random weights give small, flat logits, so a trained model's larger
# logits make bf16's relative rounding (2^-9) larger in nats. Costs 1.6 GB more; whisper_dtype: bfloat16.
WHISPER_DTYPE = "float32"
SOT, EOT = "<|startoftranscript|>", "<|endoftext|>"
PREFIX_TOKENS = (SOT, "<|en|>", "<|transcribe|>", "<|notimestamps|>")  # English transcription, no timestamps


class WhisperNllScorer(LazyScorer):
    """Mean per-token NLL (nats) of each reference text given its clip; lower is more intelligible."""

    default_spec = DEFAULT_WHISPER
    default_dtype = WHISPER_DTYPE

    def _load(self, path: str) -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        try:
            processor = WhisperProcessor.from_pretrained(path)
            model = WhisperForConditionalGeneration.from_pretrained(path, dtype=self.dtype)
        except OSError as e:
            raise ScorerError(f"cannot load Whisper model {self.spec!r}: {e}") from None
        tokenizer = processor.tokenizer
        vocab = tokenizer.get_vocab()
        missing = [t for t in (*PREFIX_TOKENS, EOT) if t not in vocab]
        if missing:
            raise ScorerError(
                f"Whisper tokenizer of {self.spec!r} lacks the special token(s) {', '.join(missing)}"
            )
        ids = [vocab[t] for t in (*PREFIX_TOKENS, EOT)]
        self.prefix_ids = ids[:-1]
        self.eot_id = ids[-1]
        self.processor = processor
        self.tokenizer = tokenizer
        self.feature_extractor = processor.feature_extractor
        self.model = model.to(self.device).eval()
        self.max_target = int(model.config.max_target_positions)
        self.max_samples = int(self.feature_extractor.n_samples)  # 30 s window

    def text_ids(self, text: str) -> list[int]:
        """The scored tokens of a text: its BPE tokens (with Whisper's leading space) + <|endoftext|>."""
        self._ensure_loaded()
        # Whisper's transcripts start with a space token (" Hello"), as in OpenAI's decoding.
        ids = self.tokenizer(" " + str(text).strip(), add_special_tokens=False)["input_ids"]
        room = self.max_target - len(self.prefix_ids) - 1
        if len(ids) > room:
            log.warning("text of %d tokens cut to Whisper's %d-token limit: %.60r", len(ids), room, text)
            ids = ids[:room]
        return [*ids, self.eot_id]

    def nll(self, wavs: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        """Mean negative log-likelihood per scored token [N] (nats), teacher-forced, batched."""
        check_same_length("clips", wavs, "texts", texts)
        self._ensure_loaded()
        import torch

        wavs = as_waveforms(wavs)
        if not wavs:
            return np.zeros(0, dtype=np.float32)
        if any(len(w) > self.max_samples for w in wavs):
            log.warning("clips longer than Whisper's 30 s window are scored on their first 30 s")
        targets = [self.text_ids(t) for t in texts]
        out = np.zeros(len(wavs), dtype=np.float32)
        n_prefix = len(self.prefix_ids)
        with torch.inference_mode():
            for _, idx in batched(order_by_length(wavs), self.batch_size):
                feats = self.feature_extractor(  # log-mel computed on the judge's device (GPU: fast)
                    [wavs[i] for i in idx],
                    sampling_rate=SAMPLE_RATE,
                    return_tensors="pt",
                    device=str(self.device),
                )["input_features"].to(self.device, self.model.dtype)
                longest = max(len(targets[i]) for i in idx)
                # decoder input: prefix + text (the end token is only predicted); right-padded with EOT
                inputs = torch.full((len(idx), n_prefix + longest - 1), self.eot_id, dtype=torch.long)
                labels = torch.full((len(idx), n_prefix + longest - 1), -100, dtype=torch.long)
                for row, i in enumerate(idx):
                    seq = self.prefix_ids + targets[i][:-1]
                    inputs[row, : len(seq)] = torch.tensor(seq)
                    # position p predicts token p+1: the scored tokens sit after the prefix's last one
                    labels[row, n_prefix - 1 : n_prefix - 1 + len(targets[i])] = torch.tensor(targets[i])
                # no decoder mask needed: the decoder is causal, so right padding never reaches a real token
                logits = self.model(input_features=feats, decoder_input_ids=inputs.to(self.device)).logits
                labels = labels.to(self.device)
                per_token = torch.nn.functional.cross_entropy(  # fp32 log-softmax, pads ignored
                    logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none"
                )
                nll = per_token.sum(1) / (labels != -100).sum(1)
                out[list(idx)] = nll.cpu().numpy()
        return out


# -- tiny twin ------------------------------------------------------------------------------------
TINY_VOCAB = 400  # byte-level BPE vocabulary of the tiny Whisper tokenizer
TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "She sells sea shells by the sea shore.",
    "A man whispering softly in the dark.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
)


def build_tiny(folder: Any) -> None:
    """A tiny random-weight Whisper with a real feature extractor and a locally trained tokenizer, saved."""

    from tokenizers import AddedToken
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    vocab, merges = train_tiny_bpe(TINY_CORPUS, TINY_VOCAB, [EOT])
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges)
    specials = [t for t in PREFIX_TOKENS if t != EOT]
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True
    )
    sot_id = tokenizer.convert_tokens_to_ids(SOT)
    eot_id = tokenizer.convert_tokens_to_ids(EOT)
    feature_extractor = WhisperFeatureExtractor()  # 80 mel bins, 30 s window -> [B, 80, 3000]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=feature_extractor.feature_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,  # 3000 mel frames / conv stride 2: the 30 s window
        max_target_positions=448,
        decoder_start_token_id=sot_id,
        pad_token_id=eot_id,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
    )
    model = WhisperForConditionalGeneration(config).eval()
    processor = WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
