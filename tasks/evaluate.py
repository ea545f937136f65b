from __future__ import annotations

import time
from pathlib import Path

from mlflow.entities import Metric, RunTag
from prefect import task

from tasks.tracking import setup
from tlops.config import RunConfig
from tlops.pipeline import evaluate_step
from tlops.records import Evaluation, FeatureSet, TrainResult


@task(name="evaluate")
def evaluate_task(cfg: RunConfig, run_id: str, features: FeatureSet, result: TrainResult, out_dir: str) -> Evaluation:
    """Test-split metrics, per-class report and plots, logged to the run."""
    client, _ = setup(cfg)
    ev = evaluate_step(cfg, features, result, Path(out_dir))
    now = int(time.time() * 1000)
    # a closed-form head's curve over data: step = training rows, so MLflow's chart of it reads like the plot
    by_rows = [Metric(f"{k}_by_train_rows", v, now, int(row["train_rows"])) for row in result.size_curve for k, v in row.items()
               if k != "train_rows"]
    base = ev.baseline or {}
    baseline = [Metric(f"baseline_test_{k}", v, now, 0) for k, v in base.get("metrics", {}).items()]
    tags = [RunTag("tlops.baseline", base["name"]), RunTag("tlops.baseline.wins", str(base["wins"]).lower())] if base else []
    client.log_batch(run_id, metrics=[Metric(f"test_{k}", v, now, 0) for k, v in ev.metrics.items()] + by_rows + baseline, tags=tags)
    if base:
        client.log_dict(run_id, base, "evaluation/classic_baseline.json")
    client.log_artifact(run_id, ev.report_path, "evaluation")
    for p in ev.plots:
        client.log_artifact(run_id, p, "plots")
    return ev
