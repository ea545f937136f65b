"""COCO detection metrics by torchmetrics' MeanAveragePrecision (pycocotools backend): mAP@[.5:.95], mAP@.5, mAP@.75,
mAR@100 and AP@[.5:.95] per category. Nothing here computes an AP by hand."""

from __future__ import annotations

import math

import numpy as np


def _tensors(d: dict, scores: bool) -> dict:
    import torch

    out = {"boxes": torch.as_tensor(np.asarray(d["boxes"], dtype=np.float32).reshape(-1, 4)),
           "labels": torch.as_tensor(np.asarray(d["labels"], dtype=np.int64).reshape(-1))}
    if scores:
        out["scores"] = torch.as_tensor(np.asarray(d["scores"], dtype=np.float32).reshape(-1))
    return out


def detection_scores(truth: list[dict], predicted: list[dict], n_classes: int | None = None) -> dict:
    """truth: per image {"boxes" COCO xywh, "labels"}; predicted: per image {"boxes", "scores", "labels"}. Returns
    {"map", "map_50", "map_75", "mar_100", "per_class": {index: AP or nan (no object of it in truth)}}."""
    from torchmetrics.detection import MeanAveragePrecision

    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} images of truth and {len(predicted)} of predictions")
    metric = MeanAveragePrecision(box_format="xywh", iou_type="bbox", class_metrics=True, backend="pycocotools")
    metric.update([_tensors(p, True) for p in predicted], [_tensors(t, False) for t in truth])
    r = metric.compute()
    per_class = {}
    classes = r["classes"].reshape(-1).tolist()
    values = r["map_per_class"].reshape(-1).tolist()
    for c, v in zip(classes, values):
        per_class[int(c)] = float(v) if v >= 0 else math.nan
    if n_classes is not None:
        per_class = {c: per_class.get(c, math.nan) for c in range(n_classes)}

    def num(k):
        v = float(r[k])
        return v if v >= 0 else math.nan  # -1: nothing to score

    return {"map": num("map"), "map_50": num("map_50"), "map_75": num("map_75"), "mar_100": num("mar_100"), "per_class": per_class}
