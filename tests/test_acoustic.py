"""Acoustic measures on REAL speech (espeak-ng recordings) and the target score.

espeak-ng writes 22.05 kHz wavs; they are read with stylegrpo.audio.read_wav (resampled to 16 kHz),
the same path any clip takes. Each check compares recordings that differ in one setting only.
"""

import math
from dataclasses import fields

import numpy as np
import pytest

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers.acoustic import (
    SILENCE_DBFS,
    TARGET_WIDTHS,
    AcousticMeasures,
    count_syllables,
    field_scores,
    measure,
    measure_batch,
    target_score,
)
from stylegrpo.styles import TARGET_FIELDS

TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Please call Stella and ask her to bring these things with her from the store."
)
TEXT_SYLLABLES = 27  # counted by hand

VARIANTS = {
    "default": [],  # espeak-ng default: 175 words per minute, pitch 50, amplitude 100
    "slow": ["-s", "100"],
    "fast": ["-s", "250"],
    "low": ["-p", "20"],
    "high": ["-p", "80"],
    "quiet": ["-a", "30"],
    "loud": ["-a", "180"],
    "whisper": ["-v", "en+whisper"],
}


@pytest.fixture(scope="module")
def rec(speak):
    """{variant: AcousticMeasures} of espeak-ng recordings of TEXT, plus the raw waveforms."""
    wavs = {name: speak(TEXT, *args) for name, args in VARIANTS.items()}
    measures = dict(zip(wavs, measure_batch(list(wavs.values()), [TEXT] * len(wavs)), strict=True))
    return measures, wavs


def test_fields_cover_targets():
    names = {f.name for f in fields(AcousticMeasures)}
    assert set(TARGET_FIELDS) <= names
    assert {"duration_s", "speech_duration_s", "silence_fraction", "clipping_fraction"} <= names
    assert set(TARGET_WIDTHS) == set(TARGET_FIELDS)


def test_count_syllables():
    assert count_syllables(TEXT) == TEXT_SYLLABLES
    cases = {
        "store": 1, "please": 1, "little": 2, "jumped": 1, "wanted": 2, "makes": 1, "boxes": 2,
        "free": 1, "the": 1, "beautiful": 3, "rhythm": 1, "Élan": 2, "": 0, "...": 0, "a 42": 3,
    }  # fmt: skip
    for word, n in cases.items():
        assert count_syllables(word) == n, word


def test_speaking_rate(rec):
    m, _ = rec
    # espeak's default 175 words/min is ordinary conversational pace: about 4-5 syllables/s
    assert 3.8 <= m["default"].speaking_rate <= 5.2
    assert m["slow"].speaking_rate < m["default"].speaking_rate < m["fast"].speaking_rate
    # 100 vs 175 words/min: the measured ratio follows the setting
    assert m["default"].speaking_rate / m["slow"].speaking_rate == pytest.approx(175 / 100, rel=0.15)
    for v in m.values():
        assert v.syllables == TEXT_SYLLABLES
        assert 0 < v.speech_duration_s <= v.duration_s


def test_rate_ignores_leading_trailing_and_long_silences(rec):
    m, wavs = rec
    w = wavs["default"]
    silence = np.zeros(SAMPLE_RATE, np.float32)
    half = len(w) // 2
    # pad 1 s at both ends and insert 1 s in the middle (at a quiet spot near the half)
    frame = 160
    energy = np.convolve(w**2, np.ones(frame), "same")
    cut = half - 8000 + int(np.argmin(energy[half - 8000 : half + 8000]))
    padded = np.concatenate([silence, w[:cut], silence, w[cut:], silence])
    p = measure(padded, TEXT)
    assert p.speaking_rate == pytest.approx(m["default"].speaking_rate, rel=0.05)
    assert p.silence_fraction > m["default"].silence_fraction + 0.25
    assert p.duration_s == pytest.approx(m["default"].duration_s + 3.0, abs=0.01)


def test_pitch(rec):
    m, _ = rec
    assert m["low"].pitch_median_hz < m["default"].pitch_median_hz < m["high"].pitch_median_hz
    assert 70 <= m["default"].pitch_median_hz <= 160  # espeak's default English voice is male
    assert 12 * math.log2(m["high"].pitch_median_hz / m["low"].pitch_median_hz) > 6  # -p 20 vs 80: far apart
    for name in ("default", "low", "high", "slow", "fast"):
        assert 0.3 < m[name].pitch_spread_semitones < 6  # intonation, not octave jumps


def test_loudness(rec):
    m, _ = rec
    assert m["quiet"].loudness_dbfs < m["default"].loudness_dbfs < m["loud"].loudness_dbfs
    assert m["loud"].loudness_dbfs - m["quiet"].loudness_dbfs > 12  # amplitude 30 vs 180: ~15 dB
    assert -40 < m["default"].loudness_dbfs < -6
    # loudness is a level: the same clip scaled by 0.5 is 6 dB quieter, everything else equal
    _, wavs = rec
    half = measure(wavs["default"] * 0.5, TEXT)
    assert half.loudness_dbfs == pytest.approx(m["default"].loudness_dbfs - 6.02, abs=0.1)
    assert half.speaking_rate == pytest.approx(m["default"].speaking_rate, rel=0.02)


def test_voicing(rec):
    m, _ = rec
    assert m["whisper"].voiced_fraction < 0.25 < 0.5 < m["default"].voiced_fraction
    for v in m.values():
        assert 0.0 <= v.voiced_fraction <= 1.0 and 0.0 <= v.silence_fraction < 0.5
        assert v.clipping_fraction < 0.01
    # amplitude 180 drives espeak into full scale more often than amplitude 30 (which never gets there)
    assert (
        m["quiet"].clipping_fraction == 0.0 and m["loud"].clipping_fraction > m["default"].clipping_fraction
    )


def test_catalog_targets_on_real_speech(rec, repo_styles):
    m, _ = rec
    whispering = repo_styles.get("whispering").targets
    assert target_score(m["whisper"], whispering) > target_score(m["default"], whispering) + 0.3
    fast_style = repo_styles.get("news_anchor").targets
    assert target_score(m["fast"], fast_style) > target_score(m["slow"], fast_style)
    slow_style = repo_styles.get("calm_narrator").targets
    assert target_score(m["slow"], slow_style) > target_score(m["fast"], slow_style)


def test_silence_empty_and_clipping():
    for wav in (np.zeros(0, np.float32), np.zeros(SAMPLE_RATE, np.float32), np.full(100, 1e-7, np.float32)):
        m = measure(wav, "hello there")
        assert m.speech_duration_s == 0.0 and m.silence_fraction == 1.0
        assert math.isnan(m.speaking_rate) and math.isnan(m.pitch_median_hz) and math.isnan(m.voiced_fraction)
        assert m.loudness_dbfs == SILENCE_DBFS or m.loudness_dbfs < -100 + 1e-6 or m.loudness_dbfs <= -65
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clipped = np.clip(2.0 * np.sin(2 * np.pi * 200 * t), -1, 1).astype(np.float32)
    m = measure(clipped, "ah")
    assert m.clipping_fraction > 0.3
    assert m.pitch_median_hz == pytest.approx(200, rel=0.03)  # a steady 200 Hz tone
    assert m.pitch_spread_semitones < 0.2
    assert m.loudness_dbfs > -3.0  # near full scale
    assert measure(np.full(SAMPLE_RATE, np.nan, np.float32), "x").loudness_dbfs == SILENCE_DBFS


def test_target_score_inside_outside_nan():
    base = {"speaking_rate": 4.5, "pitch_median_hz": 120.0, "pitch_spread_semitones": 2.0,
            "loudness_dbfs": -20.0, "voiced_fraction": 0.7}  # fmt: skip
    assert target_score(base, None) == 1.0 and target_score(base, {}) == 1.0
    inside = {"speaking_rate": (4.0, 5.0), "pitch_median_hz": (100, 150), "loudness_dbfs": (-25, -15)}
    assert target_score(base, inside) == 1.0
    assert target_score(base, {"speaking_rate": (4.5, 4.5)}) == 1.0  # bounds are inclusive
    # outside: smooth decay with the distance, one width -> exp(-1)
    scores = [
        target_score({**base, "speaking_rate": r}, {"speaking_rate": (4.0, 5.0)})
        for r in (5.0, 5.5, 6.0, 8.0)
    ]
    assert scores[0] == 1.0 and scores[1] > scores[2] > scores[3] > 0
    assert scores[2] == pytest.approx(math.exp(-1.0 / TARGET_WIDTHS["speaking_rate"]))
    below = target_score({**base, "speaking_rate": 3.0}, {"speaking_rate": (4.0, 5.0)})
    assert below == pytest.approx(scores[2])
    # pitch is compared in semitones: an octave above and an octave below are equally far
    up = field_scores({"pitch_median_hz": 400.0}, {"pitch_median_hz": (100, 200)})["pitch_median_hz"]
    down = field_scores({"pitch_median_hz": 50.0}, {"pitch_median_hz": (100, 200)})["pitch_median_hz"]
    assert up == pytest.approx(down) and up == pytest.approx(math.exp(-12 / TARGET_WIDTHS["pitch_median_hz"]))
    # mean over fields: one failing field costs its share
    half = target_score(
        {**base, "voiced_fraction": 5.0}, {"voiced_fraction": (0, 0.25), "speaking_rate": (4, 5)}
    )
    assert 0.5 <= half < 0.51
    # NaN (no voiced frames): the field fails, the score stays a number in [0, 1]
    nan = {**base, "pitch_median_hz": float("nan"), "voiced_fraction": float("nan")}
    s = target_score(nan, {"pitch_median_hz": (100, 150), "speaking_rate": (4, 5)})
    assert s == pytest.approx(0.5) and not math.isnan(s)
    assert (
        target_score(AcousticMeasures(1, 0, *[float("nan")] * 5, 1, 0, 0), {"loudness_dbfs": (-30, -10)})
        == 0.0
    )
    with pytest.raises(KeyError):
        target_score(base, {"not_a_field": (0, 1)})


def test_measure_batch_workers_match_sequential(rec):
    _, wavs = rec
    clips = [wavs["default"], wavs["whisper"], wavs["fast"], np.zeros(0, np.float32)]
    texts = [TEXT, TEXT, TEXT, ""]
    sequential = measure_batch(clips, texts)
    parallel = measure_batch(clips, texts, workers=2)
    assert len(parallel) == len(sequential)
    for p, q in zip(parallel, sequential, strict=True):
        np.testing.assert_allclose(list(p.as_dict().values()), list(q.as_dict().values()), rtol=1e-9)
