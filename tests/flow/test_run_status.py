"""A tlops run's MLflow run stays RUNNING between its logging blocks until tracked_run sets the final status: a run
killed at any moment (kill -9, a lost machine) is then found RUNNING by the next run on the host and marked KILLED
(tests/system/test_orphans.py does that end to end). `with mlflow.start_run(run_id)` ended it FINISHED for a moment."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient


def test_a_logging_block_leaves_the_run_running_even_when_it_raises(tmp_path):
    from tasks.tracking import init_sqlite_store, run_left_running

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    init_sqlite_store(uri)
    mlflow.set_tracking_uri(uri)  # the fluent API's store, as setup(cfg) sets it; the conftest restores the URIs
    client = MlflowClient(uri, registry_uri=uri)
    run_id = client.create_run(client.create_experiment("status")).info.run_id
    with run_left_running(run_id):
        mlflow.log_text("seed: 0\n", "config.yaml")
        assert mlflow.active_run().info.run_id == run_id
    assert client.get_run(run_id).info.status == "RUNNING" and mlflow.active_run() is None
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]
    with pytest.raises(ValueError), run_left_running(run_id):
        raise ValueError("a failed log_model")
    assert client.get_run(run_id).info.status == "RUNNING" and mlflow.active_run() is None
