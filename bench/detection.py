"""Object detection on the demo set (data/image_detection: Fashion-MNIST items on textured canvases, COCO JSON): test
mAP@[.5:.95], mAP@.5 and per-class AP (torchmetrics MeanAveragePrecision, pycocotools) of torchvision FCOS + FPN on
EfficientNet-Lite0's multi-scale maps,
- frozen: the ImageNet backbone frozen, FPN + FCOS head trained (the linear-probe analogue),
- finetune: the same with the backbone's top groups trained too (`--trainable`, default 6: blocks 11-15 (stride 32) + conv head),
- and both again from the same architecture with random weights (the control: what the detector finds without
  pretraining, at the same budget).
The epoch with the best val mAP is kept; seconds per epoch and predict throughput (images/s) are recorded.

    .venv/bin/python -m bench.detection                          # all four, one after the other
    .venv/bin/python -m bench.detection --methods frozen finetune --out detection_pretrained    # or two processes side
    .venv/bin/python -m bench.detection --methods random_frozen random_finetune --out detection_random   # by side
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.common import REPO, save
from tlops.detection.files import read_coco_dataset
from tlops.detection.metrics import detection_scores
from tlops.detection.model import Detector, DetectorConfig, Sample


def samples(images, categories) -> list[Sample]:
    index = {cid: i for i, (cid, _) in enumerate(categories)}
    return [Sample(im.path, list(im.boxes), [index[c] for c in im.categories]) for im in images]


def run(method: str, train, val, test, classes, args) -> dict:
    from efficientnet_lite_pytorch import EfficientNet

    from tlops.backbones.efficientnet_lite import EfficientNetLiteBackbone

    backbone = EfficientNetLiteBackbone(image_size=args.image_size)
    if method.startswith("random"):
        torch.manual_seed(0)
        backbone._model = EfficientNet.from_name("efficientnet-lite0", image_size=args.image_size).eval()  # same architecture
    tuned = method.endswith("finetune")
    cfg = DetectorConfig(image_size=args.image_size, epochs=args.epochs_finetune if tuned else args.epochs_frozen,
                         batch_size=8, head_lr=args.head_lr, backbone_lr=args.backbone_lr, trainable=args.trainable if tuned else 0)
    det = Detector(backbone, classes, cfg)
    t0 = time.perf_counter()
    history = det.fit(train, val, log=lambda r: print(method, r, flush=True))
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    pred = det.predict_paths([s.path for s in test], score_threshold=0.0)
    predict_s = time.perf_counter() - t1
    truth = [{"boxes": s.boxes, "labels": s.labels} for s in test]
    scores = detection_scores(truth, pred, len(classes))
    if args.picture:
        picture(test[:8], pred[:8], classes, Path(args.picture), f"{method}: test mAP@.5 {scores['map_50']:.3f}")
    best = max(history, key=lambda r: r["val_map"])
    return {"test_map": scores["map"], "test_map_50": scores["map_50"], "test_map_75": scores["map_75"], "test_mar_100": scores["mar_100"],
            "test_ap_per_class": {classes[c]: v for c, v in scores["per_class"].items()}, "best_epoch": best["epoch"],
            "val_map": best["val_map"], "epochs": len(history), "trainable": cfg.trainable, "train_seconds": round(train_s, 1),
            "seconds_per_epoch": [round(r["seconds"], 1) for r in history], "predict_images_per_second": round(len(test) / predict_s, 1),
            "history": history}


def picture(test, pred, classes, path: Path, title: str, threshold: float = 0.3) -> None:
    """The first test images with their predicted boxes (score >= threshold; class and score written above each) and
    the true boxes in thin white, 2 rows of 4, each image shown at 2x."""
    from PIL import Image, ImageDraw

    colours = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]
    tiles = []
    for s, p in zip(test, pred):
        im = Image.open(s.path).convert("RGB").resize((256, 256), Image.NEAREST)
        d = ImageDraw.Draw(im)
        for x, y, w, h in s.boxes:
            d.rectangle([2 * x, 2 * y, 2 * (x + w) - 1, 2 * (y + h) - 1], outline=(255, 255, 255), width=1)
        for (x, y, w, h), sc, c in zip(p["boxes"], p["scores"], p["labels"]):
            if sc >= threshold:
                d.rectangle([2 * x, 2 * y, 2 * (x + w) - 1, 2 * (y + h) - 1], outline=colours[int(c) % 6], width=2)
                d.text((2 * x + 2, max(0, 2 * y - 11)), f"{classes[int(c)]} {sc:.2f}", fill=colours[int(c) % 6])
        tiles.append(im)
    sheet = Image.new("RGB", (4 * 256 + 30, 2 * 256 + 40), (255, 255, 255))
    ImageDraw.Draw(sheet).text((6, 6), title + " (thin white: true boxes)", fill=(0, 0, 0))
    for i, t in enumerate(tiles):
        sheet.paste(t, (6 + (i % 4) * 262, 30 + (i // 4) * 262))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=REPO / "data" / "image_detection")
    p.add_argument("--methods", nargs="+", default=["frozen", "finetune", "random_frozen", "random_finetune"])
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--epochs-frozen", type=int, default=6)
    p.add_argument("--epochs-finetune", type=int, default=4)
    p.add_argument("--trainable", default="6")
    p.add_argument("--head-lr", type=float, default=3e-3)
    p.add_argument("--backbone-lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--picture", default="", help="write the first 8 test images with their predicted boxes here (PNG)")
    p.add_argument("--out", default="detection")
    args = p.parse_args()
    args.trainable = args.trainable if args.trainable == "all" else int(args.trainable)
    torch.set_num_threads(args.threads)  # 1: on a shared 2-core machine, two threads spin-wait on each other
    splits, categories, _ = read_coco_dataset(args.data)
    classes = [name for _, name in categories]
    train, val, test = (samples(splits[s], categories) for s in ("train", "val", "test"))
    results = {"data": str(args.data), "images": {k: len(v) for k, v in splits.items()}, "classes": classes,
               "settings": {k: v for k, v in vars(args).items() if k not in ("data", "methods", "out")}}
    for m in args.methods:
        results[m] = run(m, train, val, test, classes, args)
        print(m, {k: results[m][k] for k in ("test_map", "test_map_50", "train_seconds")}, flush=True)
        save(args.out, results)


if __name__ == "__main__":
    main()
