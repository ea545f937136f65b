"""Build the image regression demo from Fashion-MNIST (Debian `dataset-fashion-mnist`), deterministically.

Image = a Fashion-MNIST item turned by a known angle, drawn uniformly from [-45, 45] degrees by sha256 of the
item's file index; target = its tilt, the angle's size in degrees (0 = upright, 45 = half-way to lying on its
side), whichever way it was turned.

Why that range: every class has one upright pose the tilt is measured from, and within 45 degrees a tilted
item is never closer to another upright pose. Beyond it the task stops being well-posed: near-square items
(bags, pullovers, t-shirts) turned by 90 degrees look like a plausible upright item of another shape, and past
90 the angle wraps (a bag upside down is nearly a bag). Why the size and not the signed angle: most items are
mirror-symmetric, so an item turned by +a is the mirror image of it turned by -a; the direction is then a
handedness cue, which ImageNet-pretrained features are trained to ignore (flip augmentation). Measured: a
ridge probe on EfficientNet-Lite0 features predicts the signed angle at R2 0.17 and the tilt at R2 0.78
(bench/RESULTS.md). Each item is padded to 40 x 40 on Fashion-MNIST's black background before turning
(28 * sqrt(2) < 40), so no corner is cut off and no frame edge shows the angle: only the item's own pose does.

Balanced picks per class, in file order: train/val from the official train file, test from the test file
(none of them the classification demo's items). Output is byte-identical on every rebuild (PIL's bilinear
rotation is deterministic; checked via data.dvc).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import typer

from tlops.data.build_fashion_mnist import CLASSES, SOURCE, load
from tlops.data.dataset import write_split_csv

PER_CLASS = {"train": 60, "val": 15, "test": 30}
MAX_ANGLE = 45.0
SIDE = 40  # padded canvas: holds a 28 x 28 item at any angle


def angle_of(origin: str, index: int) -> float:
    """The item's rotation in degrees (positive: counter-clockwise), uniform in [-MAX_ANGLE, MAX_ANGLE], rounded to 0.1."""
    u = int(hashlib.sha256(f"tlops-regression-image-v1:{origin}:{index}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return round(-MAX_ANGLE + 2 * MAX_ANGLE * u, 1)


def rotated(item: np.ndarray, angle: float):
    from PIL import Image

    canvas = np.zeros((SIDE, SIDE), dtype=np.uint8)
    off = (SIDE - item.shape[0]) // 2
    canvas[off : off + item.shape[0], off : off + item.shape[1]] = item
    return Image.fromarray(canvas, mode="L").rotate(angle, resample=Image.BILINEAR, fillcolor=0)


def _pick(labels: np.ndarray, start: int, n: int) -> list[int]:
    # from the 500th item of each class on: not the classification demo's items (the first of each class)
    return sorted(i for c in range(len(CLASSES)) for i in np.flatnonzero(labels == c)[500 + start : 500 + start + n].tolist())


def build(out_dir: Path, source: Path = SOURCE) -> dict[str, int]:
    train_x, train_y, test_x, test_y = load(source)
    plan = {"train": (train_x, _pick(train_y, 0, PER_CLASS["train"]), "train"),
            "val": (train_x, _pick(train_y, PER_CLASS["train"], PER_CLASS["val"]), "train"),
            "test": (test_x, _pick(test_y, 0, PER_CLASS["test"]), "test")}
    counts = {}
    for split, (xs, idx, origin) in plan.items():
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in idx:
            rel, angle = f"images/{split}/{origin}-{i:05d}.png", angle_of(origin, i)
            rotated(xs[i], angle).save(out_dir / rel, optimize=False, compress_level=9)
            rows.append((rel, f"{abs(angle):.1f}"))
        write_split_csv(out_dir / f"{split}.csv", ["path", "tilt"], rows)
        counts[split] = len(rows)
    (out_dir / "dataset.yaml").write_text(
        "modality: image\nname: fashion-mnist-tilt\ntask: regression\ntarget: tilt\n"
        f"bounds: [0, {MAX_ANGLE:g}]\n"
        "source: Fashion-MNIST (Debian dataset-fashion-mnist) items padded to 40x40 and turned by a known angle, "
        "uniform in [-45, 45] degrees; target = tilt = the angle's size in degrees (0 upright)\n", encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/image_regression"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
