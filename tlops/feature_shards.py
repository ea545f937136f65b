"""The feature step cut into shards, for datasets too large for one pass: plan -> embed each shard -> assemble.

`plan_shards` hashes every input of every split, looks them up in the cache, and cuts the distinct inputs the cache
lacks into shards of `features.shard_rows` (first-seen order), each written as a small JSON file next to the
features. `embed_shard` embeds one shard and stores it as one cache shard: it needs only the config, the plan's
namespace and that file, so an orchestrator can run shards anywhere that sees the same paths (Prefect maps it over
a Dask cluster in `tasks/features.py`); rerunning a shard writes the same cache file again (content-addressed).
`assemble` then reads every split's rows back from the cache into `<split>.npz`, as `features_step` writes them.
`run_sharded` is the same three steps one after another, in this process (what `tlops.pipeline` runs).

The plan, not the runner, fixes which rows form which cache shard: the same config gives the same cache files
whether the shards ran one after another or on several workers.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from tlops.cache import CacheStats, FeatureCache, item_hash, namespace_of
from tlops.config import RunConfig
from tlops.errors import BackboneError, TlopsError
from tlops.progress import note
from tlops.records import CacheTotals, FeatureSet, Record

SHARDS_DIR = "shards"  # under the features folder; removed once the splits are assembled


class ShardSpec(Record):
    index: int
    path: str  # JSON {"keys": [...], "items": [...]}: the distinct inputs (texts or file paths) this shard embeds
    rows: int


class ShardPlan(Record):
    dir: str  # the features folder
    namespace: str  # the cache namespace of the planner's backbone identity; every shard must compute the same one
    identity: dict
    splits: list[str]
    shards: list[ShardSpec]
    hits: int  # distinct inputs (over all splits) already cached
    misses: int  # distinct inputs the shards embed
    corrupt_shards: int
    started: float  # time.time() when planning began (wall clock: the steps may run in different processes)


class ShardDone(Record):
    index: int
    rows: int
    cache_file: str
    backbone_calls: int
    seconds: float


def _keys_file(out_dir: Path, split: str) -> Path:
    return out_dir / SHARDS_DIR / f"keys-{split}.json"


def plan_shards(cfg: RunConfig, out_dir: Path, progress: bool = False) -> ShardPlan:
    """Hash every input, look the distinct ones up in the cache, write the misses as shards of `features.shard_rows`."""
    from tlops.resolve import feature_inputs

    started = time.time()
    rows = cfg.features.shard_rows
    if rows < 1:
        raise TlopsError(f"features.shard_rows is {rows}: sharding needs at least 1 row per shard")
    ds, backbone, splits = feature_inputs(cfg)
    identity = backbone.identity()
    ns = namespace_of(identity)
    shard_dir = Path(out_dir) / SHARDS_DIR
    if shard_dir.exists():  # a previous attempt of this run: its plan may be stale
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True)
    first_item: dict[str, str] = {}  # key -> the first input with that content, in first-seen order over all splits
    for split in splits:
        items = ds.inputs(split)
        keys = [item_hash(backbone.content(x)) for x in items]
        _keys_file(out_dir, split).write_text(json.dumps(keys))
        for k, x in zip(keys, items):
            first_item.setdefault(k, x)
    stats = CacheStats()
    cached = set(FeatureCache(cfg.features.cache_dir).lookup(ns, list(first_item), stats))
    missing = [k for k in first_item if k not in cached]
    shards = []
    for i, start in enumerate(range(0, len(missing), rows)):
        keys = missing[start : start + rows]
        path = shard_dir / f"shard-{i:05d}.json"
        path.write_text(json.dumps({"keys": keys, "items": [first_item[k] for k in keys]}))
        shards.append(ShardSpec(index=i, path=str(path), rows=len(keys)))
    if progress:
        note(f"features: {len(first_item)} distinct inputs, {len(cached)} from the cache, {len(missing)} to embed "
             f"in {len(shards)} shard(s) of <= {rows}")
    return ShardPlan(dir=str(out_dir), namespace=ns, identity=identity, splits=list(splits), shards=shards, hits=len(cached),
                     misses=len(missing), corrupt_shards=len(stats.corrupt_shards), started=started)


def embed_shard(cfg: RunConfig, namespace: str, shard: ShardSpec, backbone=None, progress: bool = False) -> ShardDone:
    """Embed one shard's inputs and store them as one cache shard. `backbone`: one already loaded in this process
    (a worker embedding many shards loads it once)."""
    from tlops.features import embed_all
    from tlops.resolve import backbone_of

    t0 = time.perf_counter()
    backbone = backbone if backbone is not None else backbone_of(cfg)
    identity = backbone.identity()
    if namespace_of(identity) != namespace:
        # e.g. a worker machine with other weights under the same name: its vectors would poison the planner's cache
        raise BackboneError(f"feature shard {shard.index}: backbone {cfg.backbone.name} here has identity {identity}, which "
                            f"differs from the one the run planned with; give every worker the same model files")
    todo = json.loads(Path(shard.path).read_text())
    calls = backbone.calls
    vecs = embed_all(backbone, todo["items"], batch_size=cfg.backbone.batch_size, progress=progress,
                     label=f"features shard {shard.index}")
    path = FeatureCache(cfg.features.cache_dir).put(namespace, todo["keys"], vecs, meta=identity)
    return ShardDone(index=shard.index, rows=len(todo["keys"]), cache_file=path.name, backbone_calls=backbone.calls - calls,
                     seconds=time.perf_counter() - t0)


def assemble(cfg: RunConfig, plan: ShardPlan, done: list[ShardDone]) -> FeatureSet:
    """Every split's rows from the cache into `<split>.npz` (x, y), as `features_step` writes them."""
    from tlops.resolve import backbone_of, open_dataset

    if sorted(d.index for d in done) != [s.index for s in plan.shards]:
        raise TlopsError(f"feature shards {sorted({s.index for s in plan.shards} - {d.index for d in done})} never finished")
    out_dir = Path(plan.dir)
    ds, backbone = open_dataset(cfg), backbone_of(cfg)  # the backbone only for its metadata: its weights stay unloaded
    split_keys = {split: json.loads(_keys_file(out_dir, split).read_text()) for split in plan.splits}
    stats = CacheStats()
    found = FeatureCache(cfg.features.cache_dir).lookup(plan.namespace, list({k for ks in split_keys.values() for k in ks}), stats)
    for split, keys in split_keys.items():
        lost = sum(k not in found for k in keys)
        if lost:
            raise TlopsError(f"{lost} {split} rows are missing from the feature cache {cfg.features.cache_dir} after every shard "
                             "finished: do the workers write to the same features.cache_dir (a shared filesystem)?")
        x = np.stack([found[k] for k in keys]).astype(np.float32, copy=False) if keys else np.zeros((0, backbone.num_features), np.float32)
        np.savez(out_dir / f"{split}.npz", x=x, y=ds.y(split))
    shutil.rmtree(out_dir / SHARDS_DIR, ignore_errors=True)
    totals = CacheTotals(hits=plan.hits, misses=plan.misses, corrupt_shards=plan.corrupt_shards + len(stats.corrupt_shards),
                         backbone_calls=sum(d.backbone_calls for d in done))
    return FeatureSet(dir=str(out_dir), splits=plan.splits, labels=ds.labels, task=ds.task, num_features=backbone.num_features,
                      identity=plan.identity, found_via=backbone.found_via, cache=totals, seconds=time.time() - plan.started)


def run_sharded(cfg: RunConfig, out_dir: Path, progress: bool = False) -> FeatureSet:
    """Plan, embed every shard one after another with one backbone, assemble: the single-process sharded step."""
    from tlops.resolve import backbone_of

    plan = plan_shards(cfg, out_dir, progress=progress)
    backbone = backbone_of(cfg) if plan.shards else None
    done = [embed_shard(cfg, plan.namespace, s, backbone=backbone, progress=progress) for s in plan.shards]
    return assemble(cfg, plan, done)
