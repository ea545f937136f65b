"""MLflow set-up and small logging helpers shared by the tasks (no hyperparameters or URIs hard-coded here)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from tlops.config import RunConfig


def tracking_uri(cfg: RunConfig) -> str:
    """Config, then $MLFLOW_TRACKING_URI, then SQLite under ./mlruns (artifacts beside it)."""
    return cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlruns').resolve()}/mlflow.db"


def setup(cfg: RunConfig) -> tuple[MlflowClient, str]:
    """Point MLflow at the configured store; return a client and the experiment id."""
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        return client, exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # keep artifacts under mlruns/ next to the database, whatever the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    try:
        return client, client.create_experiment(cfg.tracking.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently
        return client, client.get_experiment_by_name(cfg.tracking.experiment).experiment_id


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


def log_json(client: MlflowClient, run_id: str, obj, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / Path(artifact_file).name
        p.write_text(json.dumps(obj, indent=1, default=str))
        parent = str(Path(artifact_file).parent)
        client.log_artifact(run_id, str(p), None if parent == "." else parent)


def owner_tag() -> str:
    """Which process owns a run: host, pid and the pid's start time (pids are reused)."""
    import psutil

    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()})


def _alive(owner: dict) -> bool:
    import psutil

    try:
        return abs(psutil.Process(owner["pid"]).create_time() - owner["started"]) < 1e-3
    except (psutil.NoSuchProcess, KeyError, TypeError):
        return False


def close_orphaned_runs(client: MlflowClient, experiment_id: str, by_run: str | None = None) -> list[str]:
    """Runs still RUNNING whose owning process on this host is gone (killed by SIGKILL, OOM, power loss):
    mark them KILLED with the reason. Runs owned by other hosts are left alone (their liveness is unknown here)."""
    closed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        raw = run.data.tags.get("tlops.owner")
        if not raw:
            continue
        owner = json.loads(raw)
        if owner.get("host") != socket.gethostname() or _alive(owner):
            continue
        client.set_tag(run.info.run_id, "tlops.error",
                       f"process {owner['pid']} on {owner['host']} ended without closing this run (killed?); "
                       f"marked KILLED{' by run ' + by_run if by_run else ''}")
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed
