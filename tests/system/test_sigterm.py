"""SIGTERM (what `kill`, systemd and container runtimes send first) to `tlops run` during training: the process
ends within seconds, its MLflow run is closed (KILLED, with the signal named), the checkpoint stays for a resume,
no model version is registered (so no alias moved), and the temporary Prefect server goes with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import REPO, tiny_config
from tests.servers import uvicorn_children


@pytest.mark.parametrize("where", ["training", "inside torch.save"])
def test_sigterm_during_training_closes_the_run_and_keeps_the_checkpoint(tmp_path, text_dataset, tiny_bert, where):
    """`inside torch.save`: the signal lands in a checkpoint's file writes (a CI failure: torch turned it into a
    RuntimeError, the run was closed FAILED, and Prefect's queued events then retried the stopped server at exit)."""
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy={"name": "finetune", "epochs": 60})  # far longer than we wait
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    marker = tmp_path / "in-torch-save"
    launch = ["-m", "flows.cli"] if where == "training" else [str(REPO / "tests" / "system" / "stall_in_torch_save.py"), str(marker)]
    run = subprocess.Popen([sys.executable, *launch, "run", str(tmp_path / "c.yaml")], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoints = tmp_path / "runs" / "checkpoints"
    ready = (lambda: list(checkpoints.rglob("step-*/manifest.json"))) if where == "training" else marker.exists
    servers: list[psutil.Process] = []
    try:
        deadline = time.time() + 400
        while run.poll() is None and time.time() < deadline and not ready():
            servers = servers or uvicorn_children(run.pid)
            time.sleep(0.5)
        assert run.poll() is None, f"the run ended before training could be interrupted:\n{run.communicate()[1][-3000:]}"
        assert servers, "the run's temporary Prefect server was never seen"
        assert list(checkpoints.rglob("step-*/manifest.json")), "no checkpoint written within the deadline"
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
        assert run.returncode != 0, err[-2000:]
        _, alive = psutil.wait_procs(servers, timeout=20)
        assert not alive, "the temporary Prefect server outlived the terminated run"
        client = MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])
        (mlflow_run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
        assert mlflow_run.info.status == "KILLED", (mlflow_run.info.status, err[-3000:])  # stopped from outside, not failed
        assert "stopped by signal 15 (SIGTERM)" in mlflow_run.data.tags.get("tlops.error", ""), mlflow_run.data.tags
        assert not client.search_model_versions("name='tiny-text'"), "a terminated run registered a version"
        assert list(checkpoints.rglob("step-*/manifest.json")), "the checkpoint was not kept for a resume"
    finally:
        if run.poll() is None:
            run.kill()
        for p in servers:
            if p.is_running():
                p.kill()
