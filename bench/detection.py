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

Throughput (`--throughput`, for a GPU machine; runs on the CPU too): images per second of the detector's training
step (the shared loop's, fine-tuning the top `--trainable` groups; 0 = frozen backbone, its maps computed once and not
timed) and of predict, on `--device` (auto / cuda / cpu) at `--precision` (fp32, or bf16 autocast as the loop runs it)
with the backbone's weights in channels-last memory when `--channels-last`; `--backbone` takes any backbone name with
feature maps (packaged:efficientnet-lite0, timm:/torchvision: models with `@weights`). One warm-up epoch, then the
timed one:

    .venv/bin/python -m bench.detection --throughput --device cuda --precision bf16 --channels-last --batch-size 32 \
        --threads 8 --out detection_throughput_gpu
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from pathlib import Path

import torch

from bench.common import REPO, save
from tlops.detection.files import read_coco_dataset
from tlops.detection.metrics import detection_scores
from tlops.detection.model import Detector, DetectorConfig, Sample, load_rgb


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


def throughput(train, val, test, classes, args) -> dict:
    """Images/s of the training step (epoch 2 of 2: the first warms up kernels and caches) and of predict (after one
    warm-up batch) on the chosen device, precision and memory format."""
    from tlops.backbones import load_backbone
    from tlops.training.loop import resolve_device

    device, amp = resolve_device(args.device, args.precision)  # refuses cuda where none is visible
    backbone = load_backbone(args.backbone, image_size=args.image_size)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    backbone.model.to(memory_format=fmt)
    cfg = DetectorConfig(image_size=args.image_size, epochs=2, batch_size=args.batch_size, head_lr=args.head_lr,
                         backbone_lr=args.backbone_lr, trainable=args.trainable)
    det = Detector(backbone, classes, cfg)
    opts = det.loop_options()
    opts.device, opts.precision = args.device, args.precision
    n = args.train_images or len(train)
    subset = (train * (n // len(train) + 1))[:n]
    history = det.fit(subset, val[:4], opts=opts)
    train_ips = n / history[-1]["epoch_train_seconds"]
    det.net.to(device)
    backbone.model.to(memory_format=fmt)
    images = [load_rgb(s.path) for s in test[: args.train_images or len(test)]]
    ctx = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with ctx:
        det.predict_images(images[: args.batch_size], score_threshold=0.3, batch_size=args.batch_size)  # warm-up
        t = time.perf_counter()
        det.predict_images(images, score_threshold=0.3, batch_size=args.batch_size)  # numpy out: synchronised
        predict_s = time.perf_counter() - t
    det.net.to("cpu")
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
            "precision": "bf16" if amp is not None else "fp32", "channels_last": args.channels_last, "backbone": args.backbone,
            "trainable": args.trainable, "batch_size": args.batch_size, "image_size": args.image_size, "train_images": n,
            "train_images_per_second": round(train_ips, 1), "train_epoch_seconds": [round(r["epoch_train_seconds"], 2) for r in history],
            "predict_images": len(images), "predict_images_per_second": round(len(images) / predict_s, 1)}


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
    p.add_argument("--throughput", action="store_true", help="images/s of the train step and of predict instead of the methods")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true", help="the backbone's weights (so its maps) in channels-last memory")
    p.add_argument("--backbone", default="packaged:efficientnet-lite0", help="throughput: any backbone with feature maps")
    p.add_argument("--batch-size", type=int, default=8, help="throughput: images per train step and per predict batch")
    p.add_argument("--train-images", type=int, default=0, help="throughput: images per timed epoch and predicted (0: the train / test split)")
    args = p.parse_args()
    args.trainable = args.trainable if args.trainable == "all" else int(args.trainable)
    torch.set_num_threads(args.threads)  # 1: on a shared 2-core machine, two threads spin-wait on each other
    splits, categories, _ = read_coco_dataset(args.data)
    classes = [name for _, name in categories]
    train, val, test = (samples(splits[s], categories) for s in ("train", "val", "test"))
    results = {"data": str(args.data), "images": {k: len(v) for k, v in splits.items()}, "classes": classes,
               "settings": {k: v for k, v in vars(args).items() if k not in ("data", "methods", "out")}}
    if args.throughput:
        results["throughput"] = throughput(train, val, test, classes, args)
        save(args.out, results)
        return
    for m in args.methods:
        results[m] = run(m, train, val, test, classes, args)
        print(m, {k: results[m][k] for k in ("test_map", "test_map_50", "train_seconds")}, flush=True)
        save(args.out, results)


if __name__ == "__main__":
    main()
