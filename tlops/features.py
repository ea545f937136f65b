"""Batched feature extraction through a backbone, with the content-addressed cache in front."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tlops.cache import CacheStats, FeatureCache, item_hash, namespace_of


def embed_all(backbone, items: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Embed every item under inference_mode. Text: tokenised once, longest-first batches with dynamic
    padding. Files (images, audio): decoded batch by batch, so memory stays one batch deep."""
    out = np.empty((len(items), backbone.num_features), dtype=np.float32)
    if not items:
        return out
    if backbone.modality == "text":
        token_ids = backbone.tokenize(items)
        order = sorted(range(len(items)), key=lambda i: -len(token_ids[i]))
        batches = ((idx, lambda idx=idx: backbone.collate([token_ids[i] for i in idx]))
                   for idx in (order[s : s + batch_size] for s in range(0, len(order), batch_size)))
    else:
        batches = ((list(range(s, min(s + batch_size, len(items)))), lambda s=s: backbone.preprocess(items[s : s + batch_size]))
                   for s in range(0, len(items), batch_size))
    with _progress(progress, len(items)) as (bar, task), torch.inference_mode():
        for idx, make_batch in batches:
            out[idx] = backbone.embed(make_batch()).numpy()
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
                    progress: bool = False, identity: dict | None = None) -> tuple[np.ndarray, CacheStats]:
    """Features for `items` (row-aligned); only cache misses reach the backbone.
    Pass `identity` when calling several times: some backbones hash their weights to compute it."""
    identity = identity or backbone.identity()
    ns = namespace_of(identity)
    # text is its own content; for files the key is the file's bytes, so a renamed file still hits
    keys = [item_hash(x) if backbone.modality == "text" else item_hash(Path(x).read_bytes()) for x in items]
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
