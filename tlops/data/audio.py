"""Audio decoding for backbones: any libsndfile format -> mono float32 at the backbone's rate, fixed length."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

from tlops.errors import DataError


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples as (frames, channels) float32, sample rate). Raises DataError naming the file."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise DataError(f"audio {path} could not be decoded ({e}); replace it with a WAV/FLAC/OGG file or remove its row") from None
    return data, rate


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad at the end, or keep the centre n samples."""
    if len(x) >= n:
        start = (len(x) - n) // 2
        return x[start : start + n]
    return np.pad(x, (0, n - len(x)))


def load_clip(path: str | Path, rate: int, n_samples: int) -> np.ndarray:
    data, sr = read_audio(path)
    if data.shape[0] == 0:
        raise DataError(f"audio {path} is empty; replace or remove that file")
    return fit_length(resample(data.mean(axis=1), sr, rate), n_samples)
