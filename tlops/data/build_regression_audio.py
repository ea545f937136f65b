"""Build the audio regression demo, deterministically: the spoken-keyword words synthesised by espeak-ng
voices at a known speaking rate; target = that rate in words per minute (espeak-ng's `-s`).

Each (voice, word) clip gets its own rate, uniform in [100, 300] wpm by sha256 of the voice and word: from
clearly slow to clearly fast speech, inside espeak-ng's range (80-450) and where every word still fits the
demo config's 1 s clips once trimmed (the slowest, "seven" at 100 wpm, is ~0.9 s). A listener can tell a word's rate
from how long its sounds last against how long that word normally takes; the model has to learn the same
from a fixed vocabulary of 10 words, heard by voices (espeak-ng accent + variant pairs) that are split
between train, val and test, so a test voice is never heard in training.

espeak-ng ends a clip with a pause that also scales with the rate (at 100 wpm "seven" is 0.8 s of speech and
0.7 s of silence): each clip is trimmed to its speech plus a fixed 50 ms either side, so the rate has to be
heard in the word itself, not read off the file's length of silence.

espeak-ng is deterministic, so a rebuild is byte-identical (checked through data.dvc); a clip whose bytes
match one already written (some variants render alike) is dropped, so no split holds a copy of another's clip.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import typer

from tlops.data.build_keywords import WORDS, require_engines, synthesise
from tlops.data.build_voice_shift import ACCENTS, VARIANTS
from tlops.data.dataset import write_split_csv

VOICES = {"train": 48, "val": 16, "test": 32}  # espeak-ng accent+variant pairs per split (of 112)
RATE_RANGE = (100, 300)  # words per minute
SILENCE = 328  # |sample| at or below 1% of 16-bit full scale counts as silence
MARGIN_S = 0.05


def _rank(key: str) -> str:
    return hashlib.sha256(f"tlops-regression-audio-v1:{key}".encode()).hexdigest()


def rate_of(voice: str, word: str) -> int:
    lo, hi = RATE_RANGE
    return lo + int(_rank(f"{voice}:{word}")[:8], 16) % (hi - lo + 1)


def trim_silence(path: Path) -> None:
    """Rewrite a WAV as its speech (first to last sample above SILENCE) plus MARGIN_S either side."""
    import numpy as np
    import soundfile as sf

    x, sr = sf.read(path, dtype="int16")
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > SILENCE)
    if len(loud) == 0:
        raise SystemExit(f"{path}: espeak-ng wrote silence; check the espeak-ng install")
    m = int(MARGIN_S * sr)
    sf.write(path, x[max(0, loud[0] - m) : loud[-1] + 1 + m], sr, subtype="PCM_16")


def voices_by_split() -> dict[str, list[str]]:
    pairs = sorted((f"{a}+{v}" for a in ACCENTS for v in VARIANTS), key=_rank)
    out, start = {}, 0
    for split, n in VOICES.items():
        out[split], start = pairs[start : start + n], start + n
    return out


def build_clips(out_dir: Path, voices: dict[str, list[str]], name: Callable[[str, str], str],
                speak: Callable[[str, str, Path], None], target: Callable[[str, str, Path], float | None], column: str) -> dict[str, int]:
    """Each split's CSV (path, `column`) of one clip per (voice, word): `speak` writes it, it is trimmed to its speech,
    and it is dropped when its bytes repeat an earlier clip's (some variants render alike: keep the first only) or
    `target` has no value for it. `name(voice, word)`: the clip's file name without .wav. Rows per split."""
    seen: set[str] = set()
    counts = {}
    for split, split_voices in voices.items():
        rows = []
        for voice in split_voices:
            folder = out_dir / "clips" / voice.replace("+", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for word in WORDS:
                rel = f"clips/{folder.name}/{name(voice, word)}.wav"
                speak(voice, word, out_dir / rel)
                trim_silence(out_dir / rel)
                digest = hashlib.sha256((out_dir / rel).read_bytes()).hexdigest()
                value = target(voice, word, out_dir / rel) if digest not in seen else None
                if value is None:
                    (out_dir / rel).unlink()
                    continue
                seen.add(digest)
                rows.append((rel, value))
            if not any(folder.iterdir()):
                folder.rmdir()
        write_split_csv(out_dir / f"{split}.csv", ["path", column], rows)
        counts[split] = len(rows)
    return counts


def build(out_dir: Path) -> dict[str, int]:
    require_engines()
    counts = build_clips(out_dir, voices_by_split(), lambda voice, word: f"{word}-{rate_of(voice, word)}",
                         lambda voice, word, path: synthesise("espeak", voice, rate_of(voice, word), word, path),
                         lambda voice, word, path: rate_of(voice, word), "wpm")
    (out_dir / "dataset.yaml").write_text(
        "modality: audio\nname: espeak-speaking-rate\ntask: regression\ntarget: wpm\n"
        f"bounds: [{RATE_RANGE[0]}, {RATE_RANGE[1]}]\n"
        "source: 10 keywords synthesised by espeak-ng accent+variant voices (split by voice), each clip at its own "
        "speaking rate; target = wpm = the rate asked of espeak-ng (-s), uniform in [100, 300]\n", encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/audio_regression"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
