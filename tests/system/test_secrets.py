"""Credentials in URIs never reach a store or an output: a password planted in the tracking URI (by
`--set` and by $MLFLOW_TRACKING_URI) is searched for, after real runs against a real MLflow server and
a real Prefect server, in every file those servers and the runs wrote, and in everything printed. (Masking itself:
tests/unit/test_secrets.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.helpers import tiny_config
from tests.servers import free_port, tlops_cli
from tests.unit.test_secrets import TOKEN
from tlops.secrets import mask

PASSWORD = "PLANTED-pw-8f3a"


def _grep(root, needle: str) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                if needle.encode() in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                pass
    return hits


def test_a_planted_password_is_in_no_store_and_no_output(tmp_path, text_dataset, tiny_bert, prefect_api, mlflow_server):
    """The session's Prefect server (the test harness) and MLflow server; the runs and commands are real processes
    (everything they print is searched, Prefect's own log lines included)."""
    import os

    import prefect.settings

    url, mlflow_root = mlflow_server
    # in the environment of every run and command below; PREFECT_HOME: whatever the Prefect client keeps is searched too
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(tmp_path / "prefect-home"), "TLOPS_TEST_API_TOKEN": TOKEN}
    prefect_db = Path(prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1]).parent
    secret_url = url.replace("http://", f"http://alice:{PASSWORD}@")
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, registry__model_name="secret", tracking__uri=None)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    outputs = []
    by_set = tlops_cli("run", str(tmp_path / "c.yaml"), "--set", f"tracking.uri={secret_url}", "--json", env=env)
    by_env = tlops_cli("run", str(tmp_path / "c.yaml"), "--json", env={**env, "MLFLOW_TRACKING_URI": secret_url})
    for out in (by_set, by_env):
        assert out.returncode == 0, mask(out.stderr[-3000:])
        outputs += [out.stdout, out.stderr]
    assert json.loads(by_env.stdout.strip().splitlines()[-1])["version"] == "2"  # both reached the server
    history = tlops_cli("history", "secret", "--json", "--tracking-uri", secret_url, env=env)
    dead = tlops_cli("run", str(tmp_path / "c.yaml"), "--set",
                     f"tracking.uri=http://alice:{PASSWORD}@127.0.0.1:{free_port()}", env=env, timeout=120)
    assert dead.returncode == 1 and "is unreachable" in dead.stderr, dead.stderr[-2000:]  # in seconds, one line
    outputs += [history.stdout, history.stderr, dead.stdout, dead.stderr]
    for secret in (PASSWORD, TOKEN):
        assert not [o for o in outputs if secret in o], f"{secret} printed"
        for root in (tmp_path, mlflow_root, prefect_db):  # work folders; MLflow's db and artifacts; Prefect's db
            assert _grep(root, secret) == [], f"{secret} stored"
