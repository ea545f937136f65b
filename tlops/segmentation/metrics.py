"""Semantic-segmentation metrics from the pixel confusion matrix (ignore label 255 left out): IoU per class
(TP / (TP + FP + FN)), mIoU over the classes present in truth or prediction, pixel accuracy."""

from __future__ import annotations

import math

import numpy as np

IGNORE = 255


def confusion(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows = true class, columns = predicted; pixels whose truth is IGNORE are left out."""
    t = np.asarray(truth).reshape(-1).astype(np.int64)
    p = np.asarray(predicted).reshape(-1).astype(np.int64)
    keep = t != IGNORE
    return np.bincount(t[keep] * n_classes + p[keep], minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def segmentation_scores(truths: list, predictions: list, n_classes: int) -> dict:
    """truths, predictions: per image an (H, W) class-index array. {"miou", "pixel_accuracy", "per_class": {index: IoU or
    nan (the class is in neither truth nor prediction)}}."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    for t, p in zip(truths, predictions, strict=True):
        if np.shape(t) != np.shape(p):
            raise ValueError(f"a predicted mask of shape {np.shape(p)} for a true one of {np.shape(t)}")
        cm += confusion(t, p, n_classes)
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = {c: float(tp[c] / union[c]) if union[c] else math.nan for c in range(n_classes)}
    present = [v for v in iou.values() if not math.isnan(v)]
    total = cm.sum()
    return {"miou": float(np.mean(present)) if present else math.nan, "pixel_accuracy": float(tp.sum() / total) if total else math.nan,
            "per_class": iou}
