"""The training flow: validate -> features -> train (own flow, maybe on a work pool) -> evaluate -> register.

Every run is one MLflow run holding the resolved config, data md5, git commit, backbone identity,
seed, package versions, metrics, plots, validation report and the promotion decision.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger

from flows.features import features_of
from flows.prefect_outage import ride_out_restarts
from flows.train_step import RESULT_FILE, train_step_flow
from tasks.evaluate import evaluate_task
from tasks.register import register_task
from tasks.tracking import REPO_ROOT, describe_version, log_dataset_inputs, tracked_run
from tasks.validate import check_registered_kind, validate_task
from tlops.config import RunConfig, config_from_dict
from tlops.data_version import recorded_data_version
from tlops.model_card import card_facts, render_model_card
from tlops.pipeline import finish
from tlops.records import TRAIN_RESULT, FeatureSet, RunOutcome, TrainResult
from tlops.resolve import open_dataset
from tlops.secrets import mask
from tlops.selection_record import SelectionRecord, selection_file

TRAIN_STEP_DEPLOYMENT = "tlops-train-step"
MODEL_CARD = "model_card.html"  # the run's one-page model card artifact


def resolve_paths(cfg: RunConfig) -> RunConfig:
    """Absolute paths, so a worker in another process (or cwd) reads and writes the same files."""
    cfg = cfg.model_copy(deep=True)
    cfg.data.path = str(Path(cfg.data.path).resolve())
    if cfg.data.dvc_cache:
        cfg.data.dvc_cache = str(Path(cfg.data.dvc_cache).resolve())
    cfg.features.cache_dir = str(Path(cfg.features.cache_dir).resolve())
    cfg.execution.work_dir = str(Path(cfg.execution.work_dir).resolve())
    return cfg


def _pool_hint(state, pool: str) -> str:
    """What to do about a train step that did not complete on the pool, by how it ended."""
    if state is None or state.is_scheduled() or state.is_pending():
        return f"no worker started it within execution.pool_timeout_s: is a worker running? `prefect worker start --pool {pool}`"
    if state.is_crashed():
        return "the worker's flow-run process died (killed, or out of memory): run the same command again to resume from its last checkpoint"
    return "its logs are in the Prefect UI (flow run above)"


def run_train_step(cfg: RunConfig, run_id: str, features: FeatureSet, out_dir: str) -> TrainResult:
    """In-process subflow by default; with execution.train_pool, a deployment run on that pool's worker
    (parameters and the result cross the process boundary as JSON)."""
    params = {"config": cfg.model_dump(mode="json"), "run_id": run_id, "features": features.model_dump(mode="json"), "out_dir": out_dir}
    pool = cfg.execution.train_pool
    if not pool:
        return train_step_flow(**params)
    from prefect.deployments import run_deployment

    remote = train_step_flow.from_source(source=str(REPO_ROOT), entrypoint="flows/train_step.py:train_step_flow")
    remote.deploy(name=TRAIN_STEP_DEPLOYMENT, work_pool_name=pool, build=False, push=False, print_next_steps=False)
    run = run_deployment(f"tlops-train-step/{TRAIN_STEP_DEPLOYMENT}", parameters=params,
                         timeout=cfg.execution.pool_timeout_s, poll_interval=1)
    if not run.state or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise RuntimeError(f"train step on work pool {pool!r} ended {state}: {run.state.message if run.state else ''} "
                           f"(flow run {run.id}); {_pool_hint(run.state, pool)}")
    result = TRAIN_RESULT.validate_json((Path(out_dir) / RESULT_FILE).read_text())
    result.execution.flow_run_id = str(run.id)
    result.execution.work_pool = pool
    return result


@flow(name="tlops-train")
def train_flow(config: dict, source: str = "(api)", progress: bool = True, checked: dict | None = None) -> RunOutcome:
    """The whole run. `checked`: the validation `tlops run` did before starting the flow (see `validate_task`)."""
    cfg = resolve_paths(config_from_dict(config, source))
    log = get_run_logger()
    with ride_out_restarts(), tracked_run(cfg, source) as (client, run_id):
        work = Path(cfg.execution.work_dir) / run_id
        checks = validate_task(cfg, run_id, checked)
        started = client.get_run(run_id)
        tags = started.data.tags  # lineage recorded when the run started
        data_ver = recorded_data_version(tags) or ""  # the one form tables, card and audit show (tlops/data_version.py)
        ds = open_dataset(cfg)
        check_registered_kind(cfg, client, ds.modality, ds.task)  # before features and training, not in the gate at the end
        rows = log_dataset_inputs(client, run_id, ds, data_ver)
        feats = features_of(cfg, run_id, str(work / "features"), progress=progress)
        result = run_train_step(cfg, run_id, feats, str(work / "train"))
        ev = evaluate_task(cfg, run_id, feats, result, str(work / "eval"))

        def card(reg=None) -> str:
            facts = card_facts(cfg, run_id=run_id, modality=ds.modality, task=ds.task, rows=rows, tags=tags, version=reg.version if reg else None)
            return render_model_card(facts, feats, result, ev, checks, reg.gate if reg else None)

        client.log_text(run_id, card(), MODEL_CARD)  # before registering: a card that cannot render fails the run before any version exists
        reg = register_task(cfg, run_id, feats, result, ev.metrics, str(work / "package"), source=source)
        describe_version(client, reg.model_name, reg.version, run_id=run_id, strategy=cfg.strategy.name, backbone=cfg.backbone.name,
                         data_path=cfg.data.path, data_ver=data_ver, rows=rows, metrics=ev.metrics, gate=reg.gate.reason,
                         card=MODEL_CARD)
        client.log_text(run_id, card(reg), MODEL_CARD)  # again, now with the version and the gate's decision
        chosen = selection_file(result)  # read before the work folder goes
        selection = SelectionRecord.load(chosen).model_dump(mode="json") if chosen is not None else None
    shutil.rmtree(work, ignore_errors=True)  # everything worth keeping is in MLflow now
    finish(result)
    log.info("registered %s version %s aliases=%s: %s", reg.model_name, reg.version, reg.aliases, reg.gate.reason)
    execution = result.execution
    return RunOutcome(
        run_id=run_id, experiment=cfg.tracking.experiment, experiment_id=started.info.experiment_id, tracking_uri=mask(mlflow.get_tracking_uri()), model_name=reg.model_name,
        version=reg.version, aliases=reg.aliases, promotion=reg.gate, test_metrics=ev.metrics, val_metrics=result.val_metrics,
        cache=feats.cache, backbone=cfg.backbone.name, strategy=cfg.strategy.name,
        best_epoch=result.loop.best_epoch if result.loop else None, resumed_from=result.loop.resumed_from if result.loop else None,
        train_executed_by=execution, work_pool=execution.work_pool if execution else None,
        train_flow_run_id=execution.flow_run_id if execution else None, flow_pid=os.getpid(), baseline=ev.baseline,
        selection=selection,
    )
