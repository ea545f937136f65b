"""`tlops tune`: trials as nested MLflow runs under the search's run, the best config written and its model scored once
on test; the same command with more trials resumes the study and, with --register, trains and gates the winner as a
normal run. And the study itself survives a SIGKILL mid-trial: the process's interrupted trial is run again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import yaml
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tests.helpers import REPO, tiny_config
from tlops.config import load_config


def test_tune_logs_every_trial_writes_the_best_config_resumes_and_registers(tmp_path, text_dataset, tiny_bert, prefect_api):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert)
    cfg["search"] = {"strategy.C": "loguniform(1e-4, 10)", "strategy.max_iter": [100, 300]}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}

    first = cli("tune", str(path), "--trials", "3", "--json", env=env)
    assert first.returncode == 0, first.stderr
    s = json.loads(first.stdout.splitlines()[-1])
    values = [t["value"] for t in s["trials"]]
    assert s["ran"] == 3 and [t["state"] for t in s["trials"]] == ["complete"] * 3 and s["metric"] == "val_macro_f1"
    assert s["best"]["value"] == max(values) and set(s["test_metrics"]) >= {"accuracy", "macro_f1"}  # the winner, once
    best = load_config(s["best_config"])
    assert best.search is None and best.strategy.C == s["best"]["params"]["strategy.C"]

    client = MlflowClient(cfg["tracking"]["uri"])
    exp = client.get_experiment_by_name("tests").experiment_id
    parent = client.get_run(s["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["tlops.kind"] == "tune" and "test_macro_f1" in parent.data.metrics
    trials = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{s['run_id']}'")
    assert len(trials) == 3 and all(r.info.status == "FINISHED" and "val_macro_f1" in r.data.metrics for r in trials)
    assert sorted(float(r.data.params["strategy.C"]) for r in trials) == sorted(t["params"]["strategy.C"] for t in s["trials"])

    again = cli("tune", str(path), "--trials", "4", "--register", "--json", env=env)  # the same search: one more trial
    assert again.returncode == 0, again.stderr
    s2 = json.loads(again.stdout.splitlines()[-1])
    assert (s2["before"], s2["ran"], len(s2["trials"])) == (3, 1, 4) and s2["folder"] == s["folder"]
    reg = s2["registered"]
    assert reg["version"] == "1" and "champion" in reg["aliases"] and s2["test_metrics"] == reg["test_metrics"]
    tags = client.get_run(s2["run_id"]).data.tags
    assert tags["tlops.tune.registered_run"] == reg["run_id"] and "test_macro_f1" not in client.get_run(s2["run_id"]).data.metrics

    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("loguniform(1e-4, 10)", "loguniform(0, 10)"))
    refused = cli("tune", str(bad), "--trials", "2", env=env)
    assert refused.returncode == 2 and refused.stderr.count("error:") == 1 and "line " in refused.stderr, refused.stderr


KILLED_SEARCH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tlops.tuning import Param, open_study, run_search

    st = open_study(Path(sys.argv[1]), "score", maximize=False, seed=0, trials=4)

    def objective(trial, values):
        if trial.number == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-trial: its row stays RUNNING in the study
        return (values["strategy.x"] - 0.3) ** 2

    run_search(st, [Param("strategy.x", "float", 0.0, 1.0)], 4, objective)
""")


def test_a_search_killed_mid_trial_resumes_with_that_trial(tmp_path):
    import pytest

    from tlops.errors import ConfigError
    from tlops.tuning import Param, open_study, run_search

    folder = tmp_path / "study"
    killed = subprocess.run([sys.executable, "-c", KILLED_SEARCH, str(folder)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    st = open_study(folder, "score", maximize=False, seed=0, trials=4)
    with pytest.raises(ConfigError, match="another tlops tune is running"):  # while this process holds it
        open_study(folder, "score", maximize=False, seed=0, trials=4)
    assert st.resumed == [2] and len(st.finished) == 2
    interrupted = st.study.trials[2].params["strategy.x"]
    seen: list[float] = []
    out = run_search(st, [Param("strategy.x", "float", 0.0, 1.0)], 4, lambda t, v: seen.append(v["strategy.x"]) or (v["strategy.x"] - 0.3) ** 2)
    states = [t.state.name for t in st.study.trials]
    st.close()
    assert len(out) == 2 and seen[0] == interrupted and states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert st.study.trials[3].user_attrs["retry_of"] == 2 and st.study.trials[2].system_attrs["tlops_interrupted"]
