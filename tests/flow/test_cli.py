"""The command line in-process (typer's runner): data errors that fail fast, the flow's reuse of the CLI's data check, and
`tlops evaluate` on a registered model."""

from __future__ import annotations

import json
import os

import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import tiny_config
from tests.cli import cli



def test_a_data_error_fails_fast_before_any_server_and_is_recorded(tmp_path, text_dataset, tiny_bert):
    """The data is checked before Prefect (or its temporary server) is needed: one clean message, no traceback,
    no Prefect database created, and still a FAILED MLflow run holding the validation report."""
    rows = (text_dataset / "train.csv").read_text().splitlines()
    rows[3] = ",animal"  # an empty text on line 4
    (text_dataset / "train.csv").write_text("\n".join(rows) + "\n")
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    out = cli("run", str(tmp_path / "c.yaml"), env=env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines()[1].startswith("error:") and "train.csv line 4" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) < 15, out.stderr
    assert not (tmp_path / "prefect-home" / "prefect.db").exists(), "a Prefect server was started for a data error"
    client = MlflowClient(cfg["tracking"]["uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["tlops.validation"] == "failed" and run.info.run_id in out.stderr
    assert "ValidationFailed" in run.data.tags["tlops.error"]
    # the filters README's "Filtering runs" gives for the MLflow UI's search box (the same syntax as search_runs)
    exp = [run.info.experiment_id]
    assert run.data.tags["tlops.outcome"] == "invalid_data"
    assert [r.info.run_id for r in client.search_runs(exp, "tags.tlops.outcome = 'invalid_data'")] == [run.info.run_id]
    assert client.search_runs(exp, "attributes.status = 'FINISHED'") == client.search_runs(exp, "tags.tlops.outcome = 'finished'") == []


def test_the_flow_reuses_the_cli_check_only_for_the_same_data(tmp_path, text_dataset, tiny_bert):
    from tasks.tracking import tracked_run
    from tasks.validate import validate_task
    from tlops.config import config_from_dict
    from tlops.data.versions import dir_md5
    from tlops.records import ValidationReport

    cfg = config_from_dict(tiny_config(tmp_path, text_dataset, tiny_bert))
    marker = ValidationReport(success=True, dataset="checked by the CLI", checks=[], rows={}).model_dump(mode="json")
    with tracked_run(cfg, "test") as (_, run_id):
        same = validate_task.fn(cfg, run_id, {"report": marker, "data_md5": dir_md5(text_dataset)})
        changed = validate_task.fn(cfg, run_id, {"report": marker, "data_md5": "0" * 32 + ".dir"})
    assert same.dataset == "checked by the CLI"
    assert changed.dataset != "checked by the CLI" and changed.success and changed.checks  # validated again


def test_evaluate_scores_a_registered_model_on_labelled_data(tmp_path, zoo):
    reg = zoo.text
    logged = reg.results[1].test_metrics  # v2, the champion, scored on this test split by its run
    out = cli("evaluate", reg.model_uri(), "--data", str(reg.data), "--out", str(tmp_path / "eval"), "--json", "--tracking-uri", reg.uri)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rows"] == 18 and report["metrics"] == logged  # the test split again: the run's own numbers
    assert set(report["per_class"]) == {"animal", "food", "vehicle"} and report["labels_unknown_to_the_model"] == []
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000

    no_labels = tmp_path / "texts.csv"
    no_labels.write_text("text\na red car\n")
    bad = cli("evaluate", reg.model_uri(), "--data", str(no_labels), "--tracking-uri", reg.uri)
    assert bad.returncode == 1 and "has no 'label' column" in bad.stderr
