"""`tlops run --experiment NAME --run-name NAME --tracking-uri URI` and the --set overrides in the run's name, through the command line
in-process (issue 27 item 4). A data error ends the command before any flow starts but still records its FAILED run,
named and placed as a trained one would be: the cheap way to see where `tlops run` logs."""

from __future__ import annotations

import os

import yaml
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tests.helpers import tiny_config


def _failing_config(tmp_path, text_dataset, tiny_bert, **tracking) -> tuple[str, MlflowClient]:
    (text_dataset / "test.csv").write_text("text,label\n")  # an empty test split: validation fails at once
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert)
    cfg["tracking"] = {"uri": cfg["tracking"]["uri"], **tracking}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / "c.yaml"), MlflowClient(cfg["tracking"]["uri"])


def _runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, [e.name for e in client.search_experiments()]
    return client.search_runs([exp.experiment_id])


def test_run_logs_in_the_model_s_experiment_with_the_overrides_in_its_name(tmp_path, text_dataset, tiny_bert):
    path, client = _failing_config(tmp_path, text_dataset, tiny_bert)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = cli("run", path, "--set", "strategy.C=0.1", env=env)
    assert out.returncode == 1 and "FAILED MLflow run" in out.stderr, out.stderr
    (run,) = _runs(client, "tiny-text")  # the model's name: the config names no experiment
    assert run.info.run_name.startswith("tiny-text-") and run.info.run_name.endswith(" strategy.C=0.1"), run.info.run_name


def test_experiment_and_run_name_options(tmp_path, text_dataset, tiny_bert):
    path, client = _failing_config(tmp_path, text_dataset, tiny_bert, experiment="from-the-file")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    other = f"sqlite:///{tmp_path}/other/mlflow.db"  # --tracking-uri, as the registry commands take it (issue 27 item 11)
    out = cli("run", path, "--experiment", "2024", "--run-name", "C small [/b]", "--set", "strategy.C=0.1", "--tracking-uri", other,
              env=env)
    assert out.returncode == 1 and "FAILED MLflow run" in out.stderr, out.stderr
    (run,) = _runs(MlflowClient(other), "2024")  # a name, as typed (not the number 2024)
    assert run.info.run_name == "C small [/b]"
    assert MlflowClient(other).get_experiment_by_name("from-the-file") is None
    assert not (tmp_path / "mlruns" / "mlflow.db").exists() or client.get_experiment_by_name("2024") is None
