"""Build the demo speech-recognition dataset: spoken digit strings ("four one seven") synthesised by two real speech
engines, Debian `espeak-ng` voice variants and `flite` voices (recorded from real speakers), as CSV `path,text`.

Each split has its own voices (a test speaker is never heard in training) and its own seeded strings of 3 to 5 digits.
Both engines are deterministic, so a rebuild gives byte-identical files. Some espeak-ng variants render byte-identical
WAVs for the same text: a clip whose bytes an earlier clip already has is not kept (so no clip is in two splits).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import typer

from tlops.data.build_keywords import require_engines, synthesise
from tlops.data.dataset import write_split_csv

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# (engine, voice, speed in words/min for espeak-ng); each voice belongs to one split
VOICES = {
    "train": [("espeak", v, s) for v, s in [("en+m1", 150), ("en+m3", 175), ("en+f2", 160), ("en+f4", 140), ("en-us+m2", 165),
                                            ("en-us+f3", 150), ("en-gb-scotland+m4", 155), ("en+m7", 170), ("en-us+f1", 180), ("en+croak", 150)]]
    + [("flite", "kal16", 0), ("flite", "awb", 0)],
    "val": [("espeak", "en+m5", 160), ("espeak", "en-us+f5", 150), ("flite", "rms", 0)],
    "test": [("espeak", "en+m2", 165), ("espeak", "en-us+f2", 145), ("espeak", "en-gb-x-rp+m6", 155), ("flite", "slt", 0)],
}
PER_VOICE = {"train": 50, "val": 30, "test": 40}  # strings per voice
SEED = {"train": 1, "val": 2, "test": 3}


def sentences(split: str, n: int, voice_index: int) -> list[str]:
    """`n` seeded digit strings of 3-5 digits for one voice of a split."""
    rng = random.Random(f"{SEED[split]}-{voice_index}")
    return [" ".join(rng.choice(DIGITS) for _ in range(rng.randint(3, 5))) for _ in range(n)]


def build(out_dir: Path, per_voice: dict[str, int] | None = None) -> dict[str, int]:
    require_engines()
    per_voice = per_voice or PER_VOICE
    seen: set[str] = set()
    counts = {}
    for split, voices in VOICES.items():
        rows = []
        for vi, (engine, voice, speed) in enumerate(voices):
            tag = f"{engine}-{voice.replace('+', '_')}-{speed}" if speed else f"{engine}-{voice}"
            folder = out_dir / "clips" / split / tag
            folder.mkdir(parents=True, exist_ok=True)
            for i, text in enumerate(sentences(split, per_voice[split], vi)):
                rel = f"clips/{split}/{tag}/{i:03d}.wav"
                synthesise(engine, voice, speed or None, text, out_dir / rel)
                digest = hashlib.sha256((out_dir / rel).read_bytes()).hexdigest()
                if digest in seen:
                    (out_dir / rel).unlink()  # byte-identical to a clip already kept
                    continue
                seen.add(digest)
                rows.append((rel, text))
        write_split_csv(out_dir / f"{split}.csv", ["path", "text"], rows)
        counts[split] = len(rows)
    (out_dir / "dataset.yaml").write_text(
        "modality: audio\ntask: speech_recognition\nname: spoken-digits-asr-demo\n"
        "source: digit strings spoken by espeak-ng voice variants + flite voices (kal16, awb, rms, slt); split by voice\n",
        encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/audio_asr"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
