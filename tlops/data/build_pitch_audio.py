"""Build the audio pitch demo, deterministically: the spoken-keyword words synthesised by espeak-ng voices, each
at its own pitch setting; target = the clip's voice pitch, the median fundamental frequency (F0, Hz) of its
voiced frames as measured by pYIN (Mauch & Dixon 2014, librosa's implementation).

Why measured, not the setting asked of espeak-ng: `-p 0..99` moves each voice around its own base (a male
variant at -p 20 sounds at ~64 Hz, a female one at ~111 Hz), so the setting is not what a listener hears;
the F0 is. Each (voice, word) gets a setting uniform in 0..99 by sha256 of the voice and word, so the set spans
~55 to ~450 Hz, low male to high female voices. The task is to hear how high a voice speaks a word, by voices
(espeak-ng accent + variant pairs) split between train, val and test, so a test voice is never heard in training.

Three variants are left out: `croak` and `klatt2` (pYIN finds no voicing in most of their clips: creaky or
noise-excited) and `m7` (its F0 barely follows the setting: correlation 0.19 against 0.97 for the others).
A clip with fewer than MIN_VOICED voiced pYIN frames is dropped (too little voicing to have a pitch).

Clips are trimmed to their speech + 50 ms as the speaking-rate demo's; espeak-ng and pYIN are deterministic (and
decoding resamples with scipy's polyphase filter), so a rebuild is byte-identical (checked through data.dvc); a
clip whose bytes match one already written is dropped, so no split holds a copy of another's clip.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import typer

from tlops.data.audio import read_audio, resample
from tlops.data.build_keywords import require_engines, synthesise
from tlops.data.build_regression_audio import build_clips
from tlops.data.build_voice_shift import ACCENTS, VARIANTS

LEFT_OUT = ("croak", "klatt2", "m7")  # see the module docstring
VOICES = {"train": 45, "val": 16, "test": 30}  # espeak-ng accent+variant pairs per split (of 7 x 13 = 91)
F0_RANGE = (50.0, 500.0)  # Hz: pYIN's search range, from below a low male voice to above a high female one
RATE, HOP = 16000, 256  # pYIN at 16 kHz, a frame every 16 ms
MIN_VOICED = 5  # voiced pYIN frames (80 ms) a clip needs to have a pitch


def _rank(key: str) -> str:
    return hashlib.sha256(f"tlops-pitch-audio-v1:{key}".encode()).hexdigest()


def setting_of(voice: str, word: str) -> int:
    """espeak-ng's pitch setting (-p, 0..99) for this voice and word."""
    return int(_rank(f"{voice}:{word}")[:8], 16) % 100


def voices_by_split() -> dict[str, list[str]]:
    pairs = sorted((f"{a}+{v}" for a in ACCENTS for v in VARIANTS if v not in LEFT_OUT), key=_rank)
    out, start = {}, 0
    for split, n in VOICES.items():
        out[split], start = pairs[start : start + n], start + n
    return out


def median_f0(path: Path) -> float | None:
    """Median F0 (Hz, 0.1 Hz) over the clip's voiced pYIN frames; None with fewer than MIN_VOICED of them."""
    import librosa

    x, sr = read_audio(path)
    y = resample(x.mean(axis=1), sr, RATE)
    f0, voiced, _ = librosa.pyin(y, fmin=F0_RANGE[0], fmax=F0_RANGE[1], sr=RATE, frame_length=1024, hop_length=HOP)
    f0 = f0[voiced & np.isfinite(f0)]
    return round(float(np.median(f0)), 1) if len(f0) >= MIN_VOICED else None


def build(out_dir: Path) -> dict[str, int]:
    require_engines()
    # a clip too little voiced to have a pitch is dropped like a repeat (median_f0 gives None)
    counts = build_clips(out_dir, voices_by_split(), lambda voice, word: f"{word}-p{setting_of(voice, word)}",
                         lambda voice, word, path: synthesise("espeak", voice, None, word, path, pitch=setting_of(voice, word)),
                         lambda voice, word, path: median_f0(path), "f0_hz")
    (out_dir / "dataset.yaml").write_text(
        "modality: audio\nname: espeak-voice-pitch\ntask: regression\ntarget: f0_hz\n"
        f"bounds: [{F0_RANGE[0]:g}, {F0_RANGE[1]:g}]\n"
        "source: 10 keywords synthesised by espeak-ng accent+variant voices (split by voice), each clip at its own pitch "
        "setting (-p 0..99); target = f0_hz = the median F0 of the clip's voiced frames, measured by pYIN (librosa)\n",
        encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/audio_pitch"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
