"""Semantic segmentation on the demo set (data/image_segmentation: the detection demo's scenes with their index masks):
test mIoU, pixel accuracy and IoU per class of torchvision's LR-ASPP head on EfficientNet-Lite0's stride-8/32 maps,
- frozen: the ImageNet backbone frozen, the head trained,
- finetune: the backbone's top groups trained too (`--trainable`, default 6: blocks 11-15 + conv head),
- and both from the same architecture with random weights (the control).
The epoch with the best val mIoU is kept; seconds per epoch and predict throughput (images/s) are recorded.

    .venv/bin/python -m bench.segmentation
    .venv/bin/python -m bench.segmentation --methods frozen random_frozen
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.common import REPO, save
from tlops.data.dataset import _read_meta
from tlops.segmentation.files import read_segmentation_dataset
from tlops.segmentation.metrics import segmentation_scores
from tlops.segmentation.model import Segmenter, SegmenterConfig


def run(method: str, pairs: dict, classes: list[str], args) -> dict:
    import numpy as np
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    from tlops.backbones.efficientnet_lite import EfficientNetLiteBackbone

    backbone = EfficientNetLiteBackbone(image_size=args.image_size)
    if method.startswith("random"):
        torch.manual_seed(0)
        backbone._model = EfficientNet.from_name("efficientnet-lite0", image_size=args.image_size).eval()  # same architecture
    tuned = method.endswith("finetune")
    cfg = SegmenterConfig(image_size=args.image_size, epochs=args.epochs_finetune if tuned else args.epochs_frozen, batch_size=8,
                          head_lr=args.head_lr, backbone_lr=args.backbone_lr, trainable=args.trainable if tuned else 0)
    seg = Segmenter(backbone, classes, cfg)
    t0 = time.perf_counter()
    history = seg.fit(pairs["train"], pairs["val"], log=lambda r: print(method, r, flush=True))
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    pred = seg.predict_paths([a for a, _ in pairs["test"]])
    predict_s = time.perf_counter() - t1
    truth = [np.asarray(Image.open(m), dtype=np.uint8) for _, m in pairs["test"]]
    s = segmentation_scores(truth, pred, len(classes))
    if args.picture:
        picture(pairs["test"][:8], pred[:8], Path(args.picture), f"{method}: test mIoU {s['miou']:.3f}")
    best = max(history, key=lambda r: r["val_miou"])
    return {"test_miou": s["miou"], "test_pixel_accuracy": s["pixel_accuracy"], "test_iou_per_class": {classes[c]: v for c, v in s["per_class"].items()},
            "best_epoch": best["epoch"], "val_miou": best["val_miou"], "epochs": len(history), "trainable": cfg.trainable,
            "train_seconds": round(train_s, 1), "seconds_per_epoch": [round(r["seconds"], 1) for r in history],
            "predict_images_per_second": round(len(pred) / predict_s, 1), "history": history}


PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]


def picture(pairs, pred, path: Path, title: str) -> None:
    """Per test image: the image, the true mask and the predicted one side by side (class colours), 4 rows of 2 triples."""
    import numpy as np
    from PIL import Image, ImageDraw

    def colour(m):
        return Image.fromarray(np.array(PALETTE, np.uint8)[np.minimum(m, len(PALETTE) - 1)], mode="RGB").resize((128, 128), Image.NEAREST)

    sheet = Image.new("RGB", (2 * 3 * 130 + 20, 4 * 130 + 30), (255, 255, 255))
    ImageDraw.Draw(sheet).text((6, 6), title + " (image | true mask | predicted mask)", fill=(0, 0, 0))
    for i, ((img, mask), p) in enumerate(zip(pairs, pred)):
        x0, y0 = 6 + (i % 2) * (3 * 130 + 8), 24 + (i // 2) * 130
        sheet.paste(Image.open(img).convert("RGB").resize((128, 128)), (x0, y0))
        sheet.paste(colour(np.asarray(Image.open(mask))), (x0 + 130, y0))
        sheet.paste(colour(p), (x0 + 260, y0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=REPO / "data" / "image_segmentation")
    p.add_argument("--methods", nargs="+", default=["frozen", "random_frozen", "finetune", "random_finetune"])
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--epochs-frozen", type=int, default=15)
    p.add_argument("--epochs-finetune", type=int, default=4)
    p.add_argument("--trainable", default="6")
    p.add_argument("--head-lr", type=float, default=3e-3)
    p.add_argument("--backbone-lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--picture", default="", help="write the first 8 test images with true and predicted masks here (PNG)")
    p.add_argument("--out", default="segmentation")
    args = p.parse_args()
    args.trainable = args.trainable if args.trainable == "all" else int(args.trainable)
    torch.set_num_threads(args.threads)
    splits, classes, _ = read_segmentation_dataset(args.data, _read_meta(args.data / "dataset.yaml"))
    pairs = {s: [(str(args.data / r.path), str(args.data / r.mask)) for r in rows] for s, rows in splits.items()}
    results = {"data": str(args.data), "images": {k: len(v) for k, v in splits.items()}, "classes": classes,
               "settings": {k: v for k, v in vars(args).items() if k not in ("data", "methods", "out")}}
    for m in args.methods:
        results[m] = run(m, pairs, classes, args)
        print(m, {k: results[m][k] for k in ("test_miou", "test_pixel_accuracy", "train_seconds")}, flush=True)
        save(args.out, results)


if __name__ == "__main__":
    main()
