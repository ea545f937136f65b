"""Build the audio domain-shift demo, deterministically: the keyword vocabulary of `build_keywords` spoken by
espeak-ng voice variants (labelled source: formant synthesis) -> flite voices (target: kal, kal16, awb, rms,
slt, diphone and clustergen voices built from recordings of real speakers), as unlabelled target clips and a
labelled target test split.

Source voices are split train/val by voice. The target's unlabelled and test rows are the same flite voices
at different speaking rates (flite's duration_stretch), so they are disjoint rows of one target domain.
espeak-ng renders some voice variants byte-identically: every clip whose content was already written is
dropped, so no split holds a copy of another's clip.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer

from tlops.data.build_keywords import WORDS, require_engines, synthesise
from tlops.data.dataset import write_split_csv

ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-us-nyc"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "klatt", "klatt2", "klatt3"]
SOURCE_VOICES = {"train": 24, "val": 6}  # espeak-ng accent+variant pairs per split (before de-duplication)
FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]
TARGET_STRETCH = {"unlabeled": [0.8, 0.9, 1.1, 1.35], "test": [1.0, 1.2]}  # flite duration_stretch per target split


def _rank(key: str) -> str:
    return hashlib.sha256(f"tlops-voice-shift-v1:{key}".encode()).hexdigest()


def source_voices() -> dict[str, list[tuple[str, int]]]:
    """(espeak-ng voice, words/min) per source split: accent+variant pairs in hash order, speed 140..180."""
    pairs = sorted((f"{a}+{v}" for a in ACCENTS for v in VARIANTS), key=_rank)
    out, start = {}, 0
    for split, n in SOURCE_VOICES.items():
        out[split] = [(voice, 140 + int(_rank(voice)[:4], 16) % 41) for voice in pairs[start : start + n]]
        start += n
    return out


def build(out_dir: Path) -> dict[str, int]:
    require_engines()
    plan = {split: [("espeak", voice, speed, None) for voice, speed in voices] for split, voices in source_voices().items()}
    plan.update({split: [("flite", voice, 0, s) for voice in FLITE_VOICES for s in stretches] for split, stretches in TARGET_STRETCH.items()})
    seen: set[str] = set()
    counts = {}
    for split, voices in plan.items():
        rows = []
        for engine, voice, speed, stretch in voices:
            tag = f"espeak-{voice.replace('+', '_')}-{speed}" if engine == "espeak" else f"flite-{voice}-x{stretch:g}"
            folder = out_dir / "clips" / tag
            folder.mkdir(parents=True, exist_ok=True)
            for word in WORDS:
                rel = f"clips/{tag}/{word}.wav"
                synthesise(engine, voice, speed, word, out_dir / rel, flite_stretch=stretch)
                digest = hashlib.sha256((out_dir / rel).read_bytes()).hexdigest()
                if digest in seen:
                    (out_dir / rel).unlink()  # a byte-identical clip of another voice: keep the first only
                    continue
                seen.add(digest)
                rows.append((rel,) if split == "unlabeled" else (rel, word))
            if not any(folder.iterdir()):
                folder.rmdir()
        write_split_csv(out_dir / f"{split}.csv", ["path"] if split == "unlabeled" else ["path", "label"], rows)
        counts[split] = len(rows)
    (out_dir / "dataset.yaml").write_text(
        "modality: audio\nname: keywords-espeak-to-flite\n"
        "source: espeak-ng voice variants (train/val, split by voice) -> flite voices kal, kal16, awb, rms, slt "
        "(unlabeled at duration_stretch 0.8/0.9/1.1/1.35, test at 1.0/1.2)\n"
        f"labels: [{', '.join(repr(w) for w in WORDS)}]  # quoted: YAML reads bare yes/no/on/off as booleans\n",
        encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/audio_voice_shift"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
