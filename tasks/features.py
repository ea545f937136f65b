from __future__ import annotations

from pathlib import Path

from mlflow.entities import Metric, Param
from prefect import task

from tasks.tracking import flatten, log_json, setup
from tlops.config import RunConfig
from tlops.pipeline import features_step
from tlops.records import FeatureSet


@task(name="features")
def features_task(cfg: RunConfig, run_id: str, out_dir: str, progress: bool = True) -> FeatureSet:
    """Backbone features for every split, through the content-addressed cache; returns where they are + stats."""
    client, _ = setup(cfg)
    feats = features_step(cfg, Path(out_dir), progress=progress)
    log_json(client, run_id, feats.identity, "backbone/identity.json")
    params = {f"backbone.identity.{k}": v for k, v in flatten(feats.identity).items() if len(v) <= 500}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     metrics=[Metric(f"cache_{k}", float(v), 0, 0) for k, v in feats.cache.model_dump().items()]
                     + [Metric("features_seconds", feats.seconds, 0, 0)])
    client.set_tag(run_id, "tlops.backbone_found_via", feats.found_via)
    return feats
