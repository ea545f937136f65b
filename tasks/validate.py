from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient
from prefect import task

from tasks.tracking import log_json, setup, tracked_run
from tlops.config import RunConfig
from tlops.data.versions import dir_md5
from tlops.errors import ConfigError, TlopsError, ValidationFailed
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


def _registered_kind(client: MlflowClient, name: str) -> tuple[str, str, str] | None:
    """(version, modality, task) of the model registered as `name`: its champion, else its newest version, from the
    package's own metadata (`tlops_model.json`); None when there is none or its package cannot be read."""
    import json
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.registry import CHAMPION, Registry
    from tlops.package import META_FILE

    try:
        version = Registry(client).alias(name, CHAMPION)
        if version is None:
            found = client.search_model_versions(f"name='{name}'")
            if not found:
                return None
            version = str(max(int(v.version) for v in found))
        with tempfile.TemporaryDirectory(prefix="tlops-kind-") as tmp:
            # MLflow's URIs are this run's store (`setup`), as for the gate's own download of the champion
            path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}/artifacts/package/{META_FILE}", dst_path=tmp)
            meta = json.loads(Path(path).read_text())
    except (MlflowException, OSError, ValueError):
        return None  # not one tlops can read (a half-registered version, another tool's model): the gate will say
    return version, str(meta.get("modality")), str(meta.get("task") or "classification")


def check_registered_kind(cfg: RunConfig, client: MlflowClient, modality: str, task: str) -> None:
    """Refuse, before any feature or training step, a run under a registered model name that belongs to a model of another
    modality or task: its gate would score that champion on this run's data (an image model on audio files) after
    the whole training."""
    name = cfg.registry.model_name
    found = _registered_kind(client, name)
    if found is None:
        return
    version, their_modality, their_task = found
    if (their_modality, their_task) == (modality, task):
        return
    suffix = modality if modality != their_modality else task
    raise ConfigError(f"registry.model_name {name!r} is {_a(their_modality)} {their_task} model (v{version}), and this run trains "
                      f"{_a(modality)} {task} model on {cfg.data.path}: one registered name holds one kind of model (its gate "
                      f"compares versions on the same inputs); choose another registry.model_name, e.g. --set "
                      f"registry.model_name={name}-{suffix}")


def _a(kind: str) -> str:
    return f"{'an' if kind[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {kind}"


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
