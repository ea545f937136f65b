"""Build the demo spoken-keyword dataset: 10 Speech-Commands words synthesised by two real speech
engines (Debian `espeak-ng` voice variants and `flite` voices recorded from real speakers).

Splits are by voice, so a test speaker is never heard in training. Both engines are deterministic,
so a rebuild gives byte-identical WAV files (checked through the DVC md5).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import typer

from tlops.data.dataset import write_split_csv

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
# (engine, voice, speed in words/min for espeak-ng); each voice belongs to one split
VOICES = {
    "train": [("espeak", v, s) for v, s in [("en+m1", 150), ("en+m3", 175), ("en+f2", 160), ("en+f4", 140), ("en-us+m2", 165),
                                            ("en-us+f3", 150), ("en-gb-scotland+m4", 155), ("en+m7", 170), ("en-us+f1", 180), ("en+croak", 150)]]
    + [("flite", "kal16", 0), ("flite", "awb", 0)],
    "val": [("espeak", "en+m5", 160), ("espeak", "en-us+f5", 150), ("flite", "rms", 0)],
    "test": [("espeak", "en+m2", 165), ("espeak", "en-us+f2", 145), ("flite", "slt", 0)],
}


def synthesise(engine: str, voice: str, speed: int | None, word: str, out: Path, flite_stretch: float | None = None,
               pitch: int | None = None) -> None:
    """One WAV; `flite_stretch` slows (>1) or speeds up (<1) a flite voice (its `duration_stretch` feature); espeak-ng
    `speed` (-s, words per minute) and `pitch` (-p, 0..99): None keeps the voice's own."""
    if engine == "espeak":
        cmd = ["espeak-ng", "-v", voice, *(["-s", str(speed)] if speed is not None else []),
               *(["-p", str(pitch)] if pitch is not None else []), "-w", str(out), word]
    else:
        stretch = ["--setf", f"duration_stretch={flite_stretch}"] if flite_stretch is not None else []
        cmd = ["flite", "-voice", voice, *stretch, "-t", word, "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def require_engines() -> None:
    for tool in ("espeak-ng", "flite"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install -y espeak-ng flite")


def build(out_dir: Path) -> dict[str, int]:
    require_engines()
    counts = {}
    for split, voices in VOICES.items():
        rows = []
        for engine, voice, speed in voices:
            tag = f"{engine}-{voice.replace('+', '_')}-{speed}" if speed else f"{engine}-{voice}"
            folder = out_dir / "clips" / tag
            folder.mkdir(parents=True, exist_ok=True)
            for word in WORDS:
                rel = f"clips/{tag}/{word}.wav"
                synthesise(engine, voice, speed, word, out_dir / rel)
                rows.append((rel, word))
        write_split_csv(out_dir / f"{split}.csv", ["path", "label"], rows)
        counts[split] = len(rows)
    (out_dir / "dataset.yaml").write_text(
        "modality: audio\nname: spoken-keywords-demo\n"
        "source: espeak-ng voice variants + flite voices (kal16, awb, rms, slt); split by voice\n"
        f"labels: [{', '.join(repr(w) for w in WORDS)}]  # quoted: YAML reads bare yes/no/on/off as booleans\n",
        encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/audio_keywords"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
