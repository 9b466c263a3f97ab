"""Audio conventions shared by every part: one sample rate, wav I/O, resampling."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000  # XCodec2 decodes to 16 kHz; every judge takes 16 kHz waveforms
CODEC_TOKENS_PER_SECOND = 50  # XCodec2: one token per 320 samples at 16 kHz


def write_wav(path: str | os.PathLike[str], wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write a mono float waveform as 16-bit PCM wav (clipped to [-1, 1])."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sample_rate, subtype="PCM_16")
    return path


def read_wav(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read audio as mono float32 at ``sample_rate`` (resampled when the file differs)."""
    import soundfile as sf

    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return resample(wav.mean(axis=1), sr, sample_rate)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (librosa's soxr); a no-op when the rates agree."""
    wav = np.asarray(wav, dtype=np.float32)
    if orig_sr == target_sr or wav.size == 0:
        return wav
    import librosa

    return librosa.resample(wav, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(np.float32)
