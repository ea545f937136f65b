"""Build the few-shot audio demo (custom keyword spotting), deterministically: many spoken words, each
synthesised by many voices of two real speech engines (Debian `espeak-ng` accent+variant voices at several
pitches and speeds, `flite` voices recorded from real speakers at several rates and pitches).

A class is a word. Meta-train, val and test get disjoint word sets (a keyword spotter meets new words
from a user's few recordings); the voice pool is shared, as a user's recordings come from the voices the
device hears. Same-engine clips are perfectly aligned, so every clip is augmented (silence trimmed, then a
random onset, gain and background noise at 15-35 dB SNR) from the word's own seeded stream. Clips whose
synthesis is byte-identical to one already drawn for the word (espeak-ng variants that render alike) are
redrawn, so no two rows of a class are the same recording. 16 kHz mono WAV, 8-bit mu-law (telephone
quality: its quantisation noise, ~38 dB below the signal, is under the added noise; half the bytes of 16-bit PCM).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import typer

from tlops.data.build_keywords import require_engines
from tlops.data.build_voice_shift import ACCENTS, FLITE_VOICES, VARIANTS
from tlops.data.dataset import write_split_csv

WORDS = (
    "yes no up down left right on off stop go zero one two three four five six seven eight nine bed bird cat dog happy "
    "house tree wow backward forward follow learn visual apple banana orange water coffee music window door table chair "
    "phone camera garden river mountain yellow purple silver winter summer monday friday hello goodbye please thanks "
    "open close start pause volume kitchen morning evening computer pencil rocket tiger monkey turtle rabbit pizza"
).split()
SPLITS = {"train": (48, 20), "val": (10, 20), "test": (16, 30)}  # (words, clips per word); test: 5 support + 10 shots + 15 queries
RATE = 16_000
FLITE_SHARE = 0.25  # fraction of clips drawn from flite's real-speaker voices


def _rank(key: str) -> str:
    return hashlib.sha256(f"tlops-fewshot-audio-v1:{key}".encode()).hexdigest()


def draw_voice(rng: np.random.Generator) -> tuple:
    """(engine, voice, espeak speed, espeak pitch, flite stretch, flite f0 mean) for one clip."""
    if rng.random() < FLITE_SHARE:
        return ("flite", FLITE_VOICES[int(rng.integers(len(FLITE_VOICES)))], 0, 0,
                round(float(rng.uniform(0.8, 1.3)), 2), int(rng.integers(90, 200)))
    voice = f"{ACCENTS[int(rng.integers(len(ACCENTS)))]}+{VARIANTS[int(rng.integers(len(VARIANTS)))]}"
    return ("espeak", voice, int(rng.integers(130, 191)), int(rng.integers(25, 76)), None, 0)


def synthesise_clip(engine, voice, speed, pitch, stretch, f0, word: str, tmp: Path) -> tuple[bytes, np.ndarray]:
    """(raw synthesiser bytes, mono float32 at RATE)."""
    import subprocess

    import soundfile as sf

    from tlops.data.audio import resample

    out = tmp / "clip.wav"
    if engine == "espeak":
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), word],
                       check=True, capture_output=True, timeout=60)
    else:
        subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "--setf", f"int_f0_target_mean={f0}",
                        "-t", word, "-o", str(out)], check=True, capture_output=True, timeout=60)
    raw = out.read_bytes()
    data, rate = sf.read(str(out), dtype="float32", always_2d=True)
    return raw, resample(data.mean(axis=1), rate, RATE)


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Trim silence, then a random onset (0-200 ms), peak gain 0.3-0.9 and white noise at 15-35 dB SNR."""
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    margin = RATE // 50
    x = x[max(0, loud[0] - margin) : loud[-1] + margin]
    x = np.concatenate([np.zeros(int(rng.integers(0, RATE // 5)), np.float32), x])
    x = x / np.abs(x).max() * rng.uniform(0.3, 0.9)
    power = float(np.mean(x**2))
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (rng.uniform(15, 35) / 10))
    return np.clip(x + noise, -1, 1).astype(np.float32)


def write_word_clips(out_dir: Path, folder: str, word: str, n_clips: int, rng: np.random.Generator, draw, tmp: Path) -> list[tuple[str, str]]:
    """`n_clips` clips of `word`, each voice from `draw(rng)` (synthesise_clip's leading arguments), augmented and
    written as `folder`/NN.wav under `out_dir`; a voice that renders the word byte-identically to an earlier draw is
    drawn again (some espeak-ng variants do). The (path, label) rows."""
    import soundfile as sf

    (out_dir / folder).mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    rows = []
    while len(seen) < n_clips:
        raw, x = synthesise_clip(*draw(rng), word, tmp)
        digest = hashlib.sha256(raw).hexdigest()
        if digest in seen:
            continue  # this voice renders the word like an earlier draw: draw another
        seen.add(digest)
        rel = f"{folder}/{len(seen) - 1:02d}.wav"
        sf.write(str(out_dir / rel), augment(x, rng), RATE, subtype="ULAW")
        rows.append((rel, word))
    return rows


def build(out_dir: Path) -> dict[str, int]:
    require_engines()
    words = sorted(WORDS, key=_rank)
    counts, start = {}, 0
    with tempfile.TemporaryDirectory() as tmp:
        for split, (n_words, n_clips) in SPLITS.items():
            rows = []
            for word in words[start : start + n_words]:
                rng = np.random.default_rng(int(_rank(word)[:8], 16))  # one stream per word: rebuilds are identical
                rows += write_word_clips(out_dir, f"clips/{word}", word, n_clips, rng, draw_voice, Path(tmp))
            write_split_csv(out_dir / f"{split}.csv", ["path", "label"], rows)
            counts[split] = len(rows)
            start += n_words
    (out_dir / "dataset.yaml").write_text(
        "modality: audio\nname: spoken-words-fewshot\n"
        "source: words spoken by espeak-ng voice variants (pitch/speed varied) and flite voices kal, kal16, awb, rms, slt "
        "(rate/pitch varied), trimmed, random onset, gain and noise; label = word; "
        f"{SPLITS['train'][0]} meta-train / {SPLITS['val'][0]} val / {SPLITS['test'][0]} test words, disjoint\n",
        encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/audio_fewshot"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
