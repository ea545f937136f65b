"""The training flow: validate -> features -> train (own flow, maybe on a work pool) -> evaluate -> register.

Every run is one MLflow run holding the resolved config, data md5, git commit, backbone identity,
seed, package versions, metrics, plots, validation report and the promotion decision.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import mlflow
import yaml
from mlflow.entities import Param, RunStatus
from prefect import flow, get_run_logger

from flows.train_step import RESULT_FILE, train_step_flow
from tasks.evaluate import evaluate_task
from tasks.features import features_task
from tasks.register import register_task
from tasks.tracking import close_orphaned_runs, flatten, log_json, owner_tag, setup
from tasks.validate import validate_task
from tlops.config import RunConfig, config_from_dict
from tlops.errors import TlopsError
from tlops.repro import data_version, git_commit, package_versions

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAIN_STEP_DEPLOYMENT = "tlops-train-step"


def resolve_paths(cfg: RunConfig) -> RunConfig:
    """Absolute paths, so a worker in another process (or cwd) reads and writes the same files."""
    cfg = cfg.model_copy(deep=True)
    cfg.data.path = str(Path(cfg.data.path).resolve())
    cfg.features.cache_dir = str(Path(cfg.features.cache_dir).resolve())
    cfg.execution.work_dir = str(Path(cfg.execution.work_dir).resolve())
    return cfg


def run_train_step(cfg: RunConfig, run_id: str, features_dir: str, out_dir: str) -> dict:
    """In-process subflow by default; with execution.train_pool, a deployment run on that pool's worker."""
    params = {"config": cfg.model_dump(), "run_id": run_id, "features_dir": features_dir, "out_dir": out_dir}
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
                           f"(flow run {run.id}); is a worker running? `prefect worker start --pool {pool}`")
    record = json.loads((Path(out_dir) / RESULT_FILE).read_text())
    record["flow_run_id"] = str(run.id)
    record["work_pool"] = pool
    return record


def _start_run(cfg: RunConfig, source: str) -> str:
    client, exp_id = setup(cfg)
    run = client.create_run(exp_id, tags={"mlflow.runName": f"{cfg.registry.model_name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                          "tlops.strategy": cfg.strategy.name, "tlops.config_source": source,
                                          "tlops.owner": owner_tag()})
    run_id = run.info.run_id
    closed = close_orphaned_runs(client, exp_id, by_run=run_id)
    if closed:
        client.set_tag(run_id, "tlops.closed_orphans", ",".join(closed))
    git = git_commit(REPO_ROOT)
    data = data_version(cfg.data.path)
    params = flatten(cfg.model_dump())
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
    for k, v in {"git.commit": git["commit"] or "none", "git.dirty": str(git["dirty"]), "data.dvc_md5": data["dvc_md5"] or "none",
                 "data.dataset_md5": data["dataset_md5"], "data.dvc_status": data["dvc_status"][:5000],
                 "mlflow.source.git.commit": git["commit"] or "none", "tlops.seed": str(cfg.seed)}.items():
        client.set_tag(run_id, k, v)
    log_json(client, run_id, {"git": git, "data": data, "packages": package_versions()}, "provenance.json")
    with mlflow.start_run(run_id=run_id):
        mlflow.log_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False), "config.yaml")
    client.update_run(run_id, status="RUNNING")
    return run_id


@flow(name="tlops-train")
def train_flow(config: dict, source: str = "(api)", progress: bool = True) -> dict:
    cfg = resolve_paths(config_from_dict(config, source))
    log = get_run_logger()
    client, _ = setup(cfg)
    run_id = _start_run(cfg, source)
    work = Path(cfg.execution.work_dir) / run_id
    try:
        validation = validate_task(cfg, run_id)
        feats = features_task(cfg, run_id, str(work / "features"), progress=progress)
        head = run_train_step(cfg, run_id, feats["dir"], str(work / "train"))
        ev = evaluate_task(cfg, run_id, feats["dir"], head, str(work / "eval"))
        reg = register_task(cfg, run_id, feats["dir"], head, ev["metrics"], str(work / "package"))
    except BaseException as e:
        client.set_tag(run_id, "tlops.error", f"{type(e).__name__}: {e}"[:5000])
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED if isinstance(e, KeyboardInterrupt) else RunStatus.FAILED))
        raise
    client.set_terminated(run_id, "FINISHED")
    shutil.rmtree(work, ignore_errors=True)  # everything worth keeping is in MLflow now
    if head.get("checkpoint_dir"):  # a later run of the same config starts fresh, not from the finished one
        shutil.rmtree(head["checkpoint_dir"], ignore_errors=True)
    log.info("registered %s version %s aliases=%s: %s", reg["model_name"], reg["version"], reg["aliases"], reg["gate"]["reason"])
    return {
        "run_id": run_id, "experiment": cfg.tracking.experiment, "tracking_uri": mlflow.get_tracking_uri(),
        "model_name": reg["model_name"], "version": reg["version"], "aliases": reg["aliases"],
        "promotion": reg["gate"], "test_metrics": ev["metrics"], "val_macro_f1": head["val_macro_f1"],
        "cache": feats["cache"], "validation": validation, "backbone": cfg.backbone.name,
        "strategy": cfg.strategy.name, "train_executed_by": head.get("executed_by"), "work_pool": head.get("work_pool"),
        "train_flow_run_id": head.get("flow_run_id"), "flow_pid": os.getpid(),
        "resumed_from": head.get("resumed_from"), "best_epoch": head.get("best_epoch"),
    }


def is_user_error(e: BaseException) -> bool:
    return isinstance(e, TlopsError)
