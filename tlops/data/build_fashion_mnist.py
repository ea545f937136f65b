"""Build the demo image dataset from Fashion-MNIST (Debian `dataset-fashion-mnist`), deterministically.

PNG files + CSVs in the dataset-directory contract: the first N images of each class, in file order,
from the official train file (-> train/val) and test file (-> test).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import typer

from tlops.data.dataset import write_split_csv

SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
PER_CLASS = {"train": 60, "val": 15, "test": 30}


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(source: Path = SOURCE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) of the Debian package's files."""
    if not (source / "train-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"Fashion-MNIST not found in {source}: apt-get install -y dataset-fashion-mnist")
    return (read_idx(source / "train-images-idx3-ubyte.gz"), read_idx(source / "train-labels-idx1-ubyte.gz"),
            read_idx(source / "t10k-images-idx3-ubyte.gz"), read_idx(source / "t10k-labels-idx1-ubyte.gz"))


def _pick(labels: np.ndarray, start: int, n: int) -> list[int]:
    out = []
    for c in range(len(CLASSES)):
        out += np.flatnonzero(labels == c)[start : start + n].tolist()
    return sorted(out)


def build(out_dir: Path, source: Path = SOURCE) -> dict[str, int]:
    from PIL import Image

    train_x, train_y, test_x, test_y = load(source)
    plan = {"train": (train_x, train_y, _pick(train_y, 0, PER_CLASS["train"]), "train"),
            "val": (train_x, train_y, _pick(train_y, PER_CLASS["train"], PER_CLASS["val"]), "train"),
            "test": (test_x, test_y, _pick(test_y, 0, PER_CLASS["test"]), "test")}
    counts = {}
    for split, (xs, ys, idx, origin) in plan.items():
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in idx:
            rel = f"images/{split}/{origin}-{i:05d}.png"
            Image.fromarray(xs[i], mode="L").save(out_dir / rel, optimize=False, compress_level=9)
            rows.append((rel, CLASSES[ys[i]]))
        write_split_csv(out_dir / f"{split}.csv", ["path", "label"], rows)
        counts[split] = len(rows)
    (out_dir / "dataset.yaml").write_text(
        "modality: image\nname: fashion-mnist-demo\n"
        "source: Fashion-MNIST (Debian dataset-fashion-mnist), 28x28 grayscale PNG\n"
        f"labels: [{', '.join(CLASSES)}]\n", encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/image_fashion_mnist"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
