"""The train step as a flow of its own, so it can run in-process or on a work pool's worker (GPU)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from mlflow.entities import Metric
from prefect import flow

from tasks.tracking import setup
from tlops.config import config_from_dict
from tlops.pipeline import train_step

RESULT_FILE = "result.json"


def _ancestors() -> list[int]:
    """Parent process ids up the tree (shows which worker ran this step)."""
    import psutil

    return [p.pid for p in psutil.Process().parents()]


def _epoch_metrics(row: dict, now: int) -> list[Metric]:
    return [Metric(f"train_{k}", float(v), now, int(row["epoch"])) for k, v in row.items() if k != "epoch"]


@flow(name="tlops-train-step")
def train_step_flow(config: dict, run_id: str, features_dir: str, out_dir: str) -> dict:
    """Train with the configured strategy; metrics go to the run one batch per epoch (fine-tuning, live) or
    one batch at the end (probe); write result.json."""
    cfg = config_from_dict(config)
    client, _ = setup(cfg)

    def log_epoch(row: dict) -> None:  # one MLflow call per epoch, never per step
        client.log_batch(run_id, metrics=_epoch_metrics(row, int(time.time() * 1000)))

    record = train_step(cfg, Path(features_dir), Path(out_dir), on_epoch=log_epoch)
    record["executed_by"] = {"pid": os.getpid(), "ppid": os.getppid(), "host": socket.gethostname(), "ancestors": _ancestors()}
    now = int(time.time() * 1000)
    metrics = [] if record.get("history_logged") else [m for h in record["history"] for m in _epoch_metrics(h, now)]
    metrics.append(Metric("train_seconds", record["seconds"], now, 0))
    if record.get("train_samples_per_s"):
        metrics.append(Metric("train_samples_per_s", record["train_samples_per_s"], now, 0))
    if record.get("resumed_from"):
        client.set_tag(run_id, "tlops.resumed_from", json.dumps(record["resumed_from"]))
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    (Path(out_dir) / RESULT_FILE).write_text(json.dumps(record, indent=1))
    return record
