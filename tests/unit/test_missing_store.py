"""A SQLite tracking URI whose file does not exist is refused by the commands that only read (issue 27): one `error:`
line naming the path and the fix, exit 1, and no empty store created there (MLflow would create one and answer that
nothing is registered)."""

from __future__ import annotations

import os

import pytest

from tests.cli import cli

READ_ONLY = [["models"], ["models", "tiny"], ["history", "tiny"], ["compare", "models:/tiny/1", "models:/tiny/2"],
             ["predict", "models:/tiny@champion", "some text"], ["evaluate", "models:/tiny/1", "--data", "rows.csv"],
             ["serve", "models:/tiny@champion", "--port", "0"], ["audit", "models:/tiny@champion"],
             ["predict", "runs:/0123456789abcdef0123456789abcdef/model", "x"]]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a[:2]))
def test_a_missing_sqlite_file_is_refused_not_created(tmp_path, args):
    db = tmp_path / "does" / "not" / "exist.db"
    (tmp_path / "rows.csv").write_text("text,label\nsome text,a\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    r = cli(*args, "--tracking-uri", f"sqlite:///{db}", env=env, cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"no MLflow store at {db}: that SQLite file does not exist (from --tracking-uri)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not db.exists() and not (tmp_path / "does").exists()
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_the_default_store_missing_says_where_it_looked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    r = cli("models", env=env, cwd=tmp_path)
    assert r.returncode == 1 and f"no MLflow store at {tmp_path / 'mlruns' / 'mlflow.db'}" in r.stderr, r.stderr
    assert "(the default store, under the current folder)" in r.stderr and not (tmp_path / "mlruns").exists()
    r = cli("history", "tiny", env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/x.db"}, cwd=tmp_path)
    assert r.returncode == 1 and "(from MLFLOW_TRACKING_URI)" in r.stderr and not (tmp_path / "x.db").exists(), r.stderr
