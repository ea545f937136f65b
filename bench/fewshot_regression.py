"""Few-shot regression (issue 15): the MAML family on the item-pose demo (configs/image_fewshot_regression.yaml) vs
the support-set baselines on the same test episodes, per seed: query MAE in degrees at 1/2/5/10 shots, 600 episodes
each, and the registered model's MAE on its support task. Each run is tlops's own `run_core` (features cached once).

    .venv/bin/python -m bench.fewshot_regression [--seeds 0 1 2] [--methods maml fomaml meta_sgd] [--set KEY=VALUE ...]

`--set` overrides the config for every run (e.g. `--set strategy.trainable=1 strategy.backbone_lr=1e-4`: the top
backbone group meta-trains too); such a run writes bench/out/fewshot_regression_set.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import REPO, save

CONFIG = REPO / "configs" / "image_fewshot_regression.yaml"


def main(seeds: list[int], methods: list[str], sets: list[str] | None = None) -> dict:
    from tlops.config import load_config
    from tlops.pipeline import run_core

    out: dict = {"config": str(CONFIG.relative_to(REPO)), "sets": sets or [], "runs": []}
    with tempfile.TemporaryDirectory(prefix="tlops-bench-fsr-") as tmp:
        for seed in seeds:
            for method in methods:
                cfg = load_config(CONFIG, [f"strategy.name={method}", f"seed={seed}", f"features.cache_dir={tmp}/cache",
                                           f"execution.work_dir={tmp}/work", *(sets or [])])
                t = time.perf_counter()
                r = run_core(cfg, Path(tmp) / f"{method}-{seed}")
                fs = r.train.few_shot
                row = {"method": method, "seed": seed, "seconds": round(time.perf_counter() - t, 1),
                       "meta_train_s": round(r.train.seconds, 1), "epochs_run": len(r.train.history),
                       "best_epoch": r.train.loop.best_epoch if r.train.loop else None,
                       "model": {s.shots: [round(s.mae, 2), round(s.ci95, 2)] for s in fs.model},
                       "baselines": {k: {s.shots: [round(s.mae, 2), round(s.ci95, 2)] for s in v} for k, v in fs.baselines.items()},
                       "support_task": fs.support_task, "registered": {k: round(r.evaluation.metrics[k], 3) for k in ("mae", "r2")},
                       "n_registered_test": r.evaluation.n_test}
                out["runs"].append(row)
                print(row, flush=True)
    return save("fewshot_regression_set" if sets else "fewshot_regression", out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["maml", "fomaml", "meta_sgd"])
    ap.add_argument("--set", dest="sets", nargs="+", default=None, help="config overrides for every run")
    a = ap.parse_args()
    main(a.seeds, a.methods, a.sets)
