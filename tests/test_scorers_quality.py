"""The DNSMOS quality judge, with its REAL model, on REAL speech (espeak-ng) degraded in known ways.

White noise is added at known SNRs (signal power over the whole clip) and reverberation is a convolution
with a synthetic room impulse response of known RT60 (Gaussian noise under an exponential decay that
falls 60 dB in RT60 seconds, energy-normalised, seeded). Scores measured here (OVRL / BAK / SIG, 6.8 s
of espeak-ng speech): clean 2.90 / 3.90 / 3.18; SNR 20 dB 2.23 / 2.36 / 3.39, 10 dB 2.01 / 1.86 / 3.39,
0 dB 1.44 / 1.27 / 3.08; RT60 0.3 s 2.92 / 3.69 / 3.38, 0.6 s 2.04 / 2.24 / 3.13, 1.2 s 1.18 / 1.18 /
1.51; white noise alone 1.10 / 1.09 / 1.19; espeak's whisper voice 1.24 / 2.74 / 1.02.
OVRL at RT60 0.3 s is within 0.1 of clean (above it with this seed, below with others): only the
stronger reverbs are asserted below clean on OVRL; BAK orders all of them.
"""

import numpy as np
import pytest

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers import ScorerError
from stylegrpo.scorers.quality import QualityScorer, clean_score, repeat_to_window, window_starts

TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Please call Stella and ask her to bring these things with her from the store."
)
SNRS_DB = (20, 10, 0)
RT60S = (0.3, 0.6, 1.2)


def add_noise(wav: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise at ``snr_db`` below the clip's mean power."""
    noise = np.random.default_rng(seed).standard_normal(len(wav))
    scale = np.sqrt(np.mean(np.square(wav, dtype=np.float64)) / 10 ** (snr_db / 10))
    return (wav + scale * noise).astype(np.float32)


def add_reverb(wav: np.ndarray, rt60_s: float, seed: int = 0) -> np.ndarray:
    """``wav`` convolved with an exponential-decay noise RIR of length and RT60 ``rt60_s`` (peak kept)."""
    from scipy.signal import fftconvolve

    t = np.arange(int(rt60_s * SAMPLE_RATE)) / SAMPLE_RATE
    rir = np.random.default_rng(seed).standard_normal(len(t)) * np.exp(-3 * np.log(10) * t / rt60_s)
    rir /= np.sqrt(np.sum(rir**2))
    out = fftconvolve(wav, rir)[: len(wav)]
    return (out / np.max(np.abs(out)) * np.max(np.abs(wav))).astype(np.float32)


@pytest.fixture(scope="module")
def clips(speak):
    clean = speak(TEXT)
    out = {"clean": clean, "whisper": speak(TEXT, "-v", "en+whisper")}
    out.update({f"snr{s}": add_noise(clean, s) for s in SNRS_DB})
    out.update({f"rt{r}": add_reverb(clean, r) for r in RT60S})
    out["noise"] = (0.1 * np.random.default_rng(1).standard_normal(len(clean))).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def judge():
    return QualityScorer(threads=1)


@pytest.fixture(scope="module")
def scores(clips, judge):
    return dict(zip(clips, judge.scores(list(clips.values())), strict=True))


def test_matches_the_reference_code(clips):
    """Batched across windows and clips (8 windows per run), with P.808: the reference's numbers."""
    from speechmos import dnsmos

    clean = clips["clean"]
    cases = {
        "clean": clean,
        "noisy": clips["snr10"],
        "long": np.concatenate([clean, clips["rt0.6"], clean]),  # 20 s: several windows
        "short": clean[: int(1.3 * SAMPLE_RATE)],  # doubled up to 9 s by the reference's rule
    }
    ours = QualityScorer(batch_size=8, threads=1).scores(list(cases.values()), p808=True)
    for (name, wav), got in zip(cases.items(), ours, strict=True):
        ref = dnsmos.run(wav, SAMPLE_RATE)
        for key, ref_key in (
            ("sig", "sig_mos"),
            ("bak", "bak_mos"),
            ("ovrl", "ovrl_mos"),
            ("p808", "p808_mos"),
        ):
            assert getattr(got, key) == pytest.approx(float(ref[ref_key]), abs=1e-4), (name, key)
    assert [s.windows for s in ours] == [len(window_starts(len(repeat_to_window(w)))) for w in cases.values()]
    assert ours[2].windows > 1 and ours[0].windows > 1  # 6.8 s is doubled to 13.6 s: 5 windows


def test_batching_does_not_change_scores(clips):
    wavs = [clips["clean"], clips["rt1.2"]]
    one = QualityScorer(batch_size=1, threads=1).scores(wavs)
    many = QualityScorer(batch_size=16, threads=1).scores(wavs)
    for a, b in zip(one, many, strict=True):
        assert (a.sig, a.bak, a.ovrl) == pytest.approx((b.sig, b.bak, b.ovrl), abs=1e-4)
        assert a.p808 is None  # P.808 only when asked for


def test_orders_white_noise_by_snr(scores):
    order = ["clean", *(f"snr{s}" for s in SNRS_DB), "noise"]
    for key in ("bak", "ovrl"):
        values = [getattr(scores[n], key) for n in order]
        assert values == sorted(values, reverse=True), (key, dict(zip(order, values, strict=True)))
        assert values[0] - values[-1] > 1.5  # clean vs noise: most of the scale, not a rounding effect
    assert scores["clean"].bak > 3.5 and scores["noise"].bak < 1.3


def test_orders_reverberation_by_rt60(scores):
    order = [f"rt{r}" for r in RT60S]
    for key in ("bak", "ovrl"):
        values = [getattr(scores[n], key) for n in order]
        assert values == sorted(values, reverse=True), (key, dict(zip(order, values, strict=True)))
    assert scores["clean"].bak > scores["rt0.3"].bak
    assert scores["clean"].ovrl > scores["rt0.6"].ovrl > scores["rt1.2"].ovrl
    assert scores["rt1.2"].bak < 1.5 and scores["rt1.2"].ovrl < 1.5


def test_whisper_trap_bak_spares_whispering(scores):
    """SIG and OVRL rate whispering like noise; BAK rates it as cleaner than speech with 20 dB of noise."""
    clean, whisper = scores["clean"], scores["whisper"]
    drop = {k: getattr(clean, k) - getattr(whisper, k) for k in ("sig", "bak", "ovrl")}
    assert drop["bak"] < 0.6 * drop["sig"] and drop["bak"] < 0.75 * drop["ovrl"], drop
    assert whisper.ovrl < scores["snr0"].ovrl and whisper.sig < scores["snr0"].sig  # worse than 0 dB noise
    assert whisper.bak > scores["snr20"].bak  # but on BAK cleaner than 20 dB noise


def test_edge_inputs(judge, clips):
    empty, hot = judge.scores([np.zeros(0, dtype=np.float32), 3.0 * clips["clean"]])
    assert all(np.isfinite([empty.sig, empty.bak, empty.ovrl])) and empty.windows >= 1
    clipped = judge.scores([np.clip(3.0 * clips["clean"], -1, 1)])[0]
    assert (hot.sig, hot.bak, hot.ovrl) == (clipped.sig, clipped.bak, clipped.ovrl)  # clipped to [-1, 1]
    assert judge.scores([]) == []
    assert judge.bak([clips["clean"]])[0] == pytest.approx(judge.scores([clips["clean"]])[0].bak)


def test_bad_model_folder(tmp_path):
    with pytest.raises(ScorerError, match="sig_bak_ovr.onnx"):
        QualityScorer(str(tmp_path)).scores([np.zeros(SAMPLE_RATE, dtype=np.float32)])


def test_clean_score_mapping():
    assert clean_score(1.0, 4.0) == 0.0 and clean_score(0.5, 4.0) == 0.0
    assert clean_score(2.5, 4.0) == pytest.approx(0.5)
    assert clean_score(4.0, 4.0) == 1.0 and clean_score(4.6, 4.0) == 1.0
    assert clean_score(float("nan"), 4.0) == 0.0
    assert clean_score(2.0, 2.5) > clean_score(2.0, 4.0)  # a lower target is more lenient
