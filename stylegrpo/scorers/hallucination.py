"""ASR "freak-outs": transcripts that come from the recogniser, not from the audio.

Speech recognisers hallucinate on silence and on noisy or garbled audio: they loop on a phrase, or write
fluent text where there is no speech. Such a transcript's CER says nothing about the policy, so the CER
reward excludes these clips (training) and eval counts them per style. Three checks, on the normalised
transcript (``asr.normalize_text``) against the text that was asked for:

- ``loop``: some 1-4 word n-gram repeats back to back at least ``LOOP_REPEATS`` times, more often than
  the text itself repeats it (so "no, no, no, no" in the text is not a loop);
- ``too_long``: the transcript has more than ``LONG_RATIO`` x the text's words (+ ``LONG_SLACK``);
- ``on_silence``: at least ``SILENCE_MIN_WORDS`` words while under ``SILENCE_ACTIVE_SHARE`` of the clip's
  20 ms frames are above ``SILENCE_DBFS`` (near-silence that the silence guard, at -60 dBFS, lets pass).
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE

LOOP = "loop"
TOO_LONG = "too_long"
ON_SILENCE = "on_silence"
HALLUCINATION_KINDS = (LOOP, TOO_LONG, ON_SILENCE)

LOOP_MAX_N = 4  # n-grams of up to 4 words (Whisper/CTC loops are usually 1-3 words)
LOOP_REPEATS = 4  # four times in a row: rare in any text, typical of a decoder stuck in a loop
LONG_RATIO = 2.0  # twice the words asked for: far beyond insertions of a noisy but honest transcript
LONG_SLACK = 3  # words of slack, so a 2-word text with a filler or two is not "too long"
SILENCE_DBFS = -50.0  # frames below this are near-silence (whispering is ~-40 dBFS, silence < -60)
SILENCE_ACTIVE_SHARE = 0.1  # under 10 % active frames: too little sound to carry several words
SILENCE_MIN_WORDS = 3  # a word or two on near-silence is a plausible guess, three or more is invented
FRAME_S = 0.02  # 20 ms analysis frames


def _max_run(words: list[str], n: int) -> int:
    """Longest run of back-to-back repeats of any n-gram."""
    best = 1 if len(words) >= n else 0
    for start in range(n):
        run, prev = 0, None
        for i in range(start, len(words) - n + 1, n):
            gram = tuple(words[i : i + n])
            run = run + 1 if gram == prev else 1
            prev = gram
            best = max(best, run)
    return best


def active_share(wav: np.ndarray, sr: int = SAMPLE_RATE, dbfs: float = SILENCE_DBFS) -> float:
    """Share of 20 ms frames whose RMS is above ``dbfs``."""
    wav = np.asarray(wav, dtype=np.float64)
    frame = max(1, int(FRAME_S * sr))
    n = len(wav) // frame
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(wav[: n * frame].reshape(n, frame) ** 2, axis=1))
    return float(np.mean(20 * np.log10(rms + 1e-12) > dbfs))


def detect(hypothesis: str, reference: str, wav: np.ndarray | None = None) -> str | None:
    """The kind of hallucination (``loop``, ``too_long``, ``on_silence``), or None for a plausible one."""
    from .asr import normalize_text

    hyp = normalize_text(hypothesis or "").split()
    ref = normalize_text(reference or "").split()
    for n in range(1, LOOP_MAX_N + 1):
        if _max_run(hyp, n) >= LOOP_REPEATS and _max_run(hyp, n) > _max_run(ref, n):
            return LOOP
    if len(hyp) > LONG_RATIO * len(ref) + LONG_SLACK:
        return TOO_LONG
    if wav is not None and len(hyp) >= SILENCE_MIN_WORDS and active_share(wav) < SILENCE_ACTIVE_SHARE:
        return ON_SILENCE
    return None
