"""Batched feature extraction through a backbone, with the content-addressed cache in front."""

from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tlops.cache import CacheStats, FeatureCache, item_hash, namespace_of


def embed_all(backbone, items: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Embed every item; longest-first batches with dynamic padding, under inference_mode."""
    if not items:
        return np.zeros((0, backbone.num_features), dtype=np.float32)
    token_ids = backbone.tokenize(items)
    order = sorted(range(len(items)), key=lambda i: -len(token_ids[i]))
    out = np.empty((len(items), backbone.num_features), dtype=np.float32)
    with _progress(progress, len(items)) as (bar, task), torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = backbone.collate([token_ids[i] for i in idx])
            out[idx] = backbone.embed(batch).numpy()
            if bar is not None:
                bar.advance(task, len(idx))
    return out


class _progress:
    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None, None
        self.bar = Progress(TextColumn("features"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
        self.bar.__enter__()
        return self.bar, self.bar.add_task("embed", total=self.total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


def cached_features(backbone, items: Sequence[str], cache: FeatureCache, batch_size: int = 64,
                    progress: bool = False) -> tuple[np.ndarray, CacheStats]:
    """Features for `items` (row-aligned); only cache misses reach the backbone."""
    identity = backbone.identity()
    ns = namespace_of(identity)
    keys = [item_hash(x) for x in items]
    stats = CacheStats()
    found = cache.lookup(ns, keys, stats)
    missing_keys = list(dict.fromkeys(k for k in keys if k not in found))
    stats.hits = sum(1 for k in keys if k in found)
    stats.misses = len(keys) - stats.hits
    if missing_keys:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        todo = [items[first[k]] for k in missing_keys]
        vecs = embed_all(backbone, todo, batch_size=batch_size, progress=progress)
        cache.put(ns, missing_keys, vecs, meta=identity)
        found.update(zip(missing_keys, vecs))
    out = np.stack([found[k] for k in keys]) if keys else np.zeros((0, backbone.num_features), np.float32)
    return out.astype(np.float32, copy=False), stats


def stats_dict(stats: CacheStats) -> dict:
    d = asdict(stats)
    d["corrupt_shards"] = len(stats.corrupt_shards)
    return d
