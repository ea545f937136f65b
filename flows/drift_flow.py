"""The scheduled drift check (`tlops schedule drift MODEL_URI --data PATH --cron ...`): a Prefect deployment
`tlops-drift/<name>` whose run checks the inputs at PATH against the model's training data (`flows.drift.check`, what
`tlops drift` does), logs the check as an MLflow run tagged with the model version and its event's id, and emits the
Prefect event `tlops.data.drift` (`tlops.drift.drift_event`: the model as the resource, the verdict and the numbers in
the payload). A `drift` verdict asks for a retrain once per champion version and inputs file (the resource label
`tlops.drift.announce`); a retrain deployment scheduled with `--retrain-on-drift` (`flows.schedule.drift_trigger`)
runs on that."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from prefect import flow, get_run_logger

from tasks.tracking import REPO_ROOT, default_tracking_uri
from tlops.retrain import check_schedule_name

DRIFT_FLOW = "tlops-drift"


def _announced_variable(name: str) -> str:
    return f"tlops-drift-{name}".lower().replace(".", "-").replace("_", "-")


@flow(name=DRIFT_FLOW)
def drift_flow(model_uri: str, data: str, schedule: str, tracking_uri: str | None = None, reference: str = "train",
               alpha: float = 0.01, auc: float = 0.75, permutations: int = 500, cache_dir: str = ".tlops/cache") -> dict:
    """Check `data` for drift from `model_uri`'s training data; log the check; emit `tlops.data.drift`."""
    from prefect.events import emit_event
    from prefect.variables import Variable

    from flows.drift import check, log_run
    from tlops.drift import announce_key, drift_event, should_announce

    log = get_run_logger()
    result, x_ref, x_new = check(model_uri, Path(data), tracking_uri, reference=reference, alpha=alpha, auc=auc,
                                 permutations=permutations, cache_dir=Path(cache_dir))
    variable = _announced_variable(schedule)
    key = announce_key(result["version"], result["data_md5"])
    announce = should_announce(result["verdict"], key, Variable.get(variable, default=None))
    event_id = uuid4()  # the check's run and its event name each other
    result["run_id"] = log_run(result, x_ref, x_new, tags={"tlops.drift.event": str(event_id), "tlops.drift.schedule": schedule,
                                                          "tlops.drift.announce": str(announce).lower()})
    emit_event(id=event_id, **drift_event(result, schedule, announce))
    if announce:
        Variable.set(variable, key, overwrite=True)
    log.info(f"{result['verdict']}: MMD p-value {result['mmd_p_value']:.4f}, domain-classifier AUC {result['domain_auc']:.3f} "
             f"({result['new_rows']} new inputs vs {result['reference_rows']}); MLflow run {result['run_id']}, event {event_id}"
             + ("; a retrain is asked for" if announce else ""))
    return {k: result[k] for k in ("verdict", "mmd_p_value", "domain_auc", "run_id", "version")} | {"event_id": str(event_id),
                                                                                                      "announced": announce}


def deploy_drift_check(model_uri: str, data: Path, name: str, pool: str, cron: str | None = None, interval: float | None = None,
                       tracking_uri: str | None = None, **options) -> str:
    """Create or update the deployment `tlops-drift/<name>` (absolute paths and the tracking URI this command saw, so
    the worker checks exactly what was scheduled). Returns its id."""
    from prefect.client.schemas.objects import (
        ConcurrencyLimitConfig,
        ConcurrencyLimitStrategy,
    )

    check_schedule_name(name)
    params = {"model_uri": model_uri, "data": str(Path(data).resolve()), "schedule": name,
              "tracking_uri": default_tracking_uri(tracking_uri), **options}
    if "cache_dir" in params:
        params["cache_dir"] = str(Path(params["cache_dir"]).resolve())
    dep = flow.from_source(source=str(REPO_ROOT), entrypoint="flows/drift_flow.py:drift_flow")
    return str(dep.deploy(name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False, cron=cron,
                          interval=interval, parameters=params,
                          concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
                          description=f"tlops drift check of {model_uri} on {data}", tags=["tlops"]))
