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


def build(out_dir: Path) -> dict[str, int]:
    require_engines()
    seen: set[str] = set()
    counts = {}
    for split, voices in voices_by_split().items():
        rows = []
        for voice in voices:
            folder = out_dir / "clips" / voice.replace("+", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for word in WORDS:
                rate = rate_of(voice, word)
                rel = f"clips/{folder.name}/{word}-{rate}.wav"
                synthesise("espeak", voice, rate, word, out_dir / rel)
                trim_silence(out_dir / rel)
                digest = hashlib.sha256((out_dir / rel).read_bytes()).hexdigest()
                if digest in seen:
                    (out_dir / rel).unlink()  # a byte-identical clip of another voice: keep the first only
                    continue
                seen.add(digest)
                rows.append((rel, rate))
            if not any(folder.iterdir()):
                folder.rmdir()
        write_split_csv(out_dir / f"{split}.csv", ["path", "wpm"], rows)
        counts[split] = len(rows)
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
