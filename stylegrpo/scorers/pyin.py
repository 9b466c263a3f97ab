"""pYIN pitch tracking: the algorithm of ``librosa.pyin``, vectorized.

Same algorithm and the same floating-point operations as librosa 0.11's ``pyin`` (Mauch & Dixon 2014,
as in the official pYIN software): YIN's cumulative mean normalized difference by FFT autocorrelation,
troughs with a Beta(2, 18) prior over 100 thresholds and a Boltzmann prior over troughs, parabolic
refinement, pitch bins of ``resolution`` semitones, and Viterbi decoding over voiced and unvoiced pitch
states with librosa's transition matrix. What differs is only how it is computed:

- the trough priors of all frames are computed in bulk with numpy (librosa calls
  ``scipy.stats.boltzmann.pmf`` once per frame, the bulk of its time); the per-frame dot with the
  threshold prior keeps librosa's exact BLAS call so every probability is bit-identical;
- the Viterbi is banded: a pitch state can only be reached from states within the transition width
  (``max_transition_rate``), every other entry of librosa's dense matrix is ``log(tiny)``, a constant,
  so those predecessors are covered exactly by prefix/suffix maxima. The result, ties included (first
  index wins, as ``np.argmax``), is that of librosa's dense ``O(states^2)`` decoder.

``tests/test_pyin.py`` compares it frame by frame with ``librosa.pyin`` on espeak-ng speech.
"""

from __future__ import annotations

import functools
import math

import numpy as np

N_THRESHOLDS = 100  # librosa's / pYIN's default number of YIN thresholds
BETA_PARAMETERS = (2.0, 18.0)  # the threshold prior Beta(2, 18): pYIN's default (mean threshold 0.1)
BOLTZMANN_PARAMETER = 2.0  # trough prior: smaller periods weighted more (pYIN's default)
MAX_TRANSITION_RATE = 35.92  # octaves per second: librosa's default pitch transition limit
SWITCH_PROB = 0.01  # voiced <-> unvoiced switch probability per frame (librosa's default)
NO_TROUGH_PROB = 0.01  # mass given to the global minimum when no trough is under a threshold


def pyin(
    y: np.ndarray,
    *,
    fmin: float,
    fmax: float,
    sr: float,
    frame_length: int,
    hop_length: int,
    resolution: float = 0.1,
    center: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(f0, voiced_flag, voiced_prob)`` of a mono signal, as ``librosa.pyin`` with these arguments
    (its other parameters at their defaults, ``fill_na=nan``, ``pad_mode="constant"``)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"pyin takes a mono signal, got shape {y.shape}")
    if not 0 < fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 < fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    if sr / fmin >= frame_length - 1:
        raise ValueError(f"fmin={fmin} is too low for frame_length={frame_length} at sr={sr}")
    if center:
        y = np.pad(y, (frame_length // 2, frame_length // 2), mode="constant")
    if y.size < frame_length:
        raise ValueError(f"signal of {y.size} samples is shorter than frame_length={frame_length}")
    n_frames = 1 + (y.size - frame_length) // hop_length
    # frames as columns (frame_length, n_frames), the strided view librosa.util.frame gives
    frames = np.lib.stride_tricks.as_strided(
        y, shape=(frame_length, n_frames), strides=(y.strides[0], hop_length * y.strides[0]), writeable=False
    )
    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), frame_length - 1)
    yin = _cmnd(frames, min_period, max_period)
    shifts = _parabolic_shifts(yin)

    n_bins_per_semitone = int(np.ceil(1.0 / resolution))
    n_pitch_bins = int(np.floor(12 * n_bins_per_semitone * np.log2(fmax / fmin))) + 1
    yin_probs = _trough_probabilities(yin)

    yin_period, frame_index = np.nonzero(yin_probs)
    period_candidates = min_period + yin_period
    period_candidates = period_candidates + shifts[yin_period, frame_index]
    f0_candidates = sr / period_candidates
    bin_index = 12 * n_bins_per_semitone * np.log2(f0_candidates / fmin)
    bin_index = np.clip(np.round(bin_index), 0, n_pitch_bins).astype(int)
    observation = np.zeros((2 * n_pitch_bins, n_frames))
    observation[bin_index, frame_index] = yin_probs[yin_period, frame_index]
    voiced_prob = np.clip(np.sum(observation[:n_pitch_bins, :], axis=0, keepdims=True), 0, 1)
    observation[n_pitch_bins:, :] = (1 - voiced_prob) / n_pitch_bins

    max_semitones_per_frame = round(MAX_TRANSITION_RATE * 12 * hop_length / sr)
    transition_width = max_semitones_per_frame * n_bins_per_semitone + 1
    band, half_width, log_oob = _log_transition_band(n_pitch_bins, transition_width)
    epsilon = np.finfo(observation.dtype).tiny
    log_prob = np.log(observation + epsilon)
    log_p_init = np.log(np.ones(2 * n_pitch_bins) / (2 * n_pitch_bins) + epsilon)
    states = _banded_viterbi(
        np.ascontiguousarray(log_prob.T), band, log_p_init, n_pitch_bins, half_width, log_oob
    )

    freqs = fmin * 2 ** (np.arange(n_pitch_bins) / (12 * n_bins_per_semitone))
    f0 = freqs[states % n_pitch_bins]
    voiced_flag = states < n_pitch_bins
    f0[~voiced_flag] = np.nan
    return f0, voiced_flag, voiced_prob[0]


def _cmnd(frames: np.ndarray, min_period: int, max_period: int) -> np.ndarray:
    """YIN's cumulative mean normalized difference, (max_period - min_period + 1, n_frames)."""
    import scipy.fft

    n_pad = scipy.fft.next_fast_len(2 * frames.shape[0] - 1, real=True)
    spectrum = np.fft.rfft(frames, n=n_pad, axis=0)
    acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=n_pad, axis=0)[: max_period + 1]
    energy = np.square(frames)
    np.cumsum(energy, out=energy, axis=0)
    energy[0, :] = 0
    energy[1 : max_period + 1, :] = 2 * (acf[0:1, :] - acf[1 : max_period + 1, :]) - energy[:max_period, :]
    numerator = energy[min_period : max_period + 1, :]
    k_range = np.arange(1, max_period + 1)[:, None]
    cumulative_mean = np.cumsum(energy[1 : max_period + 1, :], axis=0) / k_range
    denominator = cumulative_mean[min_period - 1 : max_period, :]
    return numerator / (denominator + np.finfo(denominator.dtype).tiny)


def _parabolic_shifts(x: np.ndarray) -> np.ndarray:
    """Parabolic-interpolation offset of each lag (0 at the ends and where it would move > 1 lag)."""
    shifts = np.zeros_like(x)
    _kernels().parabolic(np.ascontiguousarray(x.T), shifts.T)
    return shifts


def _trough_probabilities(yin: np.ndarray) -> np.ndarray:
    """pYIN's probability of each lag of each frame being the period (nonzero only at troughs)."""
    trough = np.zeros_like(yin, dtype=bool)
    trough[1:-1] = (yin[1:-1] < yin[:-2]) & (yin[1:-1] <= yin[2:])
    trough[-1] = yin[-1] < yin[-2]
    trough[0] = yin[0] < yin[1]
    frame_of, lag_of = np.nonzero(trough.T)  # troughs frame by frame, lags increasing
    out = np.zeros_like(yin)
    if frame_of.size == 0:
        return out
    thresholds, beta_probs, beta_prefix = _threshold_prior()
    heights = yin[lag_of, frame_of].astype(np.float64)  # exact: librosa compares in float64 too
    starts = np.flatnonzero(np.r_[True, frame_of[1:] != frame_of[:-1]])
    counts = np.diff(np.r_[starts, frame_of.size])
    # first threshold each trough is under (thresholds[1:] > height from there on)
    first_under = np.searchsorted(thresholds[1:], heights, side="right")
    prior, global_min = _kernels().trough_prior(
        first_under, heights, starts, counts, _boltzmann_table(int(counts.max())), N_THRESHOLDS
    )
    probs = np.empty(frame_of.size)
    for s, c in zip(starts.tolist(), counts.tolist(), strict=True):
        probs[s : s + c] = prior[s : s + c].dot(beta_probs)  # librosa's exact BLAS call per frame
    # extra mass to each frame's global minimum for the thresholds it is not under
    probs[global_min] += NO_TROUGH_PROB * beta_prefix[first_under[global_min]]
    out[lag_of, frame_of] = probs
    return out


@functools.cache
def _threshold_prior() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds, their Beta prior masses and the prefix sums of those masses (as librosa sums them)."""
    import scipy.stats

    thresholds = np.linspace(0, 1, N_THRESHOLDS + 1)
    beta_probs = np.diff(scipy.stats.beta.cdf(thresholds, *BETA_PARAMETERS))
    prefix = np.array([np.sum(beta_probs[:n]) for n in range(N_THRESHOLDS + 1)])
    return thresholds, beta_probs, prefix


@functools.lru_cache(maxsize=8)
def _boltzmann_table(max_troughs: int) -> np.ndarray:
    """table[n, k] = scipy.stats.boltzmann.pmf(k, BOLTZMANN_PARAMETER, n) for n, k <= max_troughs
    (rows for n < 1 are never read: a rank exists only where a trough is under the threshold)."""
    import scipy.stats

    size = 1 << max(4, math.ceil(math.log2(max_troughs + 1)))  # few distinct sizes: cache hits
    n = np.arange(size + 1)[:, None]
    k = np.arange(size + 1)[None, :]
    with np.errstate(all="ignore"):
        table = scipy.stats.boltzmann.pmf(k, BOLTZMANN_PARAMETER, np.maximum(n, 1))
    table[0] = 0.0
    return table


@functools.lru_cache(maxsize=8)
def _log_transition_band(n_bins: int, width: int) -> tuple[np.ndarray, int, float]:
    """librosa's log transition matrix, as band[j, half, d] = log_trans[half * n + i - h + d, j] for
    target state j (i = j mod n), and the constant ``log(tiny)`` of every entry outside the band."""
    import scipy.signal

    window = scipy.signal.get_window("triangle", width, fftbins=False)
    local = np.zeros((n_bins, n_bins))
    half_width = width // 2
    for i in range(n_bins):  # librosa.sequence.transition_local(n_bins, width, "triangle", wrap=False)
        row = np.zeros(n_bins)
        lpad = (n_bins - width) // 2
        row[lpad : lpad + width] = window
        row = np.roll(row, n_bins // 2 + i + 1)
        row[min(n_bins, i + half_width + 1) :] = 0
        row[: max(0, i - half_width)] = 0
        local[i] = row
    local /= local.sum(axis=1, keepdims=True)
    switch = np.array([[1 - SWITCH_PROB, SWITCH_PROB], [SWITCH_PROB, 1 - SWITCH_PROB]])
    transition = np.kron(switch, local)
    epsilon = np.finfo(np.float64).tiny
    log_trans = np.log(transition + epsilon)
    log_oob = float(np.log(epsilon))
    n_states = 2 * n_bins
    # band[target_half, source_half, d, i] = log_trans[source_half * n + i - h + d, target_half * n + i]
    band = np.full((2, 2, width, n_bins), log_oob)
    inside = np.zeros((n_states, n_states), dtype=bool)
    for tb in range(2):
        for sb in range(2):
            for d in range(width):
                i = np.arange(max(0, half_width - d), min(n_bins, n_bins + half_width - d))
                src = sb * n_bins + i - half_width + d
                band[tb, sb, d, i] = log_trans[src, tb * n_bins + i]
                inside[src, tb * n_bins + i] = True
    if not np.all(log_trans[~inside] == log_oob):  # the banded decoder relies on this
        raise AssertionError("transition matrix has mass outside its band")
    return band, half_width, log_oob


def _banded_viterbi(log_prob, band, log_p_init, n_bins, half_width, log_oob):
    return _kernels().viterbi(log_prob, band, log_p_init, n_bins, half_width, log_oob)


@functools.cache
def _kernels():
    """The compiled loops (numba, librosa's own dependency), compiled on first use and cached on disk."""
    import types

    import numba

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def parabolic(x, out):  # pragma: no cover (compiled): librosa's _pi_stencil, same arithmetic
        for f in range(x.shape[0]):
            row = x[f]
            for n in range(1, row.shape[0] - 1):
                a = row[n + 1] + row[n - 1] - 2 * row[n]
                b = (row[n + 1] - row[n - 1]) / 2
                if np.abs(b) >= np.abs(a):
                    out[f, n] = 0
                else:
                    out[f, n] = -b / a

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def trough_prior(first_under, heights, starts, counts, table, n_thresholds):  # pragma: no cover
        """prior[m, th]: Boltzmann prior of trough m at threshold th (its rank among the frame's
        troughs under th, of how many), 0 where it is not under; and each frame's global minimum."""
        prior = np.zeros((first_under.size, n_thresholds))
        global_min = np.empty(starts.size, dtype=np.int64)
        n_under = np.zeros(n_thresholds + 1, dtype=np.int64)
        for f in range(starts.size):
            s = starts[f]
            c = counts[f]
            n_under[:] = 0
            best = s
            for m in range(s, s + c):
                n_under[first_under[m]] += 1
                if heights[m] < heights[best]:
                    best = m
            global_min[f] = best
            for th in range(1, n_thresholds):
                n_under[th] += n_under[th - 1]
            for th in range(n_thresholds):
                n = n_under[th]
                if n == 0:
                    continue
                rank = 0
                for m in range(s, s + c):
                    if first_under[m] <= th:
                        prior[m, th] = table[n, rank]
                        rank += 1
        return prior, global_min

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def viterbi(log_prob, band, log_p_init, n_bins, h, log_oob):  # pragma: no cover (compiled)
        n_steps, n_states = log_prob.shape
        ptr = np.zeros((n_steps, n_states), dtype=np.int32)
        prev = log_prob[0] + log_p_init
        cur = np.empty(n_states)
        shifted = np.empty(n_states)
        pre_v = np.empty((2, n_bins + 1))  # max of shifted[half*n : half*n + i] and its first index
        pre_i = np.empty((2, n_bins + 1), dtype=np.int64)
        suf_v = np.empty((2, n_bins + 1))  # max of shifted[half*n + i : half*n + n], first index
        suf_i = np.empty((2, n_bins + 1), dtype=np.int64)
        best = np.empty(n_states)
        arg = np.empty(n_states, dtype=np.int64)
        for t in range(1, n_steps):
            for s in range(n_states):
                shifted[s] = prev[s] + log_oob
            for half in range(2):
                base = half * n_bins
                pre_v[half, 0] = -np.inf
                pre_i[half, 0] = -1
                for i in range(n_bins):
                    v = shifted[base + i]
                    if v > pre_v[half, i]:
                        pre_v[half, i + 1] = v
                        pre_i[half, i + 1] = base + i
                    else:
                        pre_v[half, i + 1] = pre_v[half, i]
                        pre_i[half, i + 1] = pre_i[half, i]
                suf_v[half, n_bins] = -np.inf
                suf_i[half, n_bins] = -1
                for i in range(n_bins - 1, -1, -1):
                    v = shifted[base + i]
                    if v >= suf_v[half, i + 1]:
                        suf_v[half, i] = v
                        suf_i[half, i] = base + i
                    else:
                        suf_v[half, i] = suf_v[half, i + 1]
                        suf_i[half, i] = suf_i[half, i + 1]
            # candidates of each target j in increasing source order (first maximum wins, as
            # np.argmax): per source half, the states before the band, the band, the states after
            for j in range(n_states):
                best[j] = -np.inf
                arg[j] = 0  # no finite candidate (NaN input): np.argmax would give state 0
            for sb in range(2):
                base = sb * n_bins
                for j in range(n_states):
                    v = pre_v[sb, max(0, j % n_bins - h)]
                    if v > best[j]:
                        best[j] = v
                        arg[j] = pre_i[sb, max(0, j % n_bins - h)]
                for d in range(2 * h + 1):
                    i_lo = max(0, h - d)
                    i_hi = min(n_bins, n_bins + h - d)
                    for tb in range(2):
                        row = band[tb, sb, d]
                        off = tb * n_bins
                        src0 = base - h + d
                        for i in range(i_lo, i_hi):  # branch-free: the compiler vectorizes it
                            v = prev[src0 + i] + row[i]
                            b = best[off + i]
                            gt = v > b
                            best[off + i] = v if gt else b
                            arg[off + i] = src0 + i if gt else arg[off + i]
                for j in range(n_states):
                    hi = min(n_bins - 1, j % n_bins + h) + 1
                    v = suf_v[sb, hi]
                    if v > best[j]:
                        best[j] = v
                        arg[j] = suf_i[sb, hi]
            for j in range(n_states):
                ptr[t, j] = arg[j]
                cur[j] = log_prob[t, j] + best[j]
            prev, cur = cur, prev
        states = np.empty(n_steps, dtype=np.int64)
        states[-1] = np.argmax(prev)
        for t in range(n_steps - 2, -1, -1):
            states[t] = ptr[t + 1, states[t + 1]]
        return states

    return types.SimpleNamespace(parabolic=parabolic, trough_prior=trough_prior, viterbi=viterbi)
