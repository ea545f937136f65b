"""`kill -9` of `tlops run` must not leave its temporary Prefect server (a uvicorn child) running, and the next
run marks the killed one KILLED and removes its scratch folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import REPO, tiny_config
from tests.servers import uvicorn_children


def _registered(client: MlflowClient) -> bool:
    try:
        return bool(client.search_model_versions("name='tiny-text'"))
    except Exception:  # the store is not there yet
        return False


def test_a_killed_run_leaves_no_server_and_the_next_run_clears_its_folder(tmp_path, text_dataset, tiny_bert):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), TLOPS_FAULT_GATE_DELAY_S="120")  # holds the run at the gate
    servers: list[psutil.Process] = []
    run = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(tmp_path / "c.yaml")], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (servers := uvicorn_children(run.pid)) and time.time() < deadline and run.poll() is None:
            time.sleep(0.5)
        assert servers, "the run never started its temporary server"
        client = MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])  # not a registry URI another test set
        while run.poll() is None and time.time() < deadline and not _registered(client):
            time.sleep(0.5)  # until the run waits at the gate: its version registered, its scratch folder still there
        assert run.poll() is None, "the run ended before it could be killed"
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        gone, alive = psutil.wait_procs(servers, timeout=20)
        assert not alive, f"temporary server still running after kill -9 of its run: {[p.pid for p in alive]}"
        (killed_folder,) = [d for d in (tmp_path / "runs").iterdir() if d.name != "checkpoints"]  # <work_dir>/<run id>

        env.pop("TLOPS_FAULT_GATE_DELAY_S")
        again = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(tmp_path / "c.yaml")], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        killed = client.get_run(killed_folder.name)
        assert killed.info.status == "KILLED" and "ended without closing this run" in killed.data.tags["tlops.error"]
        assert not killed_folder.exists(), "the killed run's scratch folder was left behind"
    finally:
        if run.poll() is None:
            run.kill()
        for p in servers:
            if p.is_running():
                p.kill()
