"""Quality judge: DNSMOS P.835 (SIG, BAK, OVRL) and optionally P.808, non-intrusive (no reference audio).

Model. Microsoft's DNSMOS (DNS Challenge): a small CNN trained to predict the mean opinion scores that
human listeners gave noisy and enhanced speech under ITU-T P.835, on three 1-5 scales: SIG (distortion
of the speech signal itself), BAK (how intrusive the background is: noise, reverberation tails, codec
hiss), OVRL (overall). The ``speechmos`` wheel (MIT) ships the ONNX files (``dnsmos_models/
sig_bak_ovr.onnx``, ``model_v8.onnx`` for P.808); they are run with ``onnxruntime`` here, offline, with
real weights (no tiny twin).

Computation, exactly as the reference (``speechmos.dnsmos.DNSMOS.__call__``): a clip shorter than
9.01 s is doubled (appended to itself) until it is at least that long; windows of 9.01 s start every
1 s (``floor(len / sr) - 9.01`` hops + 1); each window's raw P.835 outputs go through the published
per-dimension cubic polynomials (the "polyfit" calibration to human scores); the clip's score is the mean
over its windows. P.808 takes a 120-band log-mel spectrogram of the window (less its last 160 samples),
normalised to the window's own maximum. The reference runs one window at a time (and always runs
P.808); here every window of every clip in a call is stacked and run in batches of ``batch_size``
windows (both ONNX graphs have a dynamic batch axis ``N``), and P.808 runs only when asked. The tests
check these scores equal the reference's on the same clips.

Input. 16 kHz mono float waveforms (``stylegrpo.audio.SAMPLE_RATE``, the model's rate). The reference
rejects samples outside [-1, 1]; here they are clipped to [-1, 1] (what writing the clip to a wav does),
so a slightly hot decode cannot crash a reward. An empty clip is scored as ``MIN_CLIP_S`` of silence.

What it means for the styles (measured on espeak-ng speech, see the tests and the README): BAK and OVRL
order added noise and reverberation correctly; SIG and OVRL also rate WHISPERING as badly as noise
(whisper: OVRL 1.05, SIG 0.68, but BAK 2.42), so a reward meant to keep the signal clean should use BAK.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE
from ._base import DEFAULT_BATCH_SIZE, LazyScorer, ScorerError, as_waveforms, resolve_torch_device

log = logging.getLogger(__name__)

DEFAULT_QUALITY = "speechmos"  # the DNSMOS ONNX models inside the speechmos wheel (a folder also works)
P835_FILE = "sig_bak_ovr.onnx"  # input (N, 144160) waveform windows -> (N, 3) raw SIG, BAK, OVRL
P808_FILE = "model_v8.onnx"  # input (N, 900, 120) log-mel frames -> (N, 1) P.808 MOS
WINDOW_S = 9.01  # DNSMOS's input length (the reference's INPUT_LENGTH)
HOP_S = 1.0  # the reference's window hop (one second)
MIN_CLIP_S = 0.1  # an empty clip is scored as this much silence (the reference would loop forever)
# Windows per ONNX run when batch_size is not given. CPU: 1, because stacking windows made onnxruntime's
# CPU convolutions SLOWER here (measured, 1 thread: 1.38 clips/s at 1 window per run, 0.66-0.78 at 4-32;
# bench/bench_scorers.py prints it); CUDA: DEFAULT_BATCH_SIZE, where a batch fills the device.
CPU_WINDOWS_PER_RUN = 1
QUALITY_FIELDS: tuple[str, ...] = ("sig", "bak", "ovrl")  # the P.835 scales, in the model's output order
# P.808 mel features, as the reference computes them
MEL_BANDS = 120
MEL_FRAME = 320
MEL_HOP = 160
# The published calibration of raw P.835 outputs to human MOS (DNSMOS, non-personalised), highest power
# first: numpy.poly1d coefficients copied from speechmos.dnsmos.DNSMOS.get_polyfit_val.
POLYFIT: dict[str, tuple[float, ...]] = {
    "sig": (-0.08397278, 1.22083953, 0.0052439),
    "bak": (-0.13166888, 1.60915514, -0.39604546),
    "ovrl": (-0.06766283, 1.11546468, 0.04602535),
}


@dataclass(frozen=True)
class QualityScores:
    """DNSMOS of one clip, each ~1 (bad) to ~5 (excellent); ``p808`` is None unless asked for."""

    sig: float  # speech signal distortion (P.835 SIG)
    bak: float  # background intrusiveness: noise, reverb (P.835 BAK; higher = cleaner)
    ovrl: float  # overall quality (P.835 OVRL)
    p808: float | None = None  # P.808 overall MOS (only with p808=True)
    windows: int = 1  # 9.01 s windows averaged

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_starts(n_samples: int, sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """(start, end) sample indices of the reference's windows for a clip of ``n_samples`` (after the
    clip has been doubled up to at least one window). Same float arithmetic as the reference."""
    need = int(WINDOW_S * sr)
    num_hops = int(np.floor(n_samples / sr) - WINDOW_S) + 1
    out = []
    for idx in range(num_hops):
        start, end = int(idx * HOP_S * sr), int((idx + WINDOW_S) * HOP_S * sr)
        if min(end, n_samples) - start >= need:
            out.append((start, end))
    return out


def repeat_to_window(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The reference's padding: the clip appended to itself until it is at least one window long."""
    need = int(WINDOW_S * sr)
    if wav.size == 0:
        wav = np.zeros(int(MIN_CLIP_S * sr), dtype=np.float32)
    while len(wav) < need:
        wav = np.append(wav, wav)
    return wav


def polyfit(raw: np.ndarray) -> np.ndarray:
    """(N, 3) raw SIG, BAK, OVRL -> calibrated MOS (same polynomials as the reference)."""
    raw = np.asarray(raw, dtype=np.float64)
    return np.stack([np.polyval(POLYFIT[k], raw[:, j]) for j, k in enumerate(QUALITY_FIELDS)], axis=1)


def model_folder(spec: str) -> Path:
    """The folder with the ONNX files: ``speechmos`` -> the one inside the installed wheel; else a path."""
    if spec == DEFAULT_QUALITY:
        found = importlib.util.find_spec("speechmos")
        if found is None or not found.submodule_search_locations:
            raise ScorerError(
                "the quality judge needs the speechmos package (it ships the DNSMOS models): "
                "pip install speechmos onnxruntime"
            )
        folder = Path(next(iter(found.submodule_search_locations))) / "dnsmos_models"
    else:
        folder = Path(os.path.expanduser(spec))
    if not (folder / P835_FILE).is_file():
        raise ScorerError(f"quality judge {spec!r}: {folder} has no {P835_FILE} (DNSMOS P.835 ONNX model)")
    return folder


class QualityScorer(LazyScorer):
    """DNSMOS P.835 (and P.808 on request) for batches of 16 kHz waveforms.

    ``spec``: ``speechmos`` (default: the models in the wheel) or a folder holding ``sig_bak_ovr.onnx``
    (and ``model_v8.onnx`` for P.808). ``device``: cpu, cuda[:N] or auto; CUDA needs ``onnxruntime-gpu``
    (``pip install 'stylegrpo[quality-gpu]'``), otherwise the judge falls back to the CPU with a warning.
    ``batch_size`` counts 9.01 s WINDOWS per ONNX run (a long clip has several); None picks
    ``CPU_WINDOWS_PER_RUN`` on the CPU and ``DEFAULT_BATCH_SIZE`` on CUDA. Every window of every clip of a
    call is scored in one pass over these runs. ``threads``: onnxruntime intra-op threads (None: its
    default, all cores).
    """

    default_spec = DEFAULT_QUALITY

    def __init__(
        self,
        spec: str | None = None,
        device: Any = "cpu",
        batch_size: int | None = None,
        dtype: Any = None,
        threads: int | None = None,
    ):
        super().__init__(spec, device, DEFAULT_BATCH_SIZE if batch_size is None else batch_size, dtype)
        self._auto_batch = batch_size is None
        self.threads = threads
        self._p835: Any = None
        self._p808: Any = None
        self._folder: Path | None = None

    # -- loading -------------------------------------------------------------------------------
    def _providers(self) -> list[Any]:
        import onnxruntime as ort

        device = resolve_torch_device(self._device_arg)
        if device.type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
            log.warning(
                "QualityScorer: onnxruntime has no CUDA provider (pip install onnxruntime-gpu); running on CPU"
            )
        return ["CPUExecutionProvider"]

    def _session(self, path: Path) -> Any:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ScorerError("the quality judge needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
            options.inter_op_num_threads = 1
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=self._providers())
        except Exception as e:  # onnxruntime raises its own exception types for broken files
            raise ScorerError(f"quality judge: cannot load {path}: {e}") from None

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._folder = model_folder(self.spec)
        log.debug("QualityScorer: loading DNSMOS from %s", self._folder)
        self._p835 = self._session(self._folder / P835_FILE)
        if self._auto_batch and "CUDAExecutionProvider" not in self._p835.get_providers():
            self.batch_size = CPU_WINDOWS_PER_RUN
        self._loaded = True

    def _ensure_p808(self) -> Any:
        self._ensure_loaded()
        if self._p808 is None:
            path = self._folder / P808_FILE
            if not path.is_file():
                raise ScorerError(f"quality judge {self.spec!r}: {path} not found (needed for P.808)")
            self._p808 = self._session(path)
        return self._p808

    # -- scoring -------------------------------------------------------------------------------
    def scores(self, wavs: Sequence[Any], p808: bool = False) -> list[QualityScores]:
        """DNSMOS of each clip: the mean over its 9.01 s windows of the calibrated SIG, BAK, OVRL."""
        clips = [np.clip(w, -1.0, 1.0) for w in as_waveforms(wavs)]
        if not clips:
            return []
        self._ensure_loaded()
        windows: list[np.ndarray] = []
        owner: list[int] = []
        for c, wav in enumerate(clips):
            wav = repeat_to_window(wav)
            for start, end in window_starts(len(wav)):
                windows.append(wav[start:end])
                owner.append(c)
        mos = np.concatenate(
            [
                polyfit(self._p835.run(None, {"input_1": np.stack(chunk).astype(np.float32)})[0])
                for chunk in _chunks(windows, self.batch_size)
            ]
        )
        p808_mos = self._p808_scores(windows) if p808 else None
        owner_arr = np.asarray(owner)
        out = []
        for c in range(len(clips)):
            rows = owner_arr == c
            sig, bak, ovrl = (float(v) for v in mos[rows].mean(axis=0))
            extra = float(p808_mos[rows].mean()) if p808_mos is not None else None
            out.append(QualityScores(sig, bak, ovrl, extra, int(rows.sum())))
        return out

    def bak(self, wavs: Sequence[Any]) -> np.ndarray:
        """BAK (background intrusiveness, higher = cleaner) of each clip."""
        return np.asarray([s.bak for s in self.scores(wavs)], dtype=np.float64)

    def _p808_scores(self, windows: list[np.ndarray]) -> np.ndarray:
        sess = self._ensure_p808()
        out = []
        for chunk in _chunks(windows, self.batch_size):
            feats = np.stack([mel_features(w) for w in chunk]).astype(np.float32)
            out.append(np.asarray(sess.run(None, {"input_1": feats})[0], dtype=np.float64)[:, 0])
        return np.concatenate(out)


def mel_features(window: np.ndarray) -> np.ndarray:
    """P.808 input of one window: (frames, 120) log-mel, as the reference's ``audio_melspec``."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=window[:-MEL_HOP], sr=SAMPLE_RATE, n_fft=MEL_FRAME + 1, hop_length=MEL_HOP, n_mels=MEL_BANDS
    )
    return ((librosa.power_to_db(mel, ref=np.max) + 40) / 40).T


def _chunks(items: list[np.ndarray], size: int) -> list[list[np.ndarray]]:
    size = max(1, int(size))
    return [items[i : i + size] for i in range(0, len(items), size)]


def clean_score(bak: float, target: float, floor: float = 1.0) -> float:
    """BAK mapped linearly onto [0, 1]: 0 at ``floor`` (pure noise scores ~1.1), 1 at ``target`` and above.

    Linear because BAK is already an opinion scale (one MOS point is one step on the listeners' scale);
    saturating at the target so a clip that is already clean gets no further push (the policy cannot buy
    reward by over-suppressing, and a clean group has a constant term that GRPO ignores).
    """
    if not math.isfinite(bak) or not target > floor:
        return 0.0
    return float(min(max((bak - floor) / (target - floor), 0.0), 1.0))
