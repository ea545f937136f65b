from __future__ import annotations

from prefect import task

from tasks.tracking import log_json, setup
from tlops.config import RunConfig
from tlops.errors import ValidationFailed
from tlops.pipeline import validate_step
from tlops.records import ValidationReport


@task(name="validate")
def validate_task(cfg: RunConfig, run_id: str) -> ValidationReport:
    """Great Expectations checks; the report is logged to MLflow whether they pass or fail."""
    client, _ = setup(cfg)
    try:
        report = validate_step(cfg)
    except ValidationFailed as e:
        log_json(client, run_id, e.report.model_dump(mode="json"), "validation/report.json")
        client.set_tag(run_id, "tlops.validation", "failed")
        raise
    log_json(client, run_id, report.model_dump(mode="json"), "validation/report.json")
    client.set_tag(run_id, "tlops.validation", "passed")
    return report
