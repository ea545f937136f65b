"""A real Prefect server, a process work pool and its worker, a real MLflow server.

The flow runs with execution.train_pool set; the train step must run in the worker's child process
and the run must still register its model. Everything started here is stopped here.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import REPO, tiny_config
from tests.servers import BIN, Services, prefect_env

POOL = "tlops-test-pool"


async def _flow_run(api: str, flow_run_id: str):
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api) as client:
        return await client.read_flow_run(flow_run_id)


def test_train_step_runs_on_the_work_pool_worker(tmp_path, text_dataset, tiny_bert, prefect_api, mlflow_server):
    """The session's Prefect server (the test harness) and MLflow server; this test's own pool and worker."""
    svc = Services(tmp_path)
    try:
        api, env = prefect_api, prefect_env(tmp_path, prefect_api)
        mlflow_url, _ = mlflow_server
        subprocess.run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"], env=env, check=True,
                       capture_output=True, timeout=120)
        worker = svc.start("worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"], env)

        cfg = tiny_config(tmp_path, text_dataset, tiny_bert, execution__train_pool=POOL, tracking__uri=mlflow_url,
                          registry__model_name="workpool")
        cfg_file = tmp_path / "pool.yaml"
        cfg_file.write_text(yaml.safe_dump(cfg))
        run = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(cfg_file), "--json"], capture_output=True,
                             text=True, cwd=REPO, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-4000:] + svc.log(worker).read_text()[-4000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])

        # The train step ran in a process the worker started (not in the CLI's process).
        executed = result["train_executed_by"]
        assert result["work_pool"] == POOL
        assert worker.pid in executed["ancestors"]
        assert executed["pid"] != result["flow_pid"] and result["flow_pid"] not in executed["ancestors"]
        flow_run = asyncio.run(_flow_run(api, result["train_flow_run_id"]))
        assert flow_run.work_pool_name == POOL and flow_run.state.is_completed()

        client = MlflowClient(mlflow_url, registry_uri=mlflow_url)
        mv = client.get_model_version_by_alias("workpool", "champion")
        assert str(mv.version) == result["version"] and mv.run_id == result["run_id"]
        assert client.get_run(result["run_id"]).info.status == "FINISHED"
        assert "train_val_macro_f1" in client.get_run(result["run_id"]).data.metrics  # logged by the worker's process
    finally:
        svc.stop()
    assert all(p.poll() is not None for p, _ in svc.procs)
