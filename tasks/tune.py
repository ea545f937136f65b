"""One trial of a `tlops tune` search as a Prefect task: the trial's config trained on the cached features (the core's
`features_step` and `train_step`), its per-epoch validation metric reported to the pruner, all of it logged as an MLflow
run nested under the search's run (`mlflow.parentRunId`). The selection reads validation metrics only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.tracking import OUTCOME_TAG, EpochLogger, log_metrics, owner_tag
from tlops.config import RunConfig
from tlops.records import FeatureSet, dump_json
from tlops.secrets import mask
from tlops.task_types import task_type
from tlops.tuning import Pruned, ReportToPruner

_features: dict[str, FeatureSet] = {}  # this process's features per feature key: trials that differ in the head share them


def feature_key(cfg: RunConfig) -> str:
    """What a trial's features depend on: the data, the backbone settings and the splits the strategy reads."""
    from tlops.strategies import get_strategy

    blob = [cfg.data.model_dump(mode="json"), cfg.backbone.model_dump(mode="json"), cfg.features.model_dump(mode="json"),
            list(get_strategy(cfg.strategy.name).splits)]
    import hashlib

    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def trial_features(cfg: RunConfig, folder: Path) -> FeatureSet:
    """The trial's features (`features_step` through the feature cache), once per feature key in this process."""
    from tlops.pipeline import features_step

    key = feature_key(cfg)
    if key not in _features:
        _features[key] = features_step(cfg, folder / "features" / key)
    return _features[key]


@task(name="tlops-tune-trial", cache_policy=NO_CACHE, persist_result=False)
def trial_task(cfg: RunConfig, number: int, values: dict[str, Any], trial: Any, folder: str, parent_run_id: str,
               experiment_id: str, tracking_uri: str) -> dict:
    """Train trial `number` (its config `cfg` holds the sampled `values`) and log it as a nested run. Returns
    {state: complete|pruned, value, epoch, run_id, seconds}; a trial that fails raises (its run is FAILED)."""
    from tlops.pipeline import train_step

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    study_folder = Path(folder)
    out = study_folder / "trials" / f"{number:04d}"
    run = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_run_id, "mlflow.runName": f"trial-{number}",
                                                 "tlops.kind": "tune_trial", "tlops.tune.trial": str(number),
                                                 "tlops.strategy": cfg.strategy.name, "tlops.owner": owner_tag()})
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in values.items()])
    t0 = time.perf_counter()
    try:
        feats = trial_features(cfg, study_folder)
        tt = task_type(feats.task)
        pruner = ReportToPruner(trial, tt.selection_key)
        logger = EpochLogger(client, run_id)
        try:
            result = train_step(cfg, feats, out / "train", callbacks=[logger, pruner])
        except Pruned as p:
            client.log_batch(run_id, metrics=[Metric(tt.selection_key, p.value, int(time.time() * 1000), p.epoch)])
            client.set_tag(run_id, "tlops.tune.state", "pruned")
            client.set_tag(run_id, OUTCOME_TAG, "pruned")
            client.set_terminated(run_id, "FINISHED")
            return {"state": "pruned", "value": p.value, "epoch": p.epoch, "run_id": run_id, "seconds": time.perf_counter() - t0}
        logger.log_rest(result.history)
        pruner.report_rest(result.history)
        dump_json(result, out / "result.json")
        dump_json(feats, out / "features.json")
        value = result.val_metrics.get(tt.selection_metric, next(iter(result.val_metrics.values()), float("nan")))
        now = int(time.time() * 1000)
        log_metrics(client, run_id, [Metric(f"val_{k}", float(v), now, 0) for k, v in result.val_metrics.items()]
                    + [Metric("train_seconds", result.seconds, now, 0)])
        client.set_tag(run_id, "tlops.tune.state", "complete")
        client.set_tag(run_id, OUTCOME_TAG, "finished")
        client.set_terminated(run_id, "FINISHED")
        return {"state": "complete", "value": float(value), "epoch": result.loop.best_epoch if result.loop else 0, "run_id": run_id,
                "seconds": time.perf_counter() - t0}
    except BaseException as e:
        client.set_tag(run_id, "tlops.error", mask(f"{type(e).__name__}: {e}")[:5000])
        client.set_tag(run_id, "tlops.tune.state", "failed")
        client.set_tag(run_id, OUTCOME_TAG, "failed")
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED if isinstance(e, KeyboardInterrupt) else RunStatus.FAILED))
        raise
