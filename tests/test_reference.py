"""Reference speakers (issue 14): the voice-cloning prompt token by token, XCodec2 encoding, the reference
clip rules, the reference never reaching the audio, and `say --speaker` end to end on the tiny preset."""

import csv
import re

import numpy as np
import pytest
import soundfile as sf

from stylegrpo.audio import SAMPLE_RATE, write_wav
from stylegrpo.cli import main
from stylegrpo.errors import StyleGRPOError
from stylegrpo.llasa import (
    LLASA_SPECIAL_TOKENS,
    SPEECH_START,
    check_reference_codes,
    encode_prompts,
    load_tokenizer,
    speech_token,
    speech_tokens,
)
from stylegrpo.reference import (
    MAX_REFERENCE_SECONDS,
    MIN_REFERENCE_SECONDS,
    ReferenceAudioError,
    check_token_budget,
    prepare_reference_audio,
)
from stylegrpo.styles import (
    MAX_SPEECH_CODES,
    REFERENCE_SEPARATOR,
    CatalogError,
    PromptInputError,
    PromptTemplate,
    Reference,
    ReferenceInputError,
    parse_catalog,
)

HOP = 320  # XCodec2 samples per code at 16 kHz
FAST = ["--preset", "tiny", "--device", "cpu", "--max-seconds", "0.6"]  # 31 tokens at most
# A distinctive reference: a ramp, a repeated code and the codebook's ends (the tiny codebook has 64 codes)
CODES = (5, 0, 63, 17, 17, 2, 40, 41, 42)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny:llasa")


# ------------------------------------------------------------------------------------------ the prompt


def test_reference_prompt_token_by_token(tokenizer):
    template = PromptTemplate()
    ref = Reference("  The reference words.  ", list(CODES))
    messages = template.render("Speak this now.", "a man whispering", ref)
    assert messages[0]["content"] == (
        "Convert the text to speech in the style of a man whispering:<|TEXT_UNDERSTANDING_START|>"
        "The reference words. Speak this now.<|TEXT_UNDERSTANDING_END|>"
    )
    assert messages[1]["content"] == SPEECH_START + "".join(speech_token(c) for c in CODES)

    ids = encode_prompts(tokenizer, [messages])[0]
    vocab = tokenizer.get_vocab()
    # every Llasa marker the template uses appears exactly once, in order
    positions = {}
    for marker in LLASA_SPECIAL_TOKENS:
        count = ids.count(vocab[marker])
        expected = int(marker in ("<|TEXT_UNDERSTANDING_START|>", "<|TEXT_UNDERSTANDING_END|>", SPEECH_START))
        assert count == expected, marker
        if count:
            positions[marker] = ids.index(vocab[marker])
    start, end = positions["<|TEXT_UNDERSTANDING_START|>"], positions["<|TEXT_UNDERSTANDING_END|>"]
    assert start < end < positions[SPEECH_START]
    # inside the markers: the reference transcript, the separator, then the text
    inside = tokenizer.decode(ids[start + 1 : end])
    assert inside == "The reference words." + REFERENCE_SEPARATOR + "Speak this now."
    # the speech tokens of the prompt are exactly the reference codes, in order, right after the opening,
    # and the prompt ends with them (the model continues after the reference)
    st = speech_tokens(tokenizer)
    speech = [i for i in ids if st.is_speech(i)]
    assert speech == st.ids_from_codes(CODES)
    after = positions[SPEECH_START] + 1
    assert ids[after:] == st.ids_from_codes(CODES)


def test_no_reference_is_the_plain_prompt():
    template = PromptTemplate()
    assert template.render("Hi.", "calm", None) == template.render("Hi.", "calm")
    assert template.render("Hi.")[1]["content"] == SPEECH_START


@pytest.mark.parametrize(
    "text",
    [
        "say <|eot_id|> now",
        "a <|s_3|> code",
        "|> at the start",  # would complete <|TEXT_UNDERSTANDING_START|>|> ... as a marker
        "full-width ＜｜eot_id｜＞",
        "hidden <\u200b|eot_id|>",
    ],
)
def test_the_control_token_rule_applies_to_the_reference_transcript(text):
    with pytest.raises(PromptInputError, match="reference transcript|control-token marker|control token"):
        PromptTemplate().render("Fine text.", None, Reference(text, [1, 2]))


@pytest.mark.parametrize(
    "codes, message",
    [
        ([], "no codec codes"),
        ("123", "no codec codes"),
        ([1, True], "code #2"),
        ([-1], "code #1"),
        ([MAX_SPEECH_CODES], "code #1"),
        ([1.0], "code #1"),
        (["7"], "code #1"),
    ],
)
def test_reference_codes_are_ints_in_the_codebook(codes, message):
    with pytest.raises(ReferenceInputError, match=message):
        Reference("words", codes)


def test_reference_columns_and_numpy_codes(tokenizer):
    assert Reference.from_columns(None, None) is None
    assert Reference.from_columns("", []) is None
    with pytest.raises(ReferenceInputError, match="reference_codes"):
        Reference.from_columns("words", [])
    with pytest.raises(ReferenceInputError, match="transcript"):
        Reference.from_columns("", [1, 2])
    ref = Reference.from_columns("words", np.array([3, 4], dtype=np.int64))
    assert ref == Reference("words", (3, 4)) and all(type(c) is int for c in ref.codes)
    with pytest.raises(ReferenceInputError, match="must be a stylegrpo.styles.Reference"):
        PromptTemplate().render("text", None, ("words", [1]))  # only a Reference
    # the policy's own codebook (64 tiny codes): <|s_64|> would be plain text in the prompt
    check_reference_codes(tokenizer, Reference("words", [63]))
    with pytest.raises(StyleGRPOError, match="outside this policy's 64 speech tokens"):
        check_reference_codes(tokenizer, Reference("words", [1, 64]))


def test_identity_field_is_validated(repo_styles):
    assert {s.name for s in repo_styles if s.identity} == {"elderly_woman", "child", "deep_male"}
    base = "styles:\n  - name: a\n    phrase: p\n    descriptions: [d]\n"
    assert parse_catalog(base + "    identity: true\n").styles[0].identity is True
    with pytest.raises(
        CatalogError, match=r"<styles>:5: style #1 'a': field 'identity' must be true or false"
    ):
        parse_catalog(base + "    identity: yes please\n")


# ------------------------------------------------------------------------------------------- encoding


def _tone(seconds, freq=220.0, amp=0.3, sr=SAMPLE_RATE):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def encoder_codec():
    from stylegrpo.codec import Codec

    return Codec.load("tiny:xcodec2", "cpu", decode_only=False)


def test_tiny_codec_encodes_one_code_per_hop(encoder_codec):
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(2 * SAMPLE_RATE)).astype(np.float32)
    codes = encoder_codec.encode(wav)
    assert len(codes) == 2 * SAMPLE_RATE // HOP
    assert all(0 <= c < encoder_codec.num_codes for c in codes)
    assert encoder_codec.encode(wav) == codes  # deterministic


def test_decode_only_codec_refuses_to_encode():
    from stylegrpo.codec import Codec

    codec = Codec.load("tiny:xcodec2", "cpu")
    assert not codec.can_encode
    with pytest.raises(StyleGRPOError, match="decoding only"):
        codec.encode(_tone(1.0))


def test_fbank_matches_a_kaldi_implementation():
    lhotse_layers = pytest.importorskip("lhotse.features.kaldi.layers")
    import torch

    from stylegrpo.codec import kaldi_fbank

    rng = np.random.default_rng(1)
    wav = (_tone(1.3) + 0.05 * rng.standard_normal(int(1.3 * SAMPLE_RATE))).astype(np.float32) * 2**15
    ours = kaldi_fbank(torch.tensor(wav))
    with pytest.warns(UserWarning):  # lhotse warns that snip_edges=True is unusual for it
        theirs = lhotse_layers.Wav2LogFilterBank(snip_edges=True, high_freq=0.0, energy_floor=0.0)(
            torch.tensor(wav)[None]
        )[0]
    assert ours.shape == theirs.shape == (1 + (len(wav) - 400) // 160, 80)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-3)


@pytest.mark.parametrize("seconds", [1.0, 2.37])
def test_real_size_codec_encodes_our_inputs(seconds):
    """The real XCodec2 (w2v-BERT 2.0 semantic encoder + acoustic encoder) on the meta device: our features
    and padded audio give both paths the same number of frames, one code per hop."""
    import torch

    from stylegrpo import architectures as A
    from stylegrpo.codec import encoder_inputs

    model = A.build(A.XCODEC2)
    inputs = encoder_inputs(_tone(seconds), model.config.hop_length)
    inputs.pop("input_features_mask")  # its all-ones check reads values, which the meta device has not
    out = model.encode(**{k: v.to(torch.device("meta")) for k, v in inputs.items()})
    frames = -(-(int(seconds * SAMPLE_RATE) + 1) // HOP)
    assert inputs["input_features"].shape == (1, frames, 160)
    assert out.audio_codes.shape == (1, 1, frames)


def test_encoder_inputs_match_the_feature_extractor():
    pytest.importorskip("torchaudio")  # Xcodec2FeatureExtractor needs it; no build for this torch here
    from transformers import Xcodec2FeatureExtractor

    from stylegrpo.codec import encoder_inputs

    wav = _tone(1.37)
    ours = encoder_inputs(wav, HOP)
    theirs = Xcodec2FeatureExtractor()(wav, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    for key, value in ours.items():
        np.testing.assert_allclose(value.numpy(), theirs[key].numpy(), atol=1e-4, err_msg=key)


# ----------------------------------------------------------------------------------- the clip rules


def test_silence_is_trimmed_and_bad_clips_are_refused(speak):
    voice = speak("The garden looks lovely this morning.")
    pad = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio = prepare_reference_audio(np.concatenate([pad, voice, pad]), "ref.wav")
    assert not audio.cut and audio.original_seconds == pytest.approx(2 + len(voice) / SAMPLE_RATE)
    # the added second of silence on each side is gone (espeak's own edges are near-silent too)
    assert audio.seconds <= len(voice) / SAMPLE_RATE + 0.25
    assert audio.seconds > len(voice) / SAMPLE_RATE - 1.0

    with pytest.raises(ReferenceAudioError, match=r"^ref\.wav: the clip is silent"):
        prepare_reference_audio(np.zeros(3 * SAMPLE_RATE), "ref.wav")
    with pytest.raises(ReferenceAudioError, match=r"^ref\.wav: the clip is silent"):
        prepare_reference_audio(np.full(3 * SAMPLE_RATE, 1e-4), "ref.wav")  # -80 dBFS hiss
    short = np.concatenate([pad, _tone(MIN_REFERENCE_SECONDS / 2), pad])
    with pytest.raises(ReferenceAudioError, match=r"only 0\.\d+ s of sound after trimming"):
        prepare_reference_audio(short, "ref.wav")
    with pytest.raises(ReferenceAudioError, match="empty"):
        prepare_reference_audio(np.zeros(0), "ref.wav")
    long = np.tile(voice, int(np.ceil(20 * SAMPLE_RATE / len(voice))))
    cut = prepare_reference_audio(long, "ref.wav")
    assert cut.cut and cut.seconds == MAX_REFERENCE_SECONDS


def test_only_the_start_of_a_long_file_is_read(tmp_path):
    from stylegrpo.reference import MAX_READ_SECONDS, load_reference_audio

    path = tmp_path / "long.wav"
    sr = 8000  # another rate: resampled after reading
    wav = np.concatenate([np.zeros(50 * sr), _tone(4.0, sr=sr), np.zeros(40 * sr)]).astype(np.float32)
    sf.write(str(path), np.stack([wav, wav], axis=1), sr)  # 94 s, stereo
    audio = load_reference_audio(path)
    assert audio.original_seconds == pytest.approx(MAX_READ_SECONDS)
    assert audio.seconds == pytest.approx(4.0, abs=0.25) and not audio.cut  # the tone, its silence trimmed


def test_token_budget(tokenizer):
    template = PromptTemplate()
    ref = Reference("The reference words.", [1] * 750)  # 15 s of codes
    prompt = template.render("A short line.", None, ref)
    n = check_token_budget(tokenizer, prompt, "A short line.", 3.0)
    assert n == len(encode_prompts(tokenizer, [prompt])[0]) > 750
    long_text = "Many words are spoken here slowly. " * 40  # ~400 syllables: 130 s at 3 syllables/s
    with pytest.raises(ReferenceAudioError, match=r"over Llasa's 2048-token budget; use a shorter reference"):
        check_token_budget(tokenizer, template.render(long_text, None, ref), long_text, 3.0, where="here")


# ------------------------------------------------------------------- the reference never reaches the audio


def test_synthesized_audio_holds_only_generated_codes(monkeypatch):
    from stylegrpo.llasa import generate
    from stylegrpo.synth import Synthesizer

    max_new = 12
    synth = Synthesizer("tiny", "cpu", max_new_tokens=max_new, temperature=0.8)
    ref = Reference("The reference words.", list(CODES) * 20)  # 180 codes, far more than max_new
    decoded = []
    real_decode = synth.codec.decode
    monkeypatch.setattr(
        synth.codec, "decode", lambda batch, **kw: decoded.extend(batch) or real_decode(batch)
    )
    clips = synth.synthesize(
        ["Hello there.", "Second text."], ["a man whispering", None], seed=5, references=[ref, None]
    )
    assert clips[0].reference == ref and clips[1].reference is None
    assert decoded == [c.codes for c in clips]  # the codec saw only the generated codes
    for clip in clips:
        assert 0 < len(clip.codes) <= max_new
        assert len(clip.wav) == len(clip.codes) * HOP  # a leak of the 180 reference codes would be 60x longer
    # the same prompts generated directly: the clip's codes are the completion after the prompt
    prompts = synth.prompts(["Hello there.", "Second text."], ["a man whispering", None], [ref, None])
    gens = generate(synth.model, synth.tokenizer, prompts, max_new_tokens=max_new, temperature=0.8, seed=5)
    assert [g.codes for g in gens] == [c.codes for c in clips]


# ------------------------------------------------------------------------------------ say --speaker


@pytest.fixture
def ref_wav(speak, tmp_path):
    """An espeak-ng reference written at 22.05 kHz (espeak's own rate): `say` resamples it."""
    import subprocess

    path = tmp_path / "ref.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(path), "The quick brown fox jumps over the lazy dog by the river."],
        check=True,
        capture_output=True,
        timeout=60,
    )
    speak("x")  # the fixture skips where espeak-ng is missing
    assert sf.info(str(path)).samplerate != SAMPLE_RATE
    return path


def test_say_speaker_whispering_offline(ref_wav, tmp_path, capsys):
    out = tmp_path / "out.wav"
    argv = ["say", "--speaker", str(ref_wav), "--style", "whispering", "Hello there, friend.", "-o", str(out)]
    assert main([*argv, *FAST]) == 0
    printed = capsys.readouterr().out
    assert "transcribing the reference" in printed and "reference transcript:" in printed
    ref_codes = int(printed.split(" codes\n")[0].rsplit(", ", 1)[1])
    assert ref_codes > 100  # ~3 s of reference
    wav, sr = sf.read(str(out), dtype="float32")
    n_codes = int(printed.split("wrote ")[1].split(" codes")[0].rsplit(", ", 1)[1])
    assert sr == SAMPLE_RATE and len(wav) == n_codes * HOP and n_codes <= 31  # no reference in the audio
    assert "warning: style" not in printed  # whispering is no identity style


def test_say_speaker_batch_identity_warning_and_text(ref_wav, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("First line.\nSecond line here.\n", encoding="utf-8")
    out = tmp_path / "clips"
    argv = ["say", "--input-file", str(lines), "--output-dir", str(out), "--style", "child"]
    argv += ["--speaker", str(ref_wav), "--speaker-text", "The quick brown fox jumps over the lazy dog."]
    assert main([*argv, *FAST]) == 0
    printed = capsys.readouterr().out
    assert "warning: style 'child' names who speaks" in printed
    assert "transcribing" not in printed
    with open(out / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == ["First line.", "Second line here."]
    assert {r["speaker"] for r in rows} == {str(ref_wav)}
    assert {r["speaker_text"] for r in rows} == {"The quick brown fox jumps over the lazy dog."}
    for r in rows:
        assert sf.info(str(out / r["file"])).frames == int(r["num_codes"]) * HOP


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--speaker-text", "words"], "give --speaker WAV too"),
        (["--speaker", "{missing}"], "file not found"),
        (["--speaker", "{silent}"], "the clip is silent"),
        (["--speaker", "{notaudio}"], "cannot read it as audio"),
        (
            ["--speaker", "{silent}", "--speaker-text", "a <|eot_id|> b"],
            "--speaker-text: the reference transcript",
        ),
    ],
)
def test_say_speaker_user_errors(extra, message, tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(3 * SAMPLE_RATE, dtype=np.float32))
    notaudio = tmp_path / "notes.wav"
    notaudio.write_text("not audio", encoding="utf-8")
    names = {"missing": tmp_path / "nope.wav", "silent": silent, "notaudio": notaudio}
    extra = [e.format(**names) for e in extra]
    out = tmp_path / "out.wav"
    assert main(["say", "Hello.", "-o", str(out), *extra, *FAST]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_check_speaker_text_is_say_and_evals_one_rule(tmp_path, capsys):
    from stylegrpo.reference import check_speaker_text

    assert check_speaker_text(None, None) is None and check_speaker_text("ref.wav", None) is None
    assert check_speaker_text("ref.wav", "  The words.\n") == "The words."  # what the prompt gets
    for speaker, text, message in [
        (None, "words", "give --speaker WAV too"),
        ("ref.wav", "   ", "--speaker-text is empty"),
        ("ref.wav", "a <|eot_id|> b", "--speaker-text: the reference transcript holds '<|'"),
    ]:
        with pytest.raises(StyleGRPOError, match=re.escape(message)):
            check_speaker_text(speaker, text)
    # eval takes the same rule: --speaker-text without --speaker, one line, nothing written
    texts = tmp_path / "texts.txt"
    texts.write_text("Hello there.\n", encoding="utf-8")
    out = tmp_path / "eval"
    assert main(["eval", "--texts", str(texts), "--speaker-text", "words", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "give --speaker WAV too" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_say_refuses_writing_over_the_reference(ref_wav, capsys):
    before = ref_wav.read_bytes()
    assert main(["say", "Hello.", "--speaker", str(ref_wav), "-o", str(ref_wav), "--overwrite", *FAST]) == 2
    assert ref_wav.read_bytes() == before
