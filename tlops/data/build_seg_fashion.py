"""Build the semantic-segmentation demo (index-PNG masks) from the detection demo's scenes, deterministically.

The very scenes of `tlops.data.build_detect_fashion` (1-3 Fashion-MNIST items of five classes pasted on textured 128 px
canvases; items of train/val from disjoint parts of Fashion-MNIST's train file, test's from its test file), with the
per-pixel class mask from the same pasting: 0 = background, 1 + class index on the pixels an item covers
(alpha >= 0.25). Output: `images/<split>/<split>-NNNN.png`, `masks/<split>/<split>-NNNN.png` (8-bit grayscale, pixel =
class index), `train.csv`, `val.csv`, `test.csv` (`path,mask`), `dataset.yaml` (`task: semantic_segmentation`,
`labels:` in index order).
"""

from __future__ import annotations

from pathlib import Path

import typer

from tlops.data.build_detect_fashion import CLASSES, SIZE, SOURCE, scenes
from tlops.data.dataset import write_split_csv

LABELS = ["background", *CLASSES]


def build(out_dir: Path, source: Path = SOURCE) -> dict[str, int]:
    from PIL import Image

    out_dir = Path(out_dir)
    rows: dict[str, list] = {}
    for split, n, img, _, mask in scenes(source):
        for kind in ("images", "masks"):
            (out_dir / kind / split).mkdir(parents=True, exist_ok=True)
        rel, rel_mask = f"images/{split}/{split}-{n:04d}.png", f"masks/{split}/{split}-{n:04d}.png"
        Image.fromarray(img, mode="RGB").save(out_dir / rel, optimize=False, compress_level=9)
        Image.fromarray(mask, mode="L").save(out_dir / rel_mask, optimize=False, compress_level=9)
        rows.setdefault(split, []).append((rel, rel_mask))
    for split, r in rows.items():
        write_split_csv(out_dir / f"{split}.csv", ["path", "mask"], r)
    (out_dir / "dataset.yaml").write_text(
        "modality: image\ntask: semantic_segmentation\nname: fashion-segment-demo\n"
        f"source: Fashion-MNIST items (Debian dataset-fashion-mnist) pasted 1-3 per image at 22-52 px on {SIZE}x{SIZE} textured "
        "canvases, the mask from the same pasting (pixel = class index)\n"
        f"labels: [{', '.join(LABELS)}]\n", encoding="utf-8")
    return {s: len(r) for s, r in rows.items()}


def main(out_dir: Path = typer.Argument(Path("data/image_segmentation"))) -> None:
    print(f"wrote {out_dir}: images per split {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
