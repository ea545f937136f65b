"""The train step as a flow of its own, so it can run in-process or on a work pool's worker (GPU)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from mlflow.entities import Metric
from prefect import flow

from flows.prefect_heartbeats import stop_heartbeats_promptly
from tasks.tracking import EpochLogger, log_json, log_metrics, setup
from tlops.config import config_from_dict
from tlops.pipeline import train_step
from tlops.records import Execution, FeatureSet, TrainResult, dump_json
from tlops.selection_record import selection_file
from tlops.training.ddp_launch import train_step_distributed, world_size

stop_heartbeats_promptly()  # each flow run would wait up to 1 s for its heartbeat thread

RESULT_FILE = "result.json"


def _execution() -> Execution:
    """This process and its parents up the tree (shows which worker ran this step)."""
    import psutil

    return Execution(pid=os.getpid(), ppid=os.getppid(), host=socket.gethostname(), ancestors=[p.pid for p in psutil.Process().parents()])


@flow(name="tlops-train-step")
def train_step_flow(config: dict, run_id: str, features: dict, out_dir: str) -> TrainResult:
    """Train with the configured strategy; epoch rows go to the run as the epochs end (loop strategies) or
    at the end (a probe); writes result.json (what a work pool's caller reads back)."""
    cfg = config_from_dict(config)
    client, _ = setup(cfg)
    logger = EpochLogger(client, run_id)
    if world_size(cfg.execution) > 1:  # DDP under torchrun: epoch rows reach the run at the end (log_rest)
        result = train_step_distributed(cfg, FeatureSet.model_validate(features), Path(out_dir))
        client.set_tag(run_id, "tlops.ddp_world_size", str(world_size(cfg.execution)))
    else:
        result = train_step(cfg, FeatureSet.model_validate(features), Path(out_dir), callbacks=[logger])
    result.execution = _execution()
    logger.log_rest(result.history)
    now = int(time.time() * 1000)
    metrics = [Metric("train_seconds", result.seconds, now, 0)]
    if result.loop is not None:
        if result.loop.train_samples_per_s:
            metrics.append(Metric("train_samples_per_s", result.loop.train_samples_per_s, now, 0))
        if result.loop.resumed_from:
            client.set_tag(run_id, "tlops.resumed_from", json.dumps(result.loop.resumed_from))
    if result.adaptation is not None:  # domain adaptation: the unsupervised choice next to the oracle's
        a = result.adaptation
        log_json(client, run_id, a.model_dump(mode="json"), "adaptation/selection.json")
        metrics += [Metric("da_chosen_trade_off", a.chosen.trade_off, now, 0), Metric("da_chosen_epoch", a.chosen.best_epoch, now, 0)]
        if a.chosen.oracle_test_macro_f1 is not None and a.oracle is not None:
            metrics += [Metric("da_chosen_oracle_test_macro_f1", a.chosen.oracle_test_macro_f1, now, 0),
                        Metric("da_oracle_best_test_macro_f1", a.oracle.test_macro_f1, now, 0)]
        if a.chosen.oracle_test_mae is not None and a.oracle is not None:  # a regression: lower is better
            metrics += [Metric("da_chosen_oracle_test_mae", a.chosen.oracle_test_mae, now, 0),
                        Metric("da_oracle_best_test_mae", a.oracle.test_mae, now, 0)]
    log_metrics(client, run_id, metrics)
    if (chosen := selection_file(result)) is not None:  # a label-free choice among candidate models: the record, as written
        client.log_artifact(run_id, str(chosen))
    dump_json(result, Path(out_dir) / RESULT_FILE)
    return result
