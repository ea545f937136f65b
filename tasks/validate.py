from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient
from prefect import task

from tasks.tracking import log_json, setup, tracked_run
from tlops.config import RunConfig
from tlops.data.versions import dir_md5
from tlops.errors import TlopsError, ValidationFailed
from tlops.pipeline import validate_step
from tlops.records import ValidationReport


def record_validation(client: MlflowClient, run_id: str, report: ValidationReport) -> None:
    log_json(client, run_id, report.model_dump(mode="json"), "validation/report.json")
    client.set_tag(run_id, "tlops.validation", "passed" if report.success else "failed")


@task(name="validate")
def validate_task(cfg: RunConfig, run_id: str, checked: dict | None = None) -> ValidationReport:
    """Great Expectations checks; the report is logged to MLflow whether they pass or fail. `checked`: the report
    `tlops run` made moments ago, before any server was needed, and the data md5 it checked — reused while the
    data is unchanged, so a run validates once."""
    client, _ = setup(cfg)
    if checked and checked["data_md5"] and checked["data_md5"] == dir_md5(Path(cfg.data.path)):
        report = ValidationReport.model_validate(checked["report"])
        record_validation(client, run_id, report)
        return report
    try:
        report = validate_step(cfg)
    except ValidationFailed as e:
        record_validation(client, run_id, e.report)
        raise
    record_validation(client, run_id, report)
    return report


def record_failed_check(cfg: RunConfig, source: str, error: TlopsError) -> str:
    """The FAILED MLflow run (error tag, lineage, and the report of a failed validation) of a run whose data
    failed before its flow started."""
    try:
        with tracked_run(cfg, source) as (client, run_id):
            if isinstance(error, ValidationFailed):
                record_validation(client, run_id, error.report)
            raise error
    except TlopsError:
        return run_id
