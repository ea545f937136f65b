"""Build the few-shot regression demo from Fashion-MNIST (Debian `dataset-fashion-mnist`), deterministically.

A task is one item: its rows are that item turned by known angles, drawn uniformly from [-45, 45] degrees by
sha256; target = the signed angle in degrees (positive: counter-clockwise). Which way an item was turned is a
handedness cue that ImageNet features mostly ignore (a ridge probe pooled over items reaches R2 0.17 on the
signed angle, bench/RESULTS.md), but for one asymmetric item a few labelled views pin down how *its* features
move with the angle: the pose-estimation-per-object setting of the meta-learning literature (Yin et al. 2020's
Pascal3D pose regression), on items a CPU embeds in seconds. The dataset's `group: item` column names each row's
task; train, val and test hold different items (drawn from the 700th item of each class on: none of them the
classification or regression demos'), so test tasks are new objects, as few-shot evaluation needs.

Items are padded to 40 x 40 on Fashion-MNIST's black background before turning (as the regression demo), so
no corner is cut and no frame edge shows the angle. A draw that renders an image the item already has (the same
angle twice) is skipped, so no view is another's copy (a support row copied in test would leak). Byte-identical on
every rebuild (checked via data.dvc).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import typer

from tlops.data.build_fashion_mnist import CLASSES, SOURCE, load
from tlops.data.build_regression_image import rotated
from tlops.data.dataset import write_split_csv

ITEMS = {"train": 96, "val": 16, "test": 32}  # tasks per split, balanced over the 10 classes as far as they divide
VIEWS = {"train": 12, "val": 12, "test": 20}  # rows per task; test: 5 carved as the registered support set + 15
MAX_ANGLE = 45.0
FIRST = 700  # items from the 700th of each class on: the other demos use the first ~600


def angle_of(item: str, view: int) -> float:
    u = int(hashlib.sha256(f"tlops-fewshot-regression-image-v1:{item}:{view}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return round(-MAX_ANGLE + 2 * MAX_ANGLE * u, 1)


def _items(labels: np.ndarray, skip: int, n: int) -> list[int]:
    """n item indices, round-robin over the classes (class c's items from FIRST + skip on)."""
    per_class = [np.flatnonzero(labels == c)[FIRST + skip:] for c in range(len(CLASSES))]
    return sorted(int(per_class[k % len(CLASSES)][k // len(CLASSES)]) for k in range(n))


def build(out_dir: Path, source: Path = SOURCE) -> dict[str, int]:
    train_x, train_y, test_x, test_y = load(source)
    plan = {"train": (train_x, _items(train_y, 0, ITEMS["train"]), "train"),
            "val": (train_x, _items(train_y, 20, ITEMS["val"]), "train"),  # 20 on: past train's 10 per class
            "test": (test_x, _items(test_y, 0, ITEMS["test"]), "test")}
    counts = {}
    for split, (xs, idx, origin) in plan.items():
        rows = []
        for i in idx:
            item = f"{origin}-{i:05d}"
            (out_dir / "images" / item).mkdir(parents=True, exist_ok=True)
            seen: set[bytes] = set()
            draw = 0
            while len(seen) < VIEWS[split]:  # two draws can give the same angle (0.1 degree steps): keep distinct images only
                angle, draw = angle_of(item, draw), draw + 1
                image = rotated(xs[i], angle)
                if image.tobytes() in seen:
                    continue
                rel = f"images/{item}/{len(seen):02d}.png"
                seen.add(image.tobytes())
                image.save(out_dir / rel, optimize=False, compress_level=9)
                rows.append((rel, item, f"{angle:.1f}"))
        write_split_csv(out_dir / f"{split}.csv", ["path", "item", "angle"], rows)
        counts[split] = len(rows)
    (out_dir / "dataset.yaml").write_text(
        "modality: image\nname: fashion-mnist-item-pose\ntask: regression\ntarget: angle\ngroup: item\n"
        f"bounds: [{-MAX_ANGLE:g}, {MAX_ANGLE:g}]\n"
        "source: Fashion-MNIST (Debian dataset-fashion-mnist) items padded to 40x40, each turned by known angles uniform in "
        "[-45, 45] degrees; target = the signed angle; a task (group) = one item, different items in train / val / test\n",
        encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/image_fewshot_regression"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
