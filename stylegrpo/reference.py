"""Reference speakers: a clip of a voice (and its transcript) that Llasa continues in.

Llasa clones a voice when the prompt carries a reference: its transcript before the text inside the
TEXT_UNDERSTANDING markers and its XCodec2 codes after ``<|SPEECH_GENERATION_START|>`` (see
``styles.Reference`` and ``PromptTemplate.render``). This module turns a wav file into such a reference:

1. read its first ``MAX_READ_SECONDS`` (any sample rate, any channel count) as 16 kHz mono;
2. trim leading and trailing silence (20 ms frames quieter than the clip's loud level minus
   ``acoustic.ACTIVITY_RANGE_DB``, or than ``acoustic.ACTIVITY_FLOOR_DBFS``; a ``TRIM_MARGIN_S`` margin kept);
3. refuse a clip that is silent (no frame above ``SILENT_DBFS``) or shorter than ``MIN_REFERENCE_SECONDS``
   of sound; keep at most ``MAX_REFERENCE_SECONDS`` (longer clips are cut, with a warning);
4. encode it with the codec's encoder (``Codec.encode``) and pair it with its transcript (given, or
   transcribed by the ASR judge).

:func:`check_token_budget` refuses a reference that, with the text, cannot fit Llasa's 2048-token budget
(prompt + the speech the text needs at the style's slowest rate: ``speech_time``'s rule).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import CODEC_TOKENS_PER_SECOND, SAMPLE_RATE, resample
from .errors import StyleGRPOError, clip
from .scorers.acoustic import ACTIVITY_FLOOR_DBFS, ACTIVITY_RANGE_DB, LOUD_PERCENTILE
from .scorers.hallucination import SILENCE_DBFS
from .styles import Reference, control_marker_problem

log = logging.getLogger(__name__)

# Public Llasa voice-cloning servers (built on the model card's prompt code) cut a reference at 15 s;
# 15 s are 750 codes, which leaves 1,298 of the 2,048-token budget for the prompt text and the new
# speech (about 25 s). Longer clips add no voice information, only prompt length.
MAX_REFERENCE_SECONDS = 15.0
# Under a second of sound is a word or two: too little of a voice to continue in (and the budget check
# would pass clips that carry no speaker at all).
MIN_REFERENCE_SECONDS = 1.0
# Only the start of a file is read (memory stays bounded for an hour-long recording): room for the 15 s
# used and for up to 45 s of leading silence or noise before them.
MAX_READ_SECONDS = 60.0
SILENT_DBFS = SILENCE_DBFS  # no 20 ms frame above this (-50 dBFS; whispering is ~-40): the clip is silent
TRIM_FRAME_S = 0.02  # silence is trimmed on a 20 ms grid (the acoustic judge's hop)
TRIM_MARGIN_S = 0.1  # kept before the first and after the last sounding frame: word onsets and tails


class ReferenceAudioError(StyleGRPOError, ValueError):
    """A reference clip that cannot be used (unreadable, silent, too short, too long with the text)."""


@dataclass(frozen=True)
class ReferenceAudio:
    """A reference clip ready to encode: 16 kHz mono float32, silence trimmed, at most MAX seconds."""

    wav: np.ndarray
    source: str  # where it came from (the file), for messages
    original_seconds: float  # length of the file's audio before trimming
    cut: bool  # True when the clip was longer than MAX_REFERENCE_SECONDS and was cut

    @property
    def seconds(self) -> float:
        return len(self.wav) / SAMPLE_RATE


def load_reference_audio(path: str | os.PathLike[str], option: str = "--speaker") -> ReferenceAudio:
    """Read, resample, trim and check a reference clip; every problem is one line naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ReferenceAudioError(f"{option} {p}: file not found (give a wav/flac/ogg file of the voice)")
    try:
        wav = _read_start(p, MAX_READ_SECONDS)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError for unreadable files
        raise ReferenceAudioError(
            f"{option} {p}: cannot read it as audio ({type(e).__name__}: {clip(str(e))}); give a wav, flac or "
            "ogg file"
        ) from None
    return prepare_reference_audio(wav, f"{option} {p}")


def check_speaker_text(speaker: Any, speaker_text: str | None) -> str | None:
    """``--speaker-text`` as a prompt takes it (stripped), None when not given; refused (one line) without
    ``--speaker``, empty, or holding a control-token marker. Shared by ``say`` and ``eval``."""
    if speaker_text is not None and not speaker:
        raise StyleGRPOError("--speaker-text is the transcript of a --speaker clip; give --speaker WAV too")
    if speaker_text is None:
        return None
    text = speaker_text.strip()
    if not text:
        raise StyleGRPOError("--speaker-text is empty: give the words spoken in the reference clip")
    problem = control_marker_problem(text)
    if problem:
        raise StyleGRPOError(f"--speaker-text: the reference transcript {problem}")
    return text


def _read_start(path: Path, seconds: float) -> np.ndarray:
    """The first ``seconds`` of an audio file as 16 kHz mono float32 (``audio.read_wav``'s conventions)."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        frames = min(f.frames, int(seconds * f.samplerate)) if f.frames > 0 else int(seconds * f.samplerate)
        wav = f.read(frames, dtype="float32", always_2d=True)
        if f.frames > frames:
            log.info("%s: read the first %g s of %.0f s", path, seconds, f.frames / f.samplerate)
        return resample(wav.mean(axis=1), f.samplerate, SAMPLE_RATE)


def prepare_reference_audio(wav: np.ndarray, source: str = "reference") -> ReferenceAudio:
    """Trim and check a 16 kHz mono waveform (see the module doc for the rule)."""
    wav = np.nan_to_num(np.asarray(wav, dtype=np.float32).reshape(-1))
    original = len(wav) / SAMPLE_RATE
    hop = int(TRIM_FRAME_S * SAMPLE_RATE)
    n = len(wav) // hop
    if n == 0:
        raise ReferenceAudioError(
            f"{source}: the clip is empty ({original:.2f} s); give at least {MIN_REFERENCE_SECONDS:g} s of speech"
        )
    rms = np.sqrt(np.mean(wav[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))
    level = 20.0 * np.log10(np.maximum(rms, 1e-10))
    if level.max() <= SILENT_DBFS:
        raise ReferenceAudioError(
            f"{source}: the clip is silent (no 20 ms frame above {SILENT_DBFS:g} dBFS); give a recording of "
            "the voice"
        )
    loud = float(np.percentile(level, LOUD_PERCENTILE))
    active = np.flatnonzero(level > max(loud - ACTIVITY_RANGE_DB, ACTIVITY_FLOOR_DBFS))
    margin = int(round(TRIM_MARGIN_S / TRIM_FRAME_S))
    first, last = max(0, active[0] - margin), min(n, active[-1] + 1 + margin)
    sounding = (active[-1] + 1 - active[0]) * TRIM_FRAME_S
    if sounding < MIN_REFERENCE_SECONDS:
        raise ReferenceAudioError(
            f"{source}: only {sounding:.2f} s of sound after trimming silence; a reference needs at least "
            f"{MIN_REFERENCE_SECONDS:g} s of speech"
        )
    end = len(wav) if last == n else last * hop  # keep the file's own tail samples when nothing was trimmed
    wav = wav[first * hop : end]
    cut = len(wav) > MAX_REFERENCE_SECONDS * SAMPLE_RATE
    if cut:
        log.warning(
            "%s: %.1f s of sound; only the first %g s are used as the reference voice",
            source,
            len(wav) / SAMPLE_RATE,
            MAX_REFERENCE_SECONDS,
        )
        wav = wav[: int(MAX_REFERENCE_SECONDS * SAMPLE_RATE)]
    return ReferenceAudio(np.ascontiguousarray(wav), source, original, cut)


def encode_reference(codec: Any, audio: ReferenceAudio, text: str) -> Reference:
    """The prompt reference of a prepared clip: its codec codes (``codec.encode``) and transcript."""
    codes = codec.encode(audio.wav)
    if not codes:
        raise ReferenceAudioError(f"{audio.source}: the codec gave no codes for the clip")
    try:
        return Reference(text, codes)
    except StyleGRPOError as e:
        raise ReferenceAudioError(f"{audio.source}: {e}") from None


def transcribe_reference(asr: Any, audio: ReferenceAudio) -> str:
    """The ASR judge's transcript of the clip; refused when it hears nothing (pass the text instead)."""
    text = asr.transcribe([audio.wav])[0].strip()
    if not text:
        raise ReferenceAudioError(
            f"{audio.source}: the speech recogniser heard no words in the reference; pass its transcript "
            'with --speaker-text "..."'
        )
    log.info("%s: transcribed as %r", audio.source, text)
    return text


def check_token_budget(
    tokenizer: Any,
    prompt: list[dict[str, str]],
    text: str,
    syllables_per_second: float,
    *,
    max_length: int | None = None,
    where: str = "",
) -> int:
    """Refuse a prompt (with a reference) whose tokens plus the speech ``text`` needs at
    ``syllables_per_second`` exceed Llasa's budget (``llasa.LLASA_MAX_LENGTH``: prompt + completion).
    Returns the prompt's token count."""
    from .llasa import LLASA_MAX_LENGTH, encode_prompts
    from .speech_time import needed_tokens

    max_length = LLASA_MAX_LENGTH if max_length is None else max_length
    prompt_tokens = len(encode_prompts(tokenizer, [prompt])[0])
    need = needed_tokens(text, syllables_per_second)
    if prompt_tokens + need > max_length:
        prefix = f"{where}: " if where else ""
        room = max(0, max_length - need)
        raise ReferenceAudioError(
            f"{prefix}the prompt with the reference is {prompt_tokens} tokens and the text needs about {need} "
            f"speech tokens (at {syllables_per_second:g} syllables/s), over Llasa's {max_length}-token budget; "
            f"use a shorter reference clip (the prompt may take at most {room} tokens, the reference "
            f"{CODEC_TOKENS_PER_SECOND} per second) or a shorter text"
        )
    return prompt_tokens
