"""Build the image domain-shift demo, deterministically: digits rendered from fonts (labelled source) ->
scikit-learn's handwritten digits (`load_digits()`, the UCI optdigits test set: unlabelled target + labelled
target test).

Both domains go through the same 8x8 format: optdigits drew each digit on a 32x32 bitmap and counted the
ink in 4x4 blocks (0..16); the font digits are rendered at 32x32 with size/rotation/shift jitter and
averaged over the same blocks, so the only shift left is font vs handwriting. Fonts: the DejaVu faces of
Debian `fonts-dejavu-core` (a fixed list, so another machine's extra fonts change nothing).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import typer

from tlops.data.dataset import write_split_csv

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = [f"DejaVu{face}.ttf" for face in (
    "Sans", "Sans-Bold", "Sans-Oblique", "Sans-BoldOblique", "Sans-ExtraLight", "SansCondensed", "SansCondensed-Bold",
    "SansCondensed-Oblique", "SansCondensed-BoldOblique", "SansMono", "SansMono-Bold", "SansMono-Oblique",
    "SansMono-BoldOblique", "Serif", "Serif-Bold", "Serif-Italic", "Serif-BoldItalic", "SerifCondensed",
    "SerifCondensed-Bold", "SerifCondensed-Italic", "SerifCondensed-BoldItalic")]
CLASSES = [str(d) for d in range(10)]
SOURCE_PER_CLASS = {"train": 60, "val": 20}   # rendered font digits (labelled source)
TARGET_PER_CLASS = {"unlabeled": 80, "test": 60}  # handwritten digits (target), disjoint rows


def render_digit(digit: str, font_path: Path, rng: np.random.Generator) -> np.ndarray:
    """One 8x8 uint8 image (0..255, ink bright): the digit drawn on a 32x32 bitmap with jitter, then ink per 4x4 block."""
    from PIL import Image, ImageDraw, ImageFont

    size = int(rng.integers(20, 31))
    font = ImageFont.truetype(str(font_path), size)
    canvas = Image.new("L", (48, 48), 0)
    ImageDraw.Draw(canvas).text((24, 24), digit, fill=255, font=font, anchor="mm")
    canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR, center=(24, 24))
    box = canvas.getbbox()
    glyph = canvas.crop(box)  # optdigits normalised each digit to its bounding box, then centred it
    scale = 28.0 / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale * rng.uniform(0.8, 1.0))), max(1, round(glyph.height * scale))),
                         Image.BILINEAR)
    bitmap = Image.new("L", (32, 32), 0)
    dx, dy = (int(rng.integers(-2, 3)) for _ in range(2))
    bitmap.paste(glyph, ((32 - glyph.width) // 2 + dx, (32 - glyph.height) // 2 + dy))
    ink = np.asarray(bitmap) >= 128  # optdigits' bitmaps were binary: count inked pixels per 4x4 block (0..16)
    counts = ink.reshape(8, 4, 8, 4).sum(axis=(1, 3))
    return np.round(counts * (255 / 16)).astype(np.uint8)


def _rank(key: str) -> str:
    return hashlib.sha256(f"tlops-digit-shift-v1:{key}".encode()).hexdigest()


def _save(out_dir: Path, rel: str, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels, mode="L").save(out_dir / rel, optimize=False, compress_level=9)


def build(out_dir: Path, font_dir: Path = FONT_DIR) -> dict[str, int]:
    from sklearn.datasets import load_digits

    missing = [f for f in FONTS if not (font_dir / f).is_file()]
    if missing:
        raise SystemExit(f"fonts {missing} not found in {font_dir}: apt-get install -y fonts-dejavu-core")
    counts = {}
    for split, n in SOURCE_PER_CLASS.items():
        rng = np.random.default_rng(int(_rank(split)[:8], 16))  # one stream per split: rebuilds are identical
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for d in CLASSES:
            for i in range(n):
                font = FONTS[int(rng.integers(len(FONTS)))]
                rel = f"images/{split}/font-{d}-{i:03d}.png"
                _save(out_dir, rel, render_digit(d, font_dir / font, rng))
                rows.append((rel, d))
        write_split_csv(out_dir / f"{split}.csv", ["path", "label"], rows)
        counts[split] = len(rows)
    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 ink counts -> 0..255, nothing else changed
    seen: set[bytes] = set()
    by_class: dict[str, list[int]] = {c: [] for c in CLASSES}
    for i in sorted(range(len(pixels)), key=lambda i: _rank(f"digits:{i}")):
        if pixels[i].tobytes() in seen:
            continue  # identical images would leak between the unlabelled and the test split
        seen.add(pixels[i].tobytes())
        by_class[str(digits.target[i])].append(i)
    start = 0
    for split, n in TARGET_PER_CLASS.items():
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        picked = sorted(i for c in CLASSES for i in by_class[c][start : start + n])
        rows = []
        for i in picked:
            rel = f"images/{split}/digits-{i:04d}.png"
            _save(out_dir, rel, pixels[i])
            rows.append((rel,) if split == "unlabeled" else (rel, str(digits.target[i])))
        write_split_csv(out_dir / f"{split}.csv", ["path"] if split == "unlabeled" else ["path", "label"], rows)
        counts[split] = len(rows)
        start += n
    (out_dir / "dataset.yaml").write_text(
        "modality: image\nname: digits-fonts-to-handwritten\n"
        "source: digits rendered from the DejaVu fonts (train/val) -> scikit-learn load_digits handwritten digits "
        "(unlabeled/test); 8x8 grayscale PNG, optdigits' 4x4 block counts\n"
        f"labels: [{', '.join(repr(c) for c in CLASSES)}]  # quoted: YAML would read bare digits as numbers\n", encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/image_digit_shift"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
