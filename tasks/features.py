from __future__ import annotations

import threading
from pathlib import Path

from mlflow.entities import Metric, Param
from prefect import task

from tasks.tracking import flatten, log_json, setup
from tlops.config import RunConfig
from tlops.feature_shards import ShardDone, ShardPlan, ShardSpec, assemble, embed_shard, plan_shards
from tlops.pipeline import features_step
from tlops.records import FeatureSet


@task(name="features")
def features_task(cfg: RunConfig, run_id: str, out_dir: str, progress: bool = True) -> FeatureSet:
    """Backbone features for every split, through the content-addressed cache; returns where they are + stats."""
    feats = features_step(cfg, Path(out_dir), progress=progress)
    log_features(cfg, run_id, feats)
    return feats


def log_features(cfg: RunConfig, run_id: str, feats: FeatureSet) -> None:
    """The backbone identity, cache counts and seconds of a features step, on the run."""
    client, _ = setup(cfg)
    log_json(client, run_id, feats.identity, "backbone/identity.json")
    params = {f"backbone.identity.{k}": v for k, v in flatten(feats.identity).items() if len(v) <= 500}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     metrics=[Metric(f"cache_{k}", float(v), 0, 0) for k, v in feats.cache.model_dump().items()]
                     + [Metric("features_seconds", feats.seconds, 0, 0)])
    client.set_tag(run_id, "tlops.backbone_found_via", feats.found_via)


# ---- sharded: plan -> one task per shard (on the flow's task runner: in-process or Dask workers) -> assemble ------------

@task(name="features-plan")
def plan_shards_task(cfg: RunConfig, out_dir: str, progress: bool = True) -> ShardPlan:
    return plan_shards(cfg, Path(out_dir), progress=progress)


_loaded = threading.local()  # one backbone per worker thread, reused by every shard that thread runs


def _backbone(cfg: RunConfig):
    """A worker runs many shards: load the weights once per thread (a thread never shares its model with another)."""
    from tlops.resolve import backbone_of

    key = cfg.backbone.model_dump_json()
    if getattr(_loaded, "key", None) != key:
        _loaded.key, _loaded.backbone = key, backbone_of(cfg)
    return _loaded.backbone


@task(name="features-shard")
def embed_shard_task(cfg: RunConfig, namespace: str, shard: ShardSpec, progress: bool = False) -> ShardDone:
    return embed_shard(cfg, namespace, shard, backbone=_backbone(cfg), progress=progress)


@task(name="features-assemble")
def assemble_task(cfg: RunConfig, plan: ShardPlan, done: list[ShardDone]) -> FeatureSet:
    return assemble(cfg, plan, done)
