"""Model-free acoustic measures (numpy + librosa) and the acoustic target score.

``measure(wav, text)`` describes a 16 kHz clip with the quantities that ``styles.yaml`` targets
(``stylegrpo.styles.TARGET_FIELDS``) plus some bookkeeping ones:

- speech activity: a frame (20 ms hop) is *active* when its RMS level is within ``ACTIVITY_RANGE_DB`` of
  the clip's loud level (95th percentile of frame levels) and above ``ACTIVITY_FLOOR_DBFS``. *Speech*
  runs from the first to the last active frame, minus internal silences longer than ``MAX_PAUSE_S``
  (short gaps such as stop closures stay in); leading and trailing silence never count.
- ``speaking_rate``: syllables of the text (vowel-group heuristic, ``count_syllables``) per second of
  speech, i.e. an articulation rate that pauses cannot game.
- pitch: pYIN (probabilistic YIN with HMM smoothing; ``stylegrpo.scorers.pyin``, frame-identical to
  ``librosa.pyin`` and about 4x faster) between 50 and 600 Hz (deep male voices to children);
  ``pitch_median_hz`` over voiced active frames and ``pitch_spread_semitones``, the standard
  deviation of F0 in semitones around that median.
- ``loudness_dbfs``: RMS level of the active frames in dB relative to full scale (a full-scale square
  wave is 0 dBFS, a full-scale sine -3 dBFS).
- ``voiced_fraction``: voiced active frames / active frames (whispering is nearly 0).
- ``silence_fraction`` = 1 - speech duration / duration; ``clipping_fraction``: samples at full scale.

Undefined values are NaN (no speech: no rate, no pitch, no voicing; fewer than ``MIN_VOICED_FRAMES``
voiced frames: no pitch). ``target_score`` treats a NaN measure of a declared target as failing it.

Speed (measured on one CPU core, 6.8 s espeak clip): pyin at 0.1-semitone resolution and 10 ms hop took
6.6 s warm-up + 0.41 s per clip at 20 ms hop; at 0.25-semitone resolution 0.10 s (median F0 within 0.3 %,
spread within 0.2 semitones of the fine setting). ``librosa.yin`` + a harmonicity voicing threshold took
0.03 s but its octave jumps (no HMM) tripled the spread (5.4 vs 1.4 semitones), which would make the
spread target meaningless, so we keep pyin with the coarser grid and 20 ms hop. (Those figures are
librosa's; the vectorized rewrite gives the same frames at a fraction of the cost: see
``bench/bench_scorers.py``.)
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..audio import SAMPLE_RATE
from ..styles import TARGET_FIELDS

log = logging.getLogger(__name__)

# -- analysis settings (each tuned on espeak-ng recordings; see tests/test_acoustic.py) --------------
HOP_S = 0.02  # 20 ms analysis hop: plenty for prosody, half the pyin cost of 10 ms
PITCH_FRAME_S = 0.064  # 64 ms pyin window: > 3 periods of FMIN, pyin's usual size
FMIN_HZ = 50.0  # lowest F0 searched: below deep adult male voices (~65 Hz)
FMAX_HZ = 600.0  # highest F0 searched: above children's speaking pitch (~250-450 Hz)
PITCH_RESOLUTION = 0.25  # pyin pitch grid in semitones: 4x faster than 0.1 at the same medians (see above)
ACTIVITY_RANGE_DB = 35.0  # active frames are at most this far below the clip's loud level
ACTIVITY_FLOOR_DBFS = -65.0  # frames quieter than this are silence whatever the clip's level
LOUD_PERCENTILE = 95.0  # the clip's "loud level": robust to a single click
MAX_PAUSE_S = 0.25  # internal silences longer than this are pauses, not speech (the usual 250 ms convention)
MIN_VOICED_FRAMES = 3  # fewer voiced frames than this give no pitch (NaN)
CLIP_LEVEL = 0.999  # a sample at or above this magnitude counts as clipped
SILENCE_DBFS = -100.0  # loudness reported for a clip with no signal at all (TARGET_FIELDS' lowest value)

# How fast target_score decays outside a range: the score of a field is exp(-distance / width), so a
# measure one width outside its range scores 0.37, two widths 0.14. Distances are in the field's unit,
# except pitch_median_hz, which is compared on a log scale (semitones), as pitch is perceived.
TARGET_WIDTHS: dict[str, float] = {
    "speaking_rate": 1.0,  # syllables/s: 1 syl/s is a clearly audible change of pace
    "pitch_median_hz": 2.0,  # semitones (log distance): a whole tone off
    "pitch_spread_semitones": 1.0,  # semitones: from monotone (<2) to lively (>4) is a few
    "loudness_dbfs": 6.0,  # dB: twice / half the amplitude
    "voiced_fraction": 0.15,  # fraction: whisper (<0.25) vs normal speech (~0.6-0.8)
}
LOG_SCALE_FIELDS = frozenset({"pitch_median_hz"})  # fields whose distance is measured in semitones
NAN_FIELD_SCORE = 0.0  # a declared target whose measure is undefined (e.g. no voiced frames) fails


@dataclass(frozen=True)
class AcousticMeasures:
    duration_s: float  # the whole clip
    speech_duration_s: float  # first to last active frame, minus pauses longer than MAX_PAUSE_S
    speaking_rate: float  # syllables of the text per second of speech (NaN: no speech)
    pitch_median_hz: float  # median F0 of voiced active frames (NaN: too few voiced frames)
    pitch_spread_semitones: float  # std of F0 in semitones around the median (NaN as above)
    loudness_dbfs: float  # RMS level of active frames, dBFS (SILENCE_DBFS for digital silence)
    voiced_fraction: float  # voiced active frames / active frames (NaN: no speech)
    silence_fraction: float  # 1 - speech_duration_s / duration_s (1 for an empty or silent clip)
    clipping_fraction: float  # share of samples at full scale
    syllables: int  # syllables counted in the text

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


assert set(TARGET_FIELDS) <= {f.name for f in fields(AcousticMeasures)}, "a target field is not measured"
assert set(TARGET_WIDTHS) == set(TARGET_FIELDS), "every target field needs a width in TARGET_WIDTHS"

# -- syllables -------------------------------------------------------------------------------------
_WORD_RE = re.compile(r"[a-z]+|\d+")
_VOWEL_GROUP_RE = re.compile(r"[aeiouy]+")


def count_syllables(text: str) -> int:
    """Syllables in English text by a vowel-group heuristic (about +-10 % on ordinary prose).

    Each run of vowels (a e i o u y) is a syllable, minus a silent final "e" ("store"), "-ed" after a
    consonant other than t/d ("jumped") and "-es" after a letter that does not make it a syllable
    ("makes" but not "boxes"); every word has at least one. Accents are stripped first; each digit of a
    number counts one syllable (a rough stand-in: numbers should be spelled out in training texts).
    """
    if not text:
        return 0
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    total = 0
    for word in _WORD_RE.findall(text):
        if word.isdigit():
            total += len(word)
            continue
        n = len(_VOWEL_GROUP_RE.findall(word))
        if n > 1 and _has_silent_ending(word):
            n -= 1
        total += max(1, n)
    return total


_SILENT_E_EXCEPTIONS = ("le", "ee", "ye")  # "little", "free", "goodbye": the final e is voiced
_SYLLABIC_ES = ("ses", "xes", "zes", "ches", "shes", "ges", "ces")  # "boxes": -es is a syllable here


def _has_silent_ending(word: str) -> bool:
    """A final vowel group that is not pronounced: "store", "jumped", "makes"."""
    if word.endswith("e"):
        return not word.endswith(_SILENT_E_EXCEPTIONS)
    if word.endswith("ed") and len(word) > 3:
        return word[-3] not in "aeiouytd"  # "wanted", "faded" keep theirs
    if word.endswith("es") and len(word) > 3:
        return not word.endswith(_SYLLABIC_ES) and word[-3] not in "aeiouy"
    return False


# -- measures --------------------------------------------------------------------------------------
def measure(wav: np.ndarray, text: str = "", sample_rate: int = SAMPLE_RATE) -> AcousticMeasures:
    """Acoustic measures of one mono clip (float in [-1, 1]) speaking ``text``."""
    import librosa

    wav = np.nan_to_num(np.asarray(wav, dtype=np.float32).reshape(-1))
    duration = wav.size / sample_rate
    syllables = count_syllables(text)
    clipping = float(np.mean(np.abs(wav) >= CLIP_LEVEL)) if wav.size else 0.0
    hop = max(1, round(HOP_S * sample_rate))
    nan = float("nan")
    if wav.size == 0 or not np.any(wav):
        return AcousticMeasures(duration, 0.0, nan, nan, nan, SILENCE_DBFS, nan, 1.0, clipping, syllables)

    # frame levels on the same centred 20 ms grid as pyin
    rms = librosa.feature.rms(y=wav, frame_length=2 * hop, hop_length=hop, center=True)[0]
    level_db = 20.0 * np.log10(np.maximum(rms, 1e-10))
    loud = float(np.percentile(level_db, LOUD_PERCENTILE))
    active = level_db > max(loud - ACTIVITY_RANGE_DB, ACTIVITY_FLOOR_DBFS)
    if not active.any():
        return AcousticMeasures(duration, 0.0, nan, nan, nan, SILENCE_DBFS, nan, 1.0, clipping, syllables)
    speech = _fill_short_gaps(active, max_gap=int(round(MAX_PAUSE_S / HOP_S)))
    speech_duration = float(speech.sum()) * hop / sample_rate
    loudness = float(10.0 * np.log10(max(np.mean(rms[active] ** 2), 1e-20)))

    voiced = _voiced_f0(wav, sample_rate, hop, len(active))
    voiced_active = active & np.isfinite(voiced)
    f0 = voiced[voiced_active]
    if f0.size >= MIN_VOICED_FRAMES:
        median = float(np.median(f0))
        spread = float(np.std(12.0 * np.log2(f0 / median)))
    else:
        median = spread = nan
    return AcousticMeasures(
        duration_s=duration,
        speech_duration_s=speech_duration,
        speaking_rate=syllables / speech_duration if speech_duration > 0 else nan,
        pitch_median_hz=median,
        pitch_spread_semitones=spread,
        loudness_dbfs=max(loudness, SILENCE_DBFS),
        voiced_fraction=float(voiced_active.sum() / active.sum()),
        silence_fraction=float(min(1.0, max(0.0, 1.0 - speech_duration / duration))),
        clipping_fraction=clipping,
        syllables=syllables,
    )


def measure_batch(
    wavs: Sequence[np.ndarray],
    texts: Sequence[str] | None = None,
    sample_rate: int = SAMPLE_RATE,
    workers: int = 1,
) -> list[AcousticMeasures]:
    """``measure`` for each clip (``texts`` None: no text, so no speaking rate).

    ``workers`` > 1 spreads the clips over that many processes (pyin is CPU-bound and holds the GIL,
    so threads would not help); the pool is started once ("forkserver": safe beside CUDA and torch
    threads) and reused by later calls. Results are identical to ``workers=1``.
    """
    texts = list(texts) if texts is not None else [""] * len(wavs)
    if len(texts) != len(wavs):
        from ._base import ScorerError

        raise ScorerError(f"got {len(wavs)} clips but {len(texts)} texts; give one per clip")
    if workers <= 1 or len(wavs) < 2:
        return [measure(w, t, sample_rate) for w, t in zip(wavs, texts, strict=True)]
    pool = _pool(workers)
    chunk = max(1, math.ceil(len(wavs) / (4 * workers)))  # a few chunks per worker: balance vs overhead
    rates = [sample_rate] * len(wavs)
    return list(
        pool.map(measure, [np.asarray(w, dtype=np.float32) for w in wavs], texts, rates, chunksize=chunk)
    )


_POOLS: dict[int, object] = {}


def _pool(workers: int):
    """A persistent process pool per worker count (process start-up and imports are paid once)."""
    pool = _POOLS.get(workers)
    if pool is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))
        _POOLS[workers] = pool
    return pool


def _voiced_f0(wav: np.ndarray, sample_rate: int, hop: int, n_frames: int) -> np.ndarray:
    """F0 per frame (NaN where unvoiced), on the centred hop grid, length n_frames."""
    from .pyin import pyin

    frame_length = int(2 ** math.ceil(math.log2(PITCH_FRAME_S * sample_rate)))
    if wav.size < frame_length // 2 + 1:  # too short to look for a period
        return np.full(n_frames, np.nan)
    f0, voiced_flag, _ = pyin(  # librosa.pyin's algorithm and frames, vectorized (scorers/pyin.py)
        wav,
        fmin=FMIN_HZ,
        fmax=FMAX_HZ,
        sr=sample_rate,
        frame_length=frame_length,
        hop_length=hop,
        resolution=PITCH_RESOLUTION,
        center=True,
    )
    f0 = np.where(voiced_flag & np.isfinite(f0), f0, np.nan)
    out = np.full(n_frames, np.nan)
    n = min(n_frames, f0.size)
    out[:n] = f0[:n]
    return out


def _fill_short_gaps(active: np.ndarray, max_gap: int) -> np.ndarray:
    """Active frames plus inactive runs of at most ``max_gap`` frames between two active ones."""
    speech = active.copy()
    idx = np.flatnonzero(active)
    gaps = np.diff(idx) - 1
    for start, gap in zip(idx[:-1], gaps, strict=True):
        if 0 < gap <= max_gap:
            speech[start + 1 : start + 1 + gap] = True
    return speech


# -- targets ---------------------------------------------------------------------------------------
def field_scores(
    measures: AcousticMeasures | Mapping[str, float], targets: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Per declared target: 1 inside [lo, hi], exp(-distance / TARGET_WIDTHS[field]) outside, and
    NAN_FIELD_SCORE when the measure is undefined."""
    values = measures.as_dict() if isinstance(measures, AcousticMeasures) else dict(measures)
    out: dict[str, float] = {}
    for name, (lo, hi) in targets.items():
        if name not in TARGET_WIDTHS:
            raise KeyError(f"unknown acoustic target {name!r}; known: {', '.join(TARGET_WIDTHS)}")
        x = values.get(name, float("nan"))
        x = float("nan") if x is None else float(x)
        if not math.isfinite(x):
            out[name] = NAN_FIELD_SCORE
            continue
        if name in LOG_SCALE_FIELDS:
            x, lo, hi = (12.0 * math.log2(max(v, 1e-6)) for v in (x, lo, hi))
        distance = max(lo - x, 0.0, x - hi)
        out[name] = math.exp(-distance / TARGET_WIDTHS[name])
    return out


def target_score(
    measures: AcousticMeasures | Mapping[str, float], targets: Mapping[str, tuple[float, float]] | None
) -> float:
    """How well a clip meets a style's acoustic targets, in [0, 1].

    1.0 when every declared measure is inside its range (and when no targets are declared); otherwise
    the MEAN of the per-field scores (``field_scores``), so each target counts equally and getting one
    closer always raises the score (a product would let one failing field hide progress on the rest).
    """
    if not targets:
        return 1.0
    scores = field_scores(measures, targets)
    return float(sum(scores.values()) / len(scores))
