"""Compare-and-set under concurrency (two `tlops promote` processes racing; three overlapping `tlops run`s) against a
real `mlflow server` (the registry operations themselves: tests/flow/test_registry_ops.py).

Models are trained by the real flow on the tiny random-weight BERT fixture (a code path, not a
pretrained model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import REPO, tiny_config
from tlops.aliases import as_row

NAME = "racing"


def test_racing_promotes_one_wins_and_overlapping_runs_keep_the_best_champion(tmp_path, text_dataset, tiny_bert, prefect_api,
                                                                               mlflow_server):
    """The session's MLflow server (this test's own model name)."""
    url, _ = mlflow_server
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLFLOW_TRACKING_URI": url, "TLOPS_FAULT_GATE_DELAY_S": "4"}
    # three overlapping runs of one model: each scores the champion, waits, then moves (compare-and-set)
    runs = []
    for i, c in enumerate((1e-6, 1.0, 0.003)):
        cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy__C=c, tracking__uri=url, registry__model_name=NAME,
                          execution__work_dir=str(tmp_path / f"runs{i}"), features__cache_dir=str(tmp_path / f"cache{i}"))
        (tmp_path / f"r{i}.yaml").write_text(yaml.safe_dump(cfg))
        runs.append(subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(tmp_path / f"r{i}.yaml"), "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env))
        time.sleep(1.0)
    outs = [p.communicate(timeout=600) for p in runs]
    assert all(p.returncode == 0 for p in runs), [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    client = MlflowClient(url, registry_uri=url)
    scores = {r["version"]: r["test_metrics"]["macro_f1"] for r in results}
    champion = str(client.get_model_version_by_alias(NAME, "champion").version)
    from tasks.operate import connect

    reg = connect(url)
    assert scores[champion] == max(scores.values()), (champion, scores, [as_row(m) for m in reg.history(NAME)], [o[1][-3000:] for o in outs])
    firsts = [m for m in reg.history(NAME) if m.alias == "champion" and m.applied and m.from_version is None]
    assert len(firsts) == 1, "only one run may find no champion and take it unopposed"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "3"

    # two promotes at once, both expecting the current champion: exactly one wins, the other is told why
    others = sorted(v for v in scores if v != champion)
    env2 = {**env, "TLOPS_ACTOR": "alice@ci"}
    procs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "promote", NAME, v, "--expect", champion, "--reason", f"race {v}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env2) for v in others]
    done = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], done
    loser = done[[p.returncode for p in procs].index(1)][1]
    assert "not moved" in loser and "in between" in loser and "alice@ci" in loser, loser
    attempts = [m for m in reg.history(NAME) if m.kind == "promote"]
    assert sorted(m.applied for m in attempts) == [False, True] and {m.to_version for m in attempts} == set(others)
    assert reg.alias(NAME, "champion") == next(m.to_version for m in attempts if m.applied)

    # without --expect each expects the champion of when its process started (not when it got round to reading it,
    # seconds later): again exactly one of two processes started together applies
    held = reg.alias(NAME, "champion")
    rest = sorted(v for v in scores if v != held)
    procs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "promote", NAME, v, "--reason", f"again {v}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env2) for v in rest]
    done = [p.communicate(timeout=300) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 1], done
    loser = done[[p.returncode for p in procs].index(1)][1]
    assert f"not v{held} as this move expected" in loser and "in between" in loser, loser
    again = [m for m in reg.history(NAME) if m.kind == "promote"][2:]
    assert sorted(m.applied for m in again) == [False, True] and reg.alias(NAME, "champion") == next(m.to_version for m in again if m.applied)
