"""`kill -9` of `tlops run` must not leave its temporary Prefect server (a uvicorn child) running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from tests.helpers import REPO, tiny_config

pytestmark = pytest.mark.slow


def _uvicorn_children(pid: int) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(pid).children(recursive=True) if "uvicorn" in " ".join(c.cmdline())]
    except psutil.NoSuchProcess:
        return []


def test_the_temporary_prefect_server_dies_with_a_killed_run(tmp_path, text_dataset, tiny_bert):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), TLOPS_FAULT_GATE_DELAY_S="120")  # holds the run at the gate
    servers: list[psutil.Process] = []
    run = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(tmp_path / "c.yaml")], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (servers := _uvicorn_children(run.pid)) and time.time() < deadline and run.poll() is None:
            time.sleep(0.5)
        assert servers, "the run never started its temporary server"
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        gone, alive = psutil.wait_procs(servers, timeout=20)
        assert not alive, f"temporary server still running after kill -9 of its run: {[p.pid for p in alive]}"
    finally:
        if run.poll() is None:
            run.kill()
        for p in servers:
            if p.is_running():
                p.kill()
