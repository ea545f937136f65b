"""COCO detection metrics by pycocotools' COCOeval (the reference implementation torchmetrics' MeanAveragePrecision
calls too; importing torchmetrics costs seconds to tens of seconds, as it imports transformers): mAP@[.5:.95], mAP@.5,
mAP@.75, mAR@100 and AP@[.5:.95] per category (COCOeval's precision array for that category, as `summarize` averages
it). Nothing here matches boxes or integrates a precision-recall curve by hand."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np


def _coco(truth: list[dict], n_classes: int):
    from pycocotools.coco import COCO

    images, anns = [], []
    for i, t in enumerate(truth):
        images.append({"id": i + 1})
        for box, label in zip(np.asarray(t["boxes"], dtype=np.float64).reshape(-1, 4), np.asarray(t["labels"]).reshape(-1)):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(label) + 1, "bbox": [float(v) for v in box],
                         "area": float(box[2] * box[3]), "iscrowd": 0})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1} for c in range(n_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def detection_scores(truth: list[dict], predicted: list[dict], n_classes: int | None = None) -> dict:
    """truth: per image {"boxes" COCO xywh, "labels" 0..K-1}; predicted: per image {"boxes", "scores", "labels"}.
    Returns {"map", "map_50", "map_75", "mar_100", "per_class": {index: AP@[.5:.95], nan for a class without objects},
    "pr_50": {index: (recall points, interpolated precision at IoU 0.5)} (COCOeval's 101 recall points; classes with
    objects and detections only)}; nan overall when the truth holds no object."""
    from pycocotools.cocoeval import COCOeval

    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} images of truth and {len(predicted)} of predictions")
    seen = [int(c) for t in truth for c in np.asarray(t["labels"]).reshape(-1)] + \
           [int(c) for p in predicted for c in np.asarray(p["labels"]).reshape(-1)]
    k = n_classes if n_classes is not None else (max(seen) + 1 if seen else 0)
    nan = {"map": math.nan, "map_50": math.nan, "map_75": math.nan, "mar_100": math.nan, "per_class": dict.fromkeys(range(k), math.nan)}
    if not any(len(np.asarray(t["labels"]).reshape(-1)) for t in truth):
        return nan
    gt = _coco(truth, k)
    dets = []
    for i, p in enumerate(predicted):
        for box, score, label in zip(np.asarray(p["boxes"], dtype=np.float64).reshape(-1, 4), np.asarray(p["scores"]).reshape(-1),
                                     np.asarray(p["labels"]).reshape(-1)):
            dets.append({"image_id": i + 1, "category_id": int(label) + 1, "bbox": [float(v) for v in box], "score": float(score)})
    if not dets:  # nothing detected: every AP is 0 (for the classes that have objects)
        present = {int(c) for t in truth for c in np.asarray(t["labels"]).reshape(-1)}
        return {"map": 0.0, "map_50": 0.0, "map_75": 0.0, "mar_100": 0.0,
                "per_class": {c: 0.0 if c in present else math.nan for c in range(k)}}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats  # [map, map_50, map_75, map_s, map_m, map_l, mar_1, mar_10, mar_100, ...]
    precision = ev.eval["precision"]  # [IoU thresholds, recall points, categories, area ranges, max dets]
    per_class, pr_50 = {}, {}
    recall = np.asarray(ev.params.recThrs)
    for c in range(k):
        curve = precision[0, :, c, 0, -1]  # IoU 0.5, all areas, 100 detections
        if (curve > -1).any():
            pr_50[c] = (recall.tolist(), np.where(curve > -1, curve, 0.0).tolist())
        p = precision[:, :, c, 0, -1]
        p = p[p > -1]
        per_class[c] = float(p.mean()) if p.size else math.nan

    def num(v):
        return float(v) if v >= 0 else math.nan  # -1: nothing to score

    return {"map": num(stats[0]), "map_50": num(stats[1]), "map_75": num(stats[2]), "mar_100": num(stats[8]), "per_class": per_class,
            "pr_50": pr_50}
