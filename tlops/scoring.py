"""Scoring a registered model on this run's test split (the champion side of the promotion gate).

Tracking-agnostic: the caller hands in `fetch(relpath) -> local path` for files of the model package
(the MLflow task downloads them); only what is needed is fetched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from tlops.data import Dataset
from tlops.modules.heads import ProbeHead, predict_outputs
from tlops.package import META_FILE, Predictor
from tlops.records import ChampionScore, FeatureSet
from tlops.task_types import task_type


def score_package(version: str, fetch: Callable[[str], Path], features: FeatureSet | None, dataset: Dataset, metric: str) -> ChampionScore:
    """`metric` of a packaged model on `dataset`'s test split. When `features` (this run's cached features of
    that dataset) come from the package's backbone identity, its head runs on them (no backbone download, no
    forward passes); otherwise the package runs on the raw test inputs."""
    meta = json.loads(fetch(META_FILE).read_text())
    owned = task_type(dataset.task).score_package(meta, fetch, features, dataset)  # a task type that scores its own outputs
    if owned is not None:
        y_true, pred, how = owned
        return ChampionScore(version=version, metric=metric, value=task_type(dataset.task).metrics(y_true, pred, dataset.labels)[metric],
                             scored_via=how)
    if features is not None and meta["backbone"]["identity"] == features.identity:
        head = ProbeHead.load(meta["head"], fetch("head.safetensors"))
        x, _ = features.arrays("test")
        pred = predict_outputs(head, x, meta["labels"])
        how = "champion head on this run's cached test features (same backbone identity)"
    else:
        pred = Predictor(fetch("")).predict(dataset.inputs("test"))
        how = "champion package on raw test inputs (different backbone)"
    task = task_type(dataset.task)
    y_true = task.dataset_truth(dataset, "test")
    # a few-shot dataset's label list spans every split; its models are scored on test's (novel) classes
    labels = dataset.labels if dataset.label_splits == ("train",) else sorted(set(y_true))
    metrics = task.metrics(y_true, pred, labels)
    return ChampionScore(version=version, metric=metric, value=metrics[metric], scored_via=how)
