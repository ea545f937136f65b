"""Fault (issue 14): the Prefect server restarted (same port, same database) while `tlops run` runs against it.

What tlops guarantees: the run completes and registers (Prefect's client retries a dropped connection for about a
minute), or it fails with one clear error line; never a registered version without its artifacts, `champion` untouched
on failure, and the MLflow run closed (not left RUNNING)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import yaml

from tests.helpers import REPO, tiny_config
from tests.servers import BIN, Services, free_port, prefect_env, wait_http

def _prefect_server(svc: Services, port: int) -> subprocess.Popen:
    """`prefect server start` on `port` with its SQLite database under svc.root/prefect-home (a restart finds it again)."""
    api = f"http://127.0.0.1:{port}/api"
    env = prefect_env(svc.root, api)
    env.pop("PREFECT_API_URL")
    proc = svc.start("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                                        "--no-ui"], env)
    wait_http(f"{api}/health", proc, svc.log(proc))
    return proc


async def _flow_runs(api: str) -> list:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api) as client:
        return await client.read_flow_runs()


def _start_run(cfg_file, api: str, root, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(cfg_file), "--json"], cwd=REPO,
                            env={**prefect_env(root, api), **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_mid_run(run: subprocess.Popen, runs_dir) -> None:
    """Until the features task wrote its first output: the flow is mid-run, its next API calls (the features task's end,
    the train-step subflow, evaluate, register) seconds away."""
    deadline = time.time() + 300
    while run.poll() is None and time.time() < deadline and not list(runs_dir.glob("*/features/train.npz")):
        time.sleep(0.1)
    assert run.poll() is None, "the run ended before the server could be stopped: " + run.communicate()[1][-3000:]


def _setup(tmp_path, text_dataset, tiny_bert):
    """A Prefect server of this test on a free port, a tiny probe config, its MLflow client."""
    from mlflow.tracking import MlflowClient

    svc = Services(tmp_path)
    port = free_port()
    server = _prefect_server(svc, port)
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    uri = cfg["tracking"]["uri"]
    return svc, server, port, cfg_file, MlflowClient(uri, registry_uri=uri)


def _runs(client) -> list:
    exp = client.get_experiment_by_name("tests")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"]) if exp else []


def test_prefect_server_restarted_mid_run_the_run_completes(tmp_path, text_dataset, tiny_bert):
    """Restarted (same port, same database) while the flow runs: the run completes, registers version 1 as champion with
    its artifacts, its MLflow run is FINISHED, and the restarted server shows both flow runs Completed. Before
    `flows.prefect_outage.ride_out_restarts` this failed at once: a Prefect client first made during the outage (the
    train-step subflow's) does not retry a refused connection."""
    import asyncio

    svc, server, port, cfg_file, client = _setup(tmp_path, text_dataset, tiny_bert)
    api = f"http://127.0.0.1:{port}/api"
    try:
        run = _start_run(cfg_file, api, tmp_path)
        _wait_mid_run(run, tmp_path / "runs")
        svc.stop_one(server)
        t_down = time.time()
        _prefect_server(svc, port)
        down_s = time.time() - t_down
        out, err = run.communicate(timeout=400)
        assert run.returncode == 0, f"the run did not survive a {down_s:.0f} s Prefect restart:\n{err[-4000:]}"
        result = json.loads(out.strip().splitlines()[-1])
        (mlrun,) = _runs(client)
        assert mlrun.info.status == "FINISHED" and mlrun.info.run_id == result["run_id"]
        mv = client.get_model_version_by_alias("tiny-text", "champion")
        assert str(mv.version) == result["version"] == "1" and mv.run_id == result["run_id"]
        files = {a.path for a in client.list_artifacts(result["run_id"], "registry")}
        assert "registry/package_manifest.json" in files, files
        states = [r.state_name for r in asyncio.run(_flow_runs(api))]  # read back from the restarted server's database
        assert sorted(states) == ["Completed", "Completed"], states  # tlops-train and its tlops-train-step subflow
    finally:
        svc.stop()


def test_prefect_server_down_longer_than_the_retries_fails_clearly(tmp_path, text_dataset, tiny_bert):
    """Stopped mid-run and not back within the client's retries (1 retry for this run: seconds, not a minute): one
    `error:` line naming the server as the last line, the MLflow run FAILED with the cause, no new version, and the
    champion (an earlier version) untouched."""
    svc, server, port, cfg_file, client = _setup(tmp_path, text_dataset, tiny_bert)
    api = f"http://127.0.0.1:{port}/api"
    try:
        client.create_registered_model("tiny-text")  # an earlier champion, registered directly: what must stay untouched
        earlier = client.create_model_version("tiny-text", str(tmp_path), run_id=None)
        client.set_registered_model_alias("tiny-text", "champion", earlier.version)

        run = _start_run(cfg_file, api, tmp_path, PREFECT_CLIENT_MAX_RETRIES="1")
        _wait_mid_run(run, tmp_path / "runs")
        svc.stop_one(server)
        out, err = run.communicate(timeout=400)
        assert run.returncode == 1, out[-2000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"error: the Prefect server at {api} stopped answering") and "rerun the same command" in last, err[-4000:]
        (mlrun,) = _runs(client)
        assert mlrun.info.status == "FAILED" and "ConnectError" in mlrun.data.tags["tlops.error"], (mlrun.info, mlrun.data.tags)
        assert [str(v.version) for v in client.search_model_versions("name='tiny-text'")] == [str(earlier.version)]
        assert client.get_registered_model("tiny-text").aliases == {"champion": int(earlier.version)}
    finally:
        svc.stop()
