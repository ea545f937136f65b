"""The default single-user set-up (SQLite MLflow store, a temporary Prefect server per run) survives several
`tlops run`s started together on a fresh machine: before the fixes, 3 of 4 died racing through MLflow's or
Prefect's table migrations, or at Prefect's 20 s start limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import REPO, tiny_config

RUNS = 4


def test_concurrent_runs_on_a_fresh_default_store_all_register(tmp_path, text_dataset, tiny_bert):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # a fresh machine: no Prefect database yet
    procs = []
    for i in range(RUNS):
        cfg = tiny_config(tmp_path, text_dataset, tiny_bert, execution__work_dir=str(tmp_path / f"runs{i}"))
        (tmp_path / f"c{i}.yaml").write_text(yaml.safe_dump(cfg))
        procs.append(subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(tmp_path / f"c{i}.yaml"), "--json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env))
    outs = [p.communicate(timeout=900) for p in procs]
    for i, (_, err) in enumerate(outs):
        (tmp_path / f"stderr{i}.txt").write_text(err)  # kept for a post-mortem
    assert [p.returncode for p in procs] == [0] * RUNS, [o[1][-2500:] for o in outs if "Traceback" in o[1]]
    assert not [o for o in outs if "database is locked" in o[1]]
    uri = cfg["tracking"]["uri"]
    client = MlflowClient(uri, registry_uri=uri)
    versions = sorted(int(v.version) for v in client.search_model_versions("name='tiny-text'"))
    assert versions == list(range(1, RUNS + 1)), "no gap, no duplicate"
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"] * RUNS
    reported = sorted(json.loads(o[0].strip().splitlines()[-1])["version"] for o in outs)
    assert reported == [str(v) for v in versions]
    assert client.get_registered_model("tiny-text").aliases["challenger"] == RUNS
