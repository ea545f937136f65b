"""Build the object-detection demo (COCO JSON) from Fashion-MNIST (Debian `dataset-fashion-mnist`), deterministically.

Scenes: 128x128 RGB canvases with a textured background (a smooth two-colour gradient, low-frequency blotches and
pixel noise), on which 1-3 real Fashion-MNIST items of five classes are pasted at random positions and scales
(28 px items drawn 22-52 px, in a random colour, alpha = the item's own grey level), never overlapping. The box of
each object is the tight extent of its pasted pixels (alpha >= ALPHA_ON), so boxes are exact; the same pasting gives
the per-pixel class mask (`compose` returns it; the segmentation builder writes it). Items of train and val come
from disjoint parts of Fashion-MNIST's train file, test's from its test file: no object is in two splits.

Output: `images/<split>/<split>-NNNN.png`, `train.json`, `val.json`, `test.json` (COCO: images, annotations with
`bbox [x, y, w, h]` and `area`, categories 1..5), `dataset.yaml` (`task: object_detection`). A numpy generator per
split seeded by a fixed number: byte-identical output on every machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from tlops.data.build_fashion_mnist import CLASSES as FASHION_CLASSES
from tlops.data.build_fashion_mnist import SOURCE, load

CLASSES = ["t-shirt", "trouser", "sandal", "bag", "ankle-boot"]  # five Fashion-MNIST classes that do not look alike
SIZE = 128
IMAGES = {"train": 320, "val": 64, "test": 128}
OBJECTS = (1, 3)  # objects per image (inclusive)
SCALE = (22, 52)  # drawn size of a 28 px item, px
ALPHA_ON = 0.25  # a pasted pixel belongs to the object (box extent, mask) from this alpha
SEEDS = {"train": 1101, "val": 1102, "test": 1103}
ITEM_RANGES = {"train": (0, 40000), "val": (40000, 60000), "test": (0, 10000)}  # item indices in the source file


def _background(rng: np.random.Generator) -> np.ndarray:
    """(SIZE, SIZE, 3) float in [0, 1]: a gradient between two colours, blotches of a third, pixel noise."""
    a, b, c = rng.uniform(0.0, 1.0, (3, 3))
    t = np.linspace(0.0, 1.0, SIZE)
    angle = rng.uniform(0, 2 * np.pi)
    g = (np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None])
    g = (g - g.min()) / max(1e-6, g.max() - g.min())
    img = a[None, None] * (1 - g[..., None]) + b[None, None] * g[..., None]
    coarse = rng.uniform(0, 1, (8, 8))
    blot = np.kron(coarse, np.ones((SIZE // 8, SIZE // 8)))
    k = np.ones(9) / 9  # smooth the blocks
    blot = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 0, blot)
    blot = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, blot)
    w = 0.35 * blot[..., None]
    img = img * (1 - w) + c[None, None] * w
    img = img + rng.normal(0, 0.04, img.shape)
    return np.clip(img, 0, 1)


def _resize(item: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(item, mode="L").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


def compose(rng: np.random.Generator, items: np.ndarray, labels: np.ndarray, pool: np.ndarray):
    """One scene: (image uint8 (SIZE, SIZE, 3), objects [(class index, [x, y, w, h])], mask uint8 (SIZE, SIZE): 0 for
    background, 1 + class index on an object's pixels). `pool`: the item indices this split may draw."""
    img = _background(rng)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    taken = np.zeros((SIZE, SIZE), bool)
    objects = []
    for _ in range(int(rng.integers(OBJECTS[0], OBJECTS[1] + 1))):
        for _try in range(20):
            i = int(pool[rng.integers(len(pool))])
            s = int(rng.integers(SCALE[0], SCALE[1] + 1))
            x0, y0 = int(rng.integers(0, SIZE - s + 1)), int(rng.integers(0, SIZE - s + 1))
            alpha = _resize(items[i], s)
            on = alpha >= ALPHA_ON
            ys, xs = np.nonzero(on)
            if len(xs) < 12:
                continue
            # the object with a 2 px margin must not touch an earlier one
            by0, by1, bx0, bx1 = y0 + ys.min(), y0 + ys.max() + 1, x0 + xs.min(), x0 + xs.max() + 1
            if taken[max(0, by0 - 2):by1 + 2, max(0, bx0 - 2):bx1 + 2].any():
                continue
            colour = rng.uniform(0, 1, 3)
            if np.abs(colour - img[by0:by1, bx0:bx1].reshape(-1, 3).mean(0)).max() < 0.35:  # visible on its background
                colour = 1.0 - colour
            shade = alpha[..., None] * colour[None, None]
            region = img[y0:y0 + s, x0:x0 + s]
            img[y0:y0 + s, x0:x0 + s] = region * (1 - alpha[..., None]) + shade
            cls = CLASSES.index(FASHION_CLASSES[labels[i]])
            mask[y0:y0 + s, x0:x0 + s][on] = 1 + cls
            taken[by0:by1, bx0:bx1] = True
            objects.append((cls, [int(bx0), int(by0), int(bx1 - bx0), int(by1 - by0)]))
            break
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), objects, mask


def scenes(source: Path = SOURCE):
    """Per split, its scenes in order: (split, index, image, objects, mask)."""
    train_x, train_y, test_x, test_y = load(source)
    wanted = [FASHION_CLASSES.index(c) for c in CLASSES]
    for split in ("train", "val", "test"):
        xs, ys = (test_x, test_y) if split == "test" else (train_x, train_y)
        lo, hi = ITEM_RANGES[split]
        pool = np.array([i for i in range(lo, hi) if ys[i] in wanted])
        rng = np.random.default_rng(SEEDS[split])
        for n in range(IMAGES[split]):
            img, objects, mask = compose(rng, xs, ys, pool)
            yield split, n, img, objects, mask


def coco(images: list[dict], annotations: list[dict]) -> dict:
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}


def build(out_dir: Path, source: Path = SOURCE) -> dict[str, int]:
    from PIL import Image

    out_dir = Path(out_dir)
    files: dict[str, tuple[list, list]] = {s: ([], []) for s in IMAGES}
    for split, n, img, objects, _ in scenes(source):
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        rel = f"images/{split}/{split}-{n:04d}.png"
        Image.fromarray(img, mode="RGB").save(out_dir / rel, optimize=False, compress_level=9)
        images, anns = files[split]
        images.append({"id": n + 1, "file_name": rel, "width": SIZE, "height": SIZE})
        for cls, box in objects:
            anns.append({"id": len(anns) + 1, "image_id": n + 1, "category_id": cls + 1, "bbox": box, "area": box[2] * box[3],
                         "iscrowd": 0})
    counts = {}
    for split, (images, anns) in files.items():
        (out_dir / f"{split}.json").write_text(json.dumps(coco(images, anns), indent=1) + "\n", encoding="utf-8")
        counts[split] = len(anns)
    (out_dir / "dataset.yaml").write_text(
        "modality: image\ntask: object_detection\nname: fashion-detect-demo\nformat: coco\n"
        f"source: Fashion-MNIST items (Debian dataset-fashion-mnist; {', '.join(CLASSES)}) pasted 1-3 per image at 22-52 px "
        f"on {SIZE}x{SIZE} textured canvases, exact boxes\n", encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/image_detection"))) -> None:
    print(f"wrote {out_dir}: objects per split {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
