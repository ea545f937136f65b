"""Rank candidate backbones for a config's task by transferability: each candidate embeds the training split once
(through the feature cache, so a later `tlops run` with the winner starts from cached features, and a second ranking
costs only the scores) and is scored by LogME and, for classes, the H-score; no head is trained.

The ranking reads pooled features of one input against one target, the CSV contract of `tlops.task_types.base`:
classification (class ids) and regression (numbers). A task type that reads its own files or caches its features
at another level (token classification, extractive QA, speech recognition) is refused with the reason."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tlops.config import RunConfig
from tlops.errors import BackboneError, ConfigError, DataError
from tlops.resolve import open_dataset
from tlops.task_types import task_type
from tlops.task_types.base import TaskType
from tlops.transferability.scores import h_score, logme

if TYPE_CHECKING:
    from tlops.backbones import Backbone
    from tlops.data import Dataset

SCORES = ("logme", "h_score")  # what the table shows, in order; the ranking is by the first


@dataclass
class Candidate:
    """One backbone's row: its scores on the training split and what it took to get them."""

    name: str
    logme: float
    h_score: float | None  # None: a regression (the H-score needs classes)
    num_features: int
    parameters: int | None  # trainable backbone parameters (its parameter groups); None if the kind cannot say
    seconds: float  # load + embed (or read from the cache) + score
    embed_seconds: float
    score_seconds: float
    cache_hits: int
    cache_misses: int


@dataclass
class Ranking:
    config: str
    data: str
    task: str
    rows: int  # training rows scored
    train_rows: int  # in the split
    candidates: list[Candidate] = field(default_factory=list)  # best first (by LogME)
    seconds: float = 0.0

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def as_dict(self) -> dict:
        return {"config": self.config, "data": self.data, "task": self.task, "rows": self.rows, "train_rows": self.train_rows,
                "ranked_by": SCORES[0], "recommendation": self.best.name if self.best else None,
                "candidates": [asdict(c) for c in self.candidates], "seconds": self.seconds}


def rankable(task: TaskType) -> bool:
    """Whether the task's data is one input with one target, its features pooled per input (the base task type's CSV
    reader and feature hook): what LogME and the H-score score."""
    kind = type(task)
    return kind.read_dataset is TaskType.read_dataset and kind.split_features is TaskType.split_features


def check_rankable(ds: Dataset) -> TaskType:
    task = task_type(ds.task)
    if not rankable(task):
        raise ConfigError(f"{ds.root / 'dataset.yaml'} says task: {task.name}; tlops rank scores one pooled feature vector per "
                          f"input against one target (classification or regression), which a {task.name} dataset is not. "
                          f"Compare its backbones by training: tlops run CONFIG --set backbone.name=...")
    return task


def subsample(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Row indices to score: all rows, or `max_rows` of them drawn at random (seeded), in their order."""
    if not max_rows or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def parameter_count(backbone: Backbone) -> int | None:
    try:
        return int(sum(p.numel() for group in backbone.parameter_groups() for p in group))
    except (NotImplementedError, AttributeError, BackboneError):  # BackboneError: a frozen kind (onnx:) has none to count
        return None


def score_features(x: np.ndarray, y: np.ndarray, regression: bool) -> tuple[float, float | None]:
    """(LogME, H-score or None for a regression) of features x for targets y."""
    return logme(x, y, regression=regression), None if regression else h_score(x, y)


def score_candidate(name: str, backbone: Backbone, ds: Dataset, task: TaskType, rows: np.ndarray, cache,
                    batch_size: int = 64, progress: bool = False) -> Candidate:
    """Embed the chosen training rows through the cache and score them."""
    from tlops.features import cached_features

    if backbone.modality != ds.modality:
        raise DataError(f"{ds.root} holds {ds.modality} data but backbone {name} takes {backbone.modality}; "
                        f"rank {ds.modality} backbones")
    t0 = time.perf_counter()
    inputs = ds.inputs("train")
    x, stats = cached_features(backbone, [inputs[i] for i in rows], cache, batch_size=batch_size, progress=progress,
                               identity=task.feature_identity(backbone.identity()), label=f"features {name}")
    y = ds.y("train")[rows]
    t1 = time.perf_counter()
    lm, hs = score_features(x, y, regression=ds.numeric_target)
    t2 = time.perf_counter()
    params = parameter_count(backbone)  # loads the weights if every row came from the cache: not counted as scoring
    return Candidate(name=name, logme=lm, h_score=hs, num_features=int(x.shape[1]), parameters=params,
                     seconds=time.perf_counter() - t0, embed_seconds=t1 - t0, score_seconds=t2 - t1,
                     cache_hits=stats.hits, cache_misses=stats.misses)


def rank_backbones(cfg: RunConfig, names: Sequence[str], max_rows: int | None = None, progress: bool = False,
                   config_name: str = "") -> Ranking:
    """Score each named backbone (loaded with the config's backbone options: layers, pooling, image size, clip length)
    on the config's training split, best LogME first. Every name is checked before any is embedded."""
    from tlops.backbones import load_backbone
    from tlops.backbones.registry import find_kind
    from tlops.cache import FeatureCache

    if not names:
        raise ConfigError("no candidates: name two or more backbones, e.g. --backbones packaged:efficientnet-lite0 timm:resnet18")
    if len(set(names)) != len(names):
        dup = next(n for n in names if list(names).count(n) > 1)
        raise ConfigError(f"backbone {dup!r} is named twice; name each candidate once")
    for name in names:
        find_kind(name)  # an unknown name fails now, not after the first candidates were embedded
    t0 = time.perf_counter()
    ds = open_dataset(cfg)
    task = check_rankable(ds)
    n = len(ds.splits["train"])
    rows = subsample(n, max_rows, cfg.seed)
    if len(rows) < 2:
        raise DataError(f"{ds.root}: the training split has {len(rows)} row(s); ranking needs at least 2")
    cache = FeatureCache(cfg.features.cache_dir)
    b = cfg.backbone
    out = []
    for name in names:
        backbone = load_backbone(name, layers=b.layers, pooling=b.pooling, max_length=b.max_length, image_size=b.image_size,
                                 clip_seconds=b.clip_seconds, precision=b.precision)
        out.append(score_candidate(name, backbone, ds, task, rows, cache, batch_size=b.batch_size, progress=progress))
    out.sort(key=lambda c: -c.logme)
    return Ranking(config=config_name, data=str(ds.root), task=task.name, rows=len(rows), train_rows=n, candidates=out,
                   seconds=time.perf_counter() - t0)


__all__ = ["Candidate", "Ranking", "SCORES", "check_rankable", "rank_backbones", "rankable", "score_candidate",
           "score_features", "subsample"]
