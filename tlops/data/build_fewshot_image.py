"""Build the few-shot image demo, deterministically: Omniglot-style characters rendered from the 21 DejaVu
faces of Debian `fonts-dejavu-core`, with size/rotation/shear/shift augmentation.

A class is one character; splits are by alphabet, as Omniglot's background/evaluation split: meta-train on
Latin, Greek and Cyrillic letters, validate on Georgian, test on Armenian. Characters that look alike
across alphabets (Latin A, Greek Alpha, Cyrillic A; Armenian o and Latin o) are kept once, in the first
alphabet that has them, so no test class is a train class drawn from another code point. Every image is a
32x32 grayscale PNG, dark ink on white; each row picks a face and its jitter from a seeded stream.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import typer

from tlops.data.build_digit_shift import FONT_DIR, FONTS
from tlops.data.dataset import write_split_csv

ALPHABETS = {  # code point ranges per alphabet (upper and lower case) and the split that gets them
    "latin": ("train", [(0x41, 0x5A), (0x61, 0x7A)]),
    "greek": ("train", [(0x391, 0x3A1), (0x3A3, 0x3A9), (0x3B1, 0x3C9)]),
    "cyrillic": ("train", [(0x410, 0x44F)]),
    "georgian": ("val", [(0x10D0, 0x10F0)]),
    "armenian": ("test", [(0x531, 0x556), (0x561, 0x586)]),
}
ROWS = {"train": 20, "val": 20, "test": 30}  # test: 5 support rows carved + 10 shots + 15 queries
CLASSES = {"train": 64, "val": 16, "test": 32}  # of 122 / 33 / 66 distinct characters (hash-picked): a CPU feature pass stays short
SIZE = 32
LOOKALIKE = 0.2  # ink-normalised difference of two reference renderings below which they are one class (A/Alpha: 0, o/O: 1.15)


def _rank(key: str) -> str:
    return hashlib.sha256(f"tlops-fewshot-image-v1:{key}".encode()).hexdigest()


def render(char: str, font_path: Path, rng: np.random.Generator | None = None) -> np.ndarray:
    """One SIZE x SIZE uint8 image, dark ink on white. The glyph sits on a fixed baseline (case stays visible:
    o is smaller than O); `rng` adds the jitter, None gives the reference rendering used to find look-alikes."""
    from PIL import Image, ImageDraw, ImageFont

    big = 4 * SIZE
    size = int(rng.integers(64, 81)) if rng is not None else 72
    canvas = Image.new("L", (big, big), 0)
    ImageDraw.Draw(canvas).text((big / 2, big * 0.68), char, fill=255, font=ImageFont.truetype(str(font_path), size), anchor="ms")
    if rng is not None:
        shear = float(rng.uniform(-0.2, 0.2))
        canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, -shear * big / 2, 0, 1, 0), resample=Image.BILINEAR)
        canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR, center=(big / 2, big / 2))
        dx, dy = (int(rng.integers(-8, 9)) for _ in range(2))
        canvas = canvas.transform(canvas.size, Image.AFFINE, (1, 0, -dx, 0, 1, -dy), resample=Image.BILINEAR)
    small = canvas.resize((SIZE, SIZE), Image.LANCZOS)
    return (255 - np.asarray(small)).astype(np.uint8)


def characters(font_dir: Path = FONT_DIR) -> dict[str, list[str]]:
    """Characters per split, look-alikes of an earlier alphabet's characters dropped."""
    kept: list[np.ndarray] = []
    out: dict[str, list[str]] = {split: [] for split in ROWS}
    faces = [font_dir / FONTS[0], font_dir / "DejaVuSerif.ttf"]  # a look-alike must match in both a sans and a serif face
    for split, ranges in ALPHABETS.values():
        for lo, hi in ranges:
            for code in range(lo, hi + 1):
                char = chr(code)
                ink = 1 - np.concatenate([render(char, f) for f in faces]).astype(np.float32) / 255
                if ink.max() < 0.1:
                    continue  # no ink: not a letter in these faces
                if any(np.abs(ink - k).sum() / max(ink.sum(), k.sum()) < LOOKALIKE for k in kept):
                    continue
                kept.append(ink)
                out[split].append(char)
    return out


def _save(out_dir: Path, rel: str, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels, mode="L").save(out_dir / rel, optimize=False, compress_level=9)


def build(out_dir: Path, font_dir: Path = FONT_DIR) -> dict[str, int]:
    missing = [f for f in FONTS if not (font_dir / f).is_file()]
    if missing:
        raise SystemExit(f"fonts {missing} not found in {font_dir}: apt-get install -y fonts-dejavu-core")
    counts = {}
    for split, chars in characters(font_dir).items():
        picked = sorted(sorted(chars, key=_rank)[: CLASSES[split]])
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for char in picked:
            label = f"U+{ord(char):04X}"  # code points: plain ASCII labels, no case-folding or font surprises
            rng = np.random.default_rng(int(_rank(label)[:8], 16))  # one stream per class: rebuilds are identical
            for i in range(ROWS[split]):
                face = FONTS[int(rng.integers(len(FONTS)))]
                rel = f"images/{split}/{label}-{i:02d}.png"
                _save(out_dir, rel, render(char, font_dir / face, rng))
                rows.append((rel, label))
        write_split_csv(out_dir / f"{split}.csv", ["path", "label"], rows)
        counts[split] = len(rows)
    (out_dir / "dataset.yaml").write_text(
        "modality: image\nname: characters-fewshot\n"
        "source: characters rendered from the 21 DejaVu faces (Debian fonts-dejavu-core) with size/rotation/shear/shift jitter; "
        "label = Unicode code point; meta-train Latin+Greek+Cyrillic, val Georgian, test Armenian (cross-alphabet look-alikes kept once; "
        f"{CLASSES['train']} / {CLASSES['val']} / {CLASSES['test']} classes picked by hash)\n",
        encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/image_fewshot"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
