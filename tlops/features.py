"""Batched feature extraction through a backbone, with the content-addressed cache in front."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from tlops.cache import CacheStats, FeatureCache, item_hash, namespace_of
from tlops.progress import item_bar, note

if TYPE_CHECKING:
    from tlops.backbones.base import Backbone


def embed_all(backbone: Backbone, items: Sequence[str], batch_size: int = 64, progress: bool = False,
              label: str = "features", workers: int = 0) -> np.ndarray:
    """Embed every item under inference_mode, row-aligned with `items`. The backbone encodes the whole list
    once (text: token ids; files: just the paths) and collates batch by batch (files are decoded there, so
    memory stays one batch deep). Items with lengths (text) run longest-first, so each batch pads little.
    `progress`: a bar named `label` on the display the front end installed (`tlops.progress`).
    `workers` > 0: batches are collated (files decoded and resized) in that many DataLoader worker processes
    while the model runs the previous batch; each worker keeps one torch thread, so the model's intra-op
    threads are not oversubscribed. It pays on machines with cores to spare for decoding (bench/RESULTS.md
    "Speed (issue 33)": on 2 cores it does not).
    The forward passes run in the backbone's `precision` (bf16: CPU autocast; features come back float32)."""
    out = np.empty((len(items), backbone.num_features), dtype=np.float32)
    if not items:
        return out
    encoded = backbone.encode(items)
    lengths = backbone.lengths(encoded)
    order = list(range(len(items))) if lengths is None else sorted(range(len(items)), key=lambda i: -lengths[i])
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    with item_bar(label, len(items)) if progress else _no_bar() as advance, torch.inference_mode(), autocast(backbone):
        for idx, batch in _collated(backbone, encoded, chunks, workers):
            out[idx] = backbone.embed(batch).float().numpy()
            advance(len(idx))
    return out


def autocast(backbone: Backbone) -> contextlib.AbstractContextManager:
    """The context a backbone's feature-extraction forward passes run in: CPU bf16 autocast when its `precision` is bf16
    (matmuls and convolutions in bf16; softmax, norms and reductions in fp32, torch's autocast op lists), else none."""
    if getattr(backbone, "precision", "fp32") == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)


def _collated(backbone: Backbone, encoded: list, chunks: list[list[int]], workers: int):
    """(row indices, collated batch) per chunk, in order; collated in `workers` DataLoader processes when > 0."""
    def collate(idx: list[int]):
        return idx, backbone.collate([encoded[i] for i in idx])

    if workers <= 0 or len(chunks) < 2:
        return map(collate, chunks)
    from torch.utils.data import DataLoader

    # batch_size=None: each dataset item (one chunk of row indices) is one batch, collated in a worker
    return DataLoader(chunks, batch_size=None, collate_fn=collate, num_workers=workers, worker_init_fn=_one_thread,
                      multiprocessing_context="fork", prefetch_factor=2)


@contextlib.contextmanager
def _no_bar():
    yield lambda n: None


def cached_features(backbone: Backbone, items: Sequence[str], cache: FeatureCache, batch_size: int = 64,
                    progress: bool = False, identity: dict | None = None, label: str = "features") -> tuple[np.ndarray, CacheStats]:
    """Features for `items` (row-aligned); only cache misses reach the backbone.
    Pass `identity` when calling several times: some backbones hash their weights to compute it."""
    identity = identity or backbone.identity()
    ns = namespace_of(identity)
    # the item's content as the backbone defines it: a text's UTF-8 bytes, a file's bytes (a renamed file still hits)
    keys = [item_hash(backbone.content(x)) for x in items]
    stats, t0 = CacheStats(), time.perf_counter()
    found = cache.lookup(ns, keys, stats)
    missing_keys = list(dict.fromkeys(k for k in keys if k not in found))
    # counted per distinct input: 100,000 copies of one text are one miss, and one backbone row
    stats.hits, stats.misses = len(found), len(missing_keys)
    if missing_keys:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        todo = [items[first[k]] for k in missing_keys]
        vecs = embed_all(backbone, todo, batch_size=batch_size, progress=progress, label=label)
        cache.put(ns, missing_keys, vecs, meta=identity)
        found.update(zip(missing_keys, vecs))
    if progress:
        note(f"{label}: {len(keys)} rows, {stats.hits} from the cache, {stats.misses} embedded ({time.perf_counter() - t0:.1f} s)")
    out = np.stack([found[k] for k in keys]) if keys else np.zeros((0, backbone.num_features), np.float32)
    return out.astype(np.float32, copy=False), stats


def stats_dict(stats: CacheStats) -> dict:
    d = asdict(stats)
    d["corrupt_shards"] = len(stats.corrupt_shards)
    return d
