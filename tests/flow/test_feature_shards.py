"""Sharded features (issue 14, scale-out): the plan, the single-process sharded step, and the same shards mapped over a
real 2-worker Dask cluster through Prefect; plus the cache's cleanup of temp files a killed writer left behind."""

from __future__ import annotations

import numpy as np

from tests.unit.test_feature_shards import SHARD_ROWS, _arrays, _cache_files, _cfg
from tlops.pipeline import features_step


def test_two_dask_workers_give_the_single_process_features_and_cache_files(tiny_bert, text_dataset, tmp_path, prefect_api):
    """A real LocalCluster of 2 workers (threads of this process, processes=False: no worker needs seconds to import
    torch, and tasks still go through the scheduler and Prefect's DaskTaskRunner) gets the shards by address."""
    from distributed import LocalCluster

    from flows.features import sharded_features_flow, task_runner_of

    single = features_step(_cfg(tmp_path, text_dataset, tiny_bert, "c-single", features__shard_rows=SHARD_ROWS), tmp_path / "single")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        cfg = _cfg(tmp_path, text_dataset, tiny_bert, "c-dask", features__shard_rows=SHARD_ROWS, execution__task_runner="dask",
                   execution__dask_address=cluster.scheduler_address)

        def on_dask(out: str):
            flow = sharded_features_flow.with_options(task_runner=task_runner_of(cfg))
            return flow(cfg.model_dump(mode="json"), str(tmp_path / out))

        feats = on_dask("dask")
        executed = [w.state.executed_count for w in cluster.workers.values()]
        assert len(executed) == 2 and min(executed) >= 1, f"tasks run per worker: {executed}"
        for split, x in _arrays(single).items():
            # the same plan: every shard embeds the same rows in the same batches, so the floats are the same bits
            np.testing.assert_array_equal(_arrays(feats)[split], x, err_msg=split)
            np.testing.assert_array_equal(feats.arrays(split)[1], single.arrays(split)[1])
        assert _cache_files(tmp_path / "c-dask") == _cache_files(tmp_path / "c-single")  # same namespace, same shard digests
        assert (feats.cache.hits, feats.cache.misses) == (0, 72) and feats.cache.backbone_calls > 0

        again = on_dask("dask-again")
        assert (again.cache.hits, again.cache.misses, again.cache.backbone_calls) == (72, 0, 0)
        assert _cache_files(tmp_path / "c-dask") == _cache_files(tmp_path / "c-single")
        for split, x in _arrays(single).items():
            np.testing.assert_array_equal(_arrays(again)[split], x, err_msg=split)
