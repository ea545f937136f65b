"""The feature step of a run: one task, or (with `features.shard_rows`) a flow of its own that maps one task per shard
over the configured task runner: one after another in this process (`execution.task_runner: local`) or on Dask workers
(`dask`: the scheduler at `execution.dask_address`, or a local cluster of `execution.dask_workers` processes)."""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from flows.prefect_heartbeats import stop_heartbeats_promptly
from tasks.features import assemble_task, embed_shard_task, features_task, log_features, plan_shards_task
from tlops.config import RunConfig, config_from_dict
from tlops.records import FeatureSet

stop_heartbeats_promptly()  # each flow run would wait up to 1 s for its heartbeat thread


def task_runner_of(cfg: RunConfig):
    """The runner the shard tasks go to."""
    ex = cfg.execution
    if ex.task_runner == "local":
        return ThreadPoolTaskRunner(max_workers=1)  # one shard at a time: the single-process step, with every shard a task
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        from tlops.errors import ConfigError

        raise ConfigError("execution.task_runner: dask needs prefect-dask; install the team extra: pip install -e '.[team]'") from None
    if ex.dask_address:
        return DaskTaskRunner(address=ex.dask_address)
    # at the end of the features step the nanny kills each worker that is still draining Prefect's event and log
    # services after 4 s, with a warning per worker: expected, not the user's concern
    logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    # worker processes, one task and one torch thread each (Dask's nanny sets OMP_NUM_THREADS=1): the cores are split
    # between workers instead of every worker fighting over all of them
    return DaskTaskRunner(cluster_kwargs={"n_workers": ex.dask_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


@flow(name="tlops-features")
def sharded_features_flow(config: dict, out_dir: str, progress: bool = False) -> FeatureSet:
    """Plan the shards, embed each as its own task on this flow's task runner, assemble the splits from the cache."""
    cfg = config_from_dict(config)
    plan = plan_shards_task(cfg, out_dir, progress=progress)
    bars = progress and cfg.execution.task_runner == "local"  # bars drawn from Dask workers would interleave
    done = embed_shard_task.map(unmapped(cfg), unmapped(plan.namespace), plan.shards, progress=unmapped(bars)).result()
    return assemble_task(cfg, plan, done)


def features_of(cfg: RunConfig, run_id: str, out_dir: str, progress: bool = True) -> FeatureSet:
    """The run's features, logged to its MLflow run: sharded on the configured runner, or in one task."""
    if not cfg.features.shard_rows:
        return features_task(cfg, run_id, out_dir, progress=progress)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    sharded = sharded_features_flow.with_options(task_runner=task_runner_of(cfg))
    feats = sharded(cfg.model_dump(mode="json"), out_dir, progress=progress)
    log_features(cfg, run_id, feats)
    return feats
