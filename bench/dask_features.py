"""Sharded feature step: one process vs 2 Dask workers (issue 14, scale-out), MiniLM on data/text_wordnet, cold cache each.

Modes, each on an empty cache with the same shard plan (features.shard_rows):
- core: `features_step` (tlops.feature_shards.run_sharded), shards one after another, no Prefect: the baseline, with
  torch's default threads (one per core);
- core-1thread: the same with torch.set_num_threads(1) (what each Dask worker gets; on a busy machine 2 OMP threads on 2
  shared cores measured 2.3x slower than 1);
- flow-local: the `tlops-features` subflow on the local runner (one shard task at a time in this process);
- flow-dask: the same subflow on a LocalCluster of 2 worker processes that the run starts (as `tlops run` does);
- flow-dask-warm: the same on a 2-worker LocalCluster already running (passed by address; cluster start not counted).
Usage: python -m bench.dask_features [--shard-rows 500] [--repeat 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import CONFIG, save
from tlops.config import load_config
from tlops.pipeline import features_step


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shard-rows", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from distributed import LocalCluster

    from flows.commands.run import local_prefect_server
    from flows.console import quiet_third_party
    from flows.features import sharded_features_flow, task_runner_of

    quiet_third_party()
    tmp = Path(tempfile.mkdtemp(prefix="tlops-bench-dask-"))
    times: dict[str, list[float]] = {}
    arrays: dict[str, dict] = {}
    files: dict[str, list[str]] = {}
    try:
        with local_prefect_server():
            def run(mode: str, i: int, cluster=None):
                sets = [f"features.cache_dir={tmp / f'cache-{mode}-{i}'}", "data.path=data/text_wordnet",
                        f"features.shard_rows={args.shard_rows}"]
                if mode.startswith("flow-dask"):
                    sets += ["execution.task_runner=dask", "execution.dask_workers=2"]
                if cluster is not None:
                    sets.append(f"execution.dask_address={cluster.scheduler_address}")
                cfg = load_config(CONFIG, sets)
                out = tmp / f"out-{mode}-{i}"
                t = time.perf_counter()
                if mode.startswith("core"):
                    threads = torch.get_num_threads()
                    torch.set_num_threads(1 if mode == "core-1thread" else threads)
                    try:
                        feats = features_step(cfg, out)
                    finally:
                        torch.set_num_threads(threads)
                else:
                    feats = sharded_features_flow.with_options(task_runner=task_runner_of(cfg))(cfg.model_dump(mode="json"), str(out))
                times.setdefault(mode, []).append(time.perf_counter() - t)
                print(f"bench.dask_features: {mode} round {i}: {times[mode][-1]:.1f} s", flush=True)  # partial results survive a stop
                arrays[mode] = {s: feats.arrays(s)[0] for s in feats.splits}
                files[mode] = sorted(p.name for p in (tmp / f"cache-{mode}-{i}").rglob("*.npz"))
                assert feats.cache.hits == 0, "not a cold run"

            for i in range(args.repeat):  # interleaved, so load from other processes on the machine hits every mode alike
                run("core", i)
                run("core-1thread", i)
                run("flow-local", i)
                run("flow-dask", i)
                with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
                    run("flow-dask-warm", i, cluster)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = {m: min(ts) for m, ts in times.items()}
    diffs = {m: max(float(np.abs(arrays[m][s] - arrays["core"][s]).max()) for s in arrays["core"]) for m in arrays}
    return save("dask_features", {
        "rows": sum(len(a) for a in arrays["core"].values()), "shard_rows": args.shard_rows, "repeat": args.repeat,
        "seconds_all": times, "seconds_best": best, "ratio_vs_core": {m: best["core"] / t for m, t in best.items()},
        "max_abs_diff_vs_core": diffs, "same_cache_files_as_core": {m: files[m] == files["core"] for m in files},
    })


if __name__ == "__main__":
    main()
