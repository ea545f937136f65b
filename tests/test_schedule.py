"""Scheduled and data-triggered retraining on a real Prefect server with a real process worker:
`tlops schedule` deploys the training flow (a run happens through the worker), the data watch
announces a change once and its trigger retrains exactly once, unchanged data starts nothing, and the
alias history says which moves a schedule or a trigger made."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import tiny_config
from tests.servers import BIN, Services, start_prefect_server, tlops_cli
from tlops.retrain import watch_decision

pytestmark = [pytest.mark.integration, pytest.mark.slow]
POOL = "tlops-schedule-test"


def test_watch_announces_a_change_once_and_only_against_a_champion():
    assert not watch_decision("d1", None, None, None).announce  # no champion: the schedule trains the first one
    assert not watch_decision("d1", "3", "d1", None).announce and "unchanged since champion v3" in watch_decision("d1", "3", "d1", None).message
    assert watch_decision("d2", "3", "d1", None).announce
    assert not watch_decision("d2", "3", "d1", "d2").announce  # announced already: its run is on the way
    assert watch_decision("d3", "3", "d1", "d2").announce  # changed again


def _versions(client: MlflowClient, name: str) -> list:
    try:
        return sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    except Exception:
        return []


def _wait(predicate, timeout: float, what: str, logs) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}:\n{logs()}")


def test_schedule_runs_on_the_worker_and_a_data_change_retrains_once(tmp_path, text_dataset, tiny_bert):
    svc = Services(tmp_path)
    try:
        api, env = start_prefect_server(svc, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2")
        subprocess.run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"], env=env, check=True,
                       capture_output=True, timeout=120)
        worker = svc.start("worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"], env)
        cfg = tiny_config(tmp_path, text_dataset, tiny_bert, registry__model_name="sched")
        uri = cfg["tracking"]["uri"]
        (tmp_path / "sched.yaml").write_text(yaml.safe_dump(cfg))
        client = MlflowClient(uri, registry_uri=uri)
        logs = lambda: svc.log(worker).read_text()[-4000:]  # noqa: E731

        # a schedule with a short interval: its first run goes through the worker and registers v1
        out = tlops_cli("schedule", str(tmp_path / "sched.yaml"), "--interval", "30", "--pool", POOL, "--watch-every", "0",
                        "--name", "every-30s", "--json", env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        assert set(json.loads(out.stdout.strip().splitlines()[-1])["deployments"]) == {"train"}
        _wait(lambda: len(_versions(client, "sched")) >= 1, 300, "the scheduled run to register v1", logs)
        assert tlops_cli("schedule", "rm", "every-30s", env=env).returncode == 0

        # retrain on data change only: a yearly cron, the data watch every 8 s
        out = tlops_cli("schedule", str(tmp_path / "sched.yaml"), "--cron", "0 0 1 1 *", "--pool", POOL, "--watch-every", "8",
                        "--debounce", "3", "--name", "on-data", "--json", env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        assert set(json.loads(out.stdout.strip().splitlines()[-1])["deployments"]) == {"train", "watch"}
        time.sleep(25)  # watch ticks on unchanged data: no training run
        assert len(_versions(client, "sched")) == 1, "unchanged data must not retrain"
        with open(text_dataset / "train.csv", "a") as f:  # new labelled rows arrive
            for i in range(3):
                f.write(f"a tiny mouse hiding under bench {i},animal\n")
        _wait(lambda: len(_versions(client, "sched")) >= 2, 300, "the triggered retrain to register v2", logs)
        time.sleep(25)  # more watch ticks: the change was announced once, so one retrain
        versions = _versions(client, "sched")
        assert len(versions) == 2, [v.version for v in versions]
        sources = [client.get_run(v.run_id).data.tags["tlops.config_source"] for v in versions]
        assert sources == ["schedule:every-30s", "trigger:tlops.data.changed (on-data)"], sources
        second = client.get_run(versions[1].run_id).data.tags
        assert second["data.version_md5"] != client.get_run(versions[0].run_id).data.tags["data.version_md5"]  # trained on the new data

        hist = json.loads(tlops_cli("history", "sched", "--json", "--tracking-uri", uri, env=env).stdout.strip().splitlines()[-1])
        made_by = {m["command"] for m in hist["moves"]}
        assert {"schedule:every-30s", "trigger:tlops.data.changed (on-data)"} <= made_by, made_by

        listed = json.loads(tlops_cli("schedule", "ls", "--json", env=env).stdout.strip().splitlines()[-1])["schedules"]
        assert [(r["name"], r["model"], r["data_trigger"], r["pool"]) for r in listed] == [("on-data", "sched", True, POOL)]
        removed = tlops_cli("schedule", "rm", "on-data", "--json", env=env)
        assert json.loads(removed.stdout.strip().splitlines()[-1])["removed"] == ["tlops-train/on-data", "tlops-watch/on-data"]
        assert json.loads(tlops_cli("schedule", "ls", "--json", env=env).stdout.strip().splitlines()[-1])["schedules"] == []
        bad = tlops_cli("schedule", "rm", "on-data", env=env)
        assert bad.returncode == 1 and "no schedule named 'on-data'" in bad.stderr
    finally:
        svc.stop()
