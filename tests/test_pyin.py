"""stylegrpo.scorers.pyin against librosa.pyin, frame by frame, on REAL speech (espeak-ng recordings).

The rewrite claims the same algorithm with the same floating-point operations, so the comparison is
exact: the same f0 (bit for bit), the same voiced flags and the same voicing probabilities in every
frame, at the settings stylegrpo.scorers.acoustic uses (read from the module, not copied here).
"""

import math
import warnings

import numpy as np
import pytest

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers import acoustic
from stylegrpo.scorers.pyin import pyin

librosa = pytest.importorskip("librosa")

TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Please call Stella and ask her to bring these things with her from the store."
)
VOICES = {  # espeak-ng settings: pitch (-p 0..99), rate (-s words/min), voice variants, amplitude
    "default": [],
    "lowest": ["-p", "0"],  # espeak-ng's lowest pitch (~66 Hz): where the pitch grid matters most
    "low": ["-p", "20"],
    "high": ["-p", "99"],
    "slow": ["-s", "80"],
    "fast_low": ["-s", "400", "-p", "0"],
    "female": ["-v", "en+f3"],
    "male_low": ["-v", "en+m3", "-p", "0"],
    "whisper": ["-v", "en+whisper"],
    "croak": ["-v", "en+croak"],
    "quiet": ["-a", "20"],
}


def settings(resolution=acoustic.PITCH_RESOLUTION):
    """The keyword arguments acoustic._voiced_f0 passes to pyin (the same for librosa.pyin)."""
    hop = round(acoustic.HOP_S * SAMPLE_RATE)
    frame_length = int(2 ** math.ceil(math.log2(acoustic.PITCH_FRAME_S * SAMPLE_RATE)))
    return dict(fmin=acoustic.FMIN_HZ, fmax=acoustic.FMAX_HZ, sr=SAMPLE_RATE, frame_length=frame_length,
                hop_length=hop, resolution=resolution, center=True)  # fmt: skip


@pytest.fixture(scope="module")
def speech(speak):
    return {name: speak(TEXT, *args) for name, args in VOICES.items()}


def assert_same(ours, theirs, label):
    (f0, voiced, prob), (f0_ref, voiced_ref, prob_ref) = ours, theirs
    assert f0.shape == f0_ref.shape, label
    diff = np.flatnonzero(voiced != voiced_ref)
    assert diff.size == 0, f"{label}: voiced flags differ in frames {diff[:10]}"
    assert np.array_equal(f0, f0_ref, equal_nan=True), f"{label}: f0 differs"
    assert np.array_equal(prob, prob_ref), f"{label}: voicing probabilities differ"


def test_identical_to_librosa_at_acoustic_settings(speech):
    kw = settings()
    voiced_total = 0
    for name, wav in speech.items():
        ours, theirs = pyin(wav, **kw), librosa.pyin(wav, **kw)
        assert_same(ours, theirs, name)
        voiced_total += int(ours[1].sum())
    assert voiced_total > 1000  # the comparison covers many voiced frames, not only silence
    assert not pyin(speech["whisper"], **kw)[1].any()  # and unvoiced speech


def test_identical_to_librosa_at_fine_resolution(speech):
    kw = settings(resolution=0.1)
    for name in ("lowest", "female"):
        assert_same(pyin(speech[name], **kw), librosa.pyin(speech[name], **kw), name)


def test_identical_on_edge_signals():
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    signals = {
        "digital silence": np.zeros(SAMPLE_RATE, np.float32),
        "white noise": (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32),
        "220 Hz tone": (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
        "55 Hz tone (float64)": 0.5 * np.sin(2 * np.pi * 55 * t),
        "click train": (np.arange(SAMPLE_RATE) % 160 == 0).astype(np.float32),
        "just over a frame": rng.standard_normal(1100).astype(np.float32),
    }
    kw = settings()
    for name, wav in signals.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns about silence
            theirs = librosa.pyin(wav, **kw)
        assert_same(pyin(wav, **kw), theirs, name)
    assert pyin(signals["220 Hz tone"], **kw)[1].all()
    assert abs(np.nanmedian(pyin(signals["220 Hz tone"], **kw)[0]) - 220) < 220 * (2 ** (1 / 48) - 1)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="mono"):
        pyin(np.zeros((2, 4000)), **settings())
    with pytest.raises(ValueError, match="too low"):
        pyin(np.zeros(4000), **{**settings(), "fmin": 10.0})
    with pytest.raises(ValueError, match="fmax"):
        pyin(np.zeros(4000), **{**settings(), "fmax": 9000.0})
