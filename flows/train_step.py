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


@flow(name="tlops-train-step")
def train_step_flow(config: dict, run_id: str, features_dir: str, out_dir: str) -> dict:
    """Fit the head on cached features; log per-epoch metrics in one batch; write result.json."""
    cfg = config_from_dict(config)
    record = train_step(cfg, Path(features_dir), Path(out_dir))
    record["executed_by"] = {"pid": os.getpid(), "ppid": os.getppid(), "host": socket.gethostname(), "ancestors": _ancestors()}
    client, _ = setup(cfg)
    now = int(time.time() * 1000)
    metrics = [Metric(f"train_{k}", float(v), now, h["epoch"]) for h in record["history"] for k, v in h.items() if k != "epoch"]
    metrics.append(Metric("train_seconds", record["seconds"], now, 0))
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    (Path(out_dir) / RESULT_FILE).write_text(json.dumps(record, indent=1))
    return record
