"""Scheduled and data-triggered retraining as Prefect deployments.

`schedule()` deploys, under one name, two deployments on a work pool:
- `tlops-train/<name>`: the training flow with the config as its parameters (resolved: absolute paths,
  so the worker runs exactly what was scheduled), on a cron or interval schedule (or none), and with a
  `DeploymentEventTrigger` on `tlops.data.changed` for this dataset, debounced by the trigger's `within`;
- `tlops-watch/<name>`: a small flow every `watch_every` seconds that compares the data's DVC md5 with the
  champion's and announces a change once (`emit_event`); unchanged data starts nothing.
With `retrain_on_drift`, `tlops-train/<name>` also carries a `DeploymentEventTrigger` on `tlops.data.drift` for its
model (`drift_trigger`): the scheduled drift check of flows/drift_flow.py (`tlops schedule drift`) retrains it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect import flow, get_run_logger

from flows.train import resolve_paths
from tasks.tracking import REPO_ROOT, default_tracking_uri
from tlops.config import RunConfig, config_from_dict
from tlops.retrain import DATA_CHANGED_EVENT, check_schedule_name, dataset_resource, watch_decision

TRAIN_FLOW, WATCH_FLOW, DRIFT_FLOW = "tlops-train", "tlops-watch", "tlops-drift"  # DRIFT_FLOW: flows/drift_flow.py


def require_server() -> str:
    """The Prefect server a schedule lives on (PREFECT_API_URL, from the environment or the Prefect profile). Without
    one Prefect would start a temporary server that ends with this command, taking the schedule with it: refused in
    one line instead, before anything starts."""
    from prefect.settings import PREFECT_API_URL

    from tlops.errors import ConfigError

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError("tlops schedule needs a Prefect server that outlives this command (a schedule lives on it, and a "
                          "worker on its work pool runs it): set PREFECT_API_URL, e.g. start the team stack with "
                          "`docker/stack.sh up && eval \"$(docker/stack.sh env)\"`, or `prefect config set PREFECT_API_URL=...`")
    return url


def _announced_variable(name: str) -> str:
    return f"tlops-watch-{name}".lower().replace(".", "-").replace("_", "-")


@flow(name=WATCH_FLOW)
def watch_flow(config: dict, schedule: str) -> dict:
    """Announce `tlops.data.changed` when the data differs from the champion's training data (once per version)."""
    from prefect.events import emit_event
    from prefect.variables import Variable

    from tasks.operate import connect
    from tlops.aliases import CHAMPION
    from tlops.data.versions import dir_md5

    cfg = config_from_dict(config)
    log = get_run_logger()
    current = dir_md5(Path(cfg.data.path))
    reg = connect(cfg.tracking.uri)
    version = reg.alias(cfg.registry.model_name, CHAMPION)
    champion_data = None
    if version is not None:
        run_id = reg.client.get_model_version(cfg.registry.model_name, version).run_id
        champion_data = reg.client.get_run(run_id).data.tags.get("data.version_md5")
    variable = _announced_variable(schedule)
    decision = watch_decision(current, version, champion_data, Variable.get(variable, default=None))
    log.info(decision.message)
    if decision.announce:
        emit_event(event=DATA_CHANGED_EVENT, resource={"prefect.resource.id": dataset_resource(schedule), "prefect.resource.name": cfg.data.path,
                                                       "tlops.data.version": current, "tlops.model": cfg.registry.model_name})
        Variable.set(variable, current, overwrite=True)
    return {"announced": decision.announce, "data": current, "champion": version, "message": decision.message}


def schedule(cfg: RunConfig, name: str, pool: str, cron: str | None = None, interval: float | None = None,
             watch_every: float | None = 300, debounce: float = 60, retrain_on_drift: bool = False) -> dict:
    """Create or update the deployments of `name` (see the module doc). Returns their ids."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    check_schedule_name(name)
    cfg = resolve_paths(cfg)
    cfg.tracking.uri = default_tracking_uri(cfg.tracking.uri)  # the worker writes to the store this command saw
    params = cfg.model_dump(mode="json")
    triggers = []
    if watch_every:
        triggers.append(DeploymentEventTrigger(
            name=f"{name}: retrain on data change", expect={DATA_CHANGED_EVENT}, match={"prefect.resource.id": dataset_resource(name)},
            posture="Reactive", threshold=1, within=timedelta(seconds=debounce), schedule_after=timedelta(seconds=debounce),
            parameters={"config": params, "source": f"trigger:{DATA_CHANGED_EVENT} ({name})"}))
    if retrain_on_drift:
        triggers.append(drift_trigger(name, cfg.registry.model_name, params))
    train = flow.from_source(source=str(REPO_ROOT), entrypoint="flows/train.py:train_flow")
    ids = {"train": str(train.deploy(name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False,
                                     cron=cron, interval=interval, triggers=triggers,
                                     parameters={"config": params, "source": f"schedule:{name}"},
                                     description=f"tlops retraining of {cfg.registry.model_name} on {cfg.data.path}", tags=["tlops"]))}
    if watch_every:
        watch = flow.from_source(source=str(REPO_ROOT), entrypoint="flows/schedule.py:watch_flow")
        ids["watch"] = str(watch.deploy(name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False,
                                        interval=watch_every, parameters={"config": params, "schedule": name},
                                        # ticks never pile up behind a slow worker: a tick that finds one running is dropped
                                        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
                                        description=f"tlops data watch for {name}", tags=["tlops"]))
    return ids


def drift_trigger(name: str, model: str, params: dict):
    """Retrain when a drift check of `model` (`tlops schedule drift`, flows/drift_flow.py) announces `tlops.data.drift`
    with verdict `drift`; the run's source names the check's MLflow run (`trigger:tlops.data.drift (<name>) drift:<run id>`,
    rendered by Prefect from the event)."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from tlops.drift import DRIFT_EVENT, drift_trigger_match, drift_trigger_source

    return DeploymentEventTrigger(name=f"{name}: retrain on drift", expect={DRIFT_EVENT}, match=drift_trigger_match(model),
                                  posture="Reactive", threshold=1, parameters={"config": params, "source": drift_trigger_source(name)})


def list_schedules() -> list[dict]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        watched = {d.name for d in client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[WATCH_FLOW])))}
        rows = []
        for dep in client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[TRAIN_FLOW]))):
            schedules = [str(getattr(s.schedule, "cron", None) or getattr(s.schedule, "interval", None)) for s in dep.schedules]
            config = dep.parameters.get("config", {})
            rows.append({"name": dep.name, "model": config.get("registry", {}).get("model_name"), "data": config.get("data", {}).get("path"),
                         "pool": dep.work_pool_name, "schedule": ", ".join(schedules) or "-", "paused": dep.paused,
                         "data_trigger": dep.name in watched, "kind": "retrain"})
        for dep in client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[DRIFT_FLOW]))):  # `tlops schedule drift`
            schedules = [str(getattr(s.schedule, "cron", None) or getattr(s.schedule, "interval", None)) for s in dep.schedules]
            rows.append({"name": dep.name, "model": dep.parameters.get("model_uri"), "data": dep.parameters.get("data"),
                         "pool": dep.work_pool_name, "schedule": ", ".join(schedules) or "-", "paused": dep.paused,
                         "data_trigger": False, "kind": "drift check"})
        return sorted(rows, key=lambda r: (r["name"], r["kind"]))


def remove_schedule(name: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    removed = []
    with get_client(sync_client=True) as client:
        for flow_name in (TRAIN_FLOW, WATCH_FLOW, DRIFT_FLOW):
            try:
                dep = client.read_deployment_by_name(f"{flow_name}/{name}")
            except ObjectNotFound:
                continue
            client.delete_deployment(dep.id)
            removed.append(f"{flow_name}/{name}")
    return removed
