from __future__ import annotations

from pathlib import Path

from mlflow.entities import Metric, Param
from prefect import task

from tasks.tracking import flatten, log_json, setup
from tlops.config import RunConfig
from tlops.pipeline import features_step


@task(name="features")
def features_task(cfg: RunConfig, run_id: str, out_dir: str, progress: bool = True) -> dict:
    """Backbone features for every split, through the content-addressed cache; returns paths + stats."""
    client, _ = setup(cfg)
    record = features_step(cfg, Path(out_dir), progress=progress)
    ident = record["identity"]
    log_json(client, run_id, ident, "backbone/identity.json")
    params = {f"backbone.identity.{k}": v for k, v in flatten(ident).items() if len(v) <= 500}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     metrics=[Metric(f"cache_{k}", float(v), 0, 0) for k, v in record["cache"].items()]
                     + [Metric("features_seconds", record["seconds"], 0, 0)])
    client.set_tag(run_id, "tlops.backbone_found_via", record["found_via"])
    return {k: record[k] for k in ("dir", "labels", "num_features", "cache", "seconds")}
