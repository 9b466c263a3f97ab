"""ASR judge: the one normalizer, capped error rates, the tiny Parakeet (transformers) and NeMo twins."""

import numpy as np
import pytest

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers import AsrScorer, ErrorRates, ScorerError, cer, normalize_text, wer


def test_normalize_text():
    assert normalize_text("Hello, World!") == "hello world"
    assert normalize_text("  Don't   STOP\tnow…  ") == "dont stop now"
    assert normalize_text("Don\u2019t") == "dont"  # typographic apostrophe, same as ASCII
    assert normalize_text("well-known; “quoted”") == "well known quoted"
    assert normalize_text("ＡＢＣ ﬁne") == "abc fine"  # NFKC: full-width letters, ligatures
    assert (
        normalize_text("It costs 42 dollars, 3.5%") == "it costs 42 dollars 3 5"
    )  # numbers kept; "." and "%" are punctuation
    assert normalize_text("") == "" and normalize_text(None) == ""
    assert normalize_text("?!...") == ""


def test_error_rate_edge_cases():
    assert cer("Hello, world!", "hello world") == 0.0  # punctuation and case ignored
    assert wer("HELLO world", "hello, world.") == 0.0
    assert cer("", "hello world") == 1.0 and wer("", "hello world") == 1.0  # empty hypothesis
    assert cer("", "") == 0.0 and wer("", "") == 0.0  # nothing to say, nothing said
    assert cer("something", "") == 1.0 and wer("something", "...") == 1.0  # empty reference
    long = "the the the the the the the the the the the the the"
    assert cer(long, "the cat") == 1.0 and wer(long, "the cat") == 1.0  # hallucination capped at 1
    assert 0.0 < cer("helo world", "hello world") < 0.2
    assert wer("hello word", "hello world") == pytest.approx(0.5)


@pytest.fixture(scope="module")
def asr():
    return AsrScorer("tiny:parakeet", device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32) for s in (1.0, 2.5, 0.7)]


def test_tiny_parakeet_transcribe(asr, clips):
    assert not AsrScorer("tiny:parakeet").loaded
    hyps = asr.transcribe(clips)
    assert len(hyps) == 3 and all(isinstance(h, str) for h in hyps)
    assert asr.transcribe(clips) == hyps  # deterministic
    assert [asr.transcribe([c])[0] for c in clips] == hyps  # batching does not change a transcript
    assert asr.backend == "transformers"
    assert asr.transcribe([np.zeros(0, np.float32)]) == [asr.transcribe([np.zeros(0, np.float32)])[0]]


def test_tiny_parakeet_error_rates(asr, clips):
    refs = ["the quick brown fox", "she sells sea shells", ""]
    rates = asr.error_rates(clips, refs)
    assert len(rates) == 3 and all(isinstance(r, ErrorRates) for r in rates)
    for r, ref in zip(rates, refs, strict=True):
        assert 0.0 <= r.cer <= 1.0 and 0.0 <= r.wer <= 1.0
        assert r.cer == cer(r.hypothesis, ref)
    with pytest.raises(ScorerError):
        asr.error_rates(clips, refs[:1])


def test_tiny_parakeet_round_trip():
    """The tiny folder loads with the plain transformers classes (what users' checkpoints go through)."""
    from transformers import AutoProcessor, ParakeetForCTC

    from stylegrpo.tiny import resolve_model

    folder = resolve_model("tiny:parakeet")
    processor = AutoProcessor.from_pretrained(folder)
    model = ParakeetForCTC.from_pretrained(folder)
    assert model.config.pad_token_id == processor.tokenizer.pad_token_id
    assert len(processor.tokenizer) == model.config.vocab_size
    assert processor.tokenizer.decode(processor.tokenizer("the quick fox")["input_ids"]) == "the quick fox"


def test_nemo_backend_tiny():
    pytest.importorskip(
        "nemo.collections.asr", reason="NeMo backend is optional: pip install 'stylegrpo[nemo]'"
    )
    from pathlib import Path

    from stylegrpo.tiny import resolve_model

    folder = Path(resolve_model("tiny:parakeet-nemo"))
    nemo_files = list(folder.glob("*.nemo"))
    assert len(nemo_files) == 1
    rng = np.random.default_rng(1)
    clips = [(0.1 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32) for s in (1.0, 2.0)]
    for spec in ("nemo:tiny:parakeet-nemo", f"nemo:{nemo_files[0]}"):
        scorer = AsrScorer(spec, batch_size=2)
        hyps = scorer.transcribe(clips)
        assert scorer.backend == "nemo" and len(hyps) == 2 and all(isinstance(h, str) for h in hyps)
        rates = scorer.error_rates(clips, ["hello", ""])
        assert all(0.0 <= r.cer <= 1.0 for r in rates)


def test_nemo_missing_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nemo(name, *args, **kwargs):
        if name.startswith("nemo"):
            raise ImportError("no nemo here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nemo)
    scorer = AsrScorer("nemo:nvidia/parakeet-tdt-0.6b-v2")
    with pytest.raises(ScorerError, match="stylegrpo\\[nemo\\]"):
        scorer.transcribe([np.zeros(SAMPLE_RATE, np.float32)])


def test_features_are_computed_on_the_judges_device():
    """The feature extractor's own __call__ runs on the judge's device: on 'meta' (a device every machine
    has) every output tensor is there, with the CPU's shapes and dtypes; without features_on_device
    transformers' extractor fails there (its padded waveforms stay on the CPU). The CPU path is unchanged."""
    from transformers import AutoProcessor

    from stylegrpo.scorers.asr import features_on_device
    from stylegrpo.tiny import resolve_model

    path = resolve_model("tiny:parakeet")
    rng = np.random.default_rng(0)
    wavs = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (SAMPLE_RATE, SAMPLE_RATE // 2)]

    def features(processor, **kwargs):
        return processor(audio=wavs, sampling_rate=SAMPLE_RATE, return_tensors="pt", **kwargs)

    cpu = AutoProcessor.from_pretrained(path)
    pad = cpu.feature_extractor.pad
    assert features_on_device(cpu.feature_extractor, "cpu") == {}
    assert cpu.feature_extractor.pad == pad  # nothing changed on the CPU
    reference = features(cpu)

    meta = AutoProcessor.from_pretrained(path)
    with pytest.raises(RuntimeError, match="same device"):
        features(meta, device="meta")  # transformers alone: STFT input on the CPU, window on the device
    kwargs = features_on_device(meta.feature_extractor, "meta")
    assert kwargs == {"device": "meta"}
    out = features(meta, **kwargs)
    assert set(out) == set(reference) == {"input_features", "attention_mask"}
    for key, value in out.items():
        assert value.device.type == "meta"
        assert (value.shape, value.dtype) == (reference[key].shape, reference[key].dtype)

    class NoDevice:  # an extractor whose __call__ has no device argument stays on the CPU
        def __call__(self, raw_speech, sampling_rate=None):
            return raw_speech

    assert features_on_device(NoDevice(), "meta") == {}
