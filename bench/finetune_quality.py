"""Fine-tuning quality on the demo data, per modality: linear probe vs fine-tune vs LP-FT (the configs in
configs/*_linear_probe.yaml and configs/*_finetune.yaml, unchanged except the strategy), and a label-budget
curve (8 / 32 / 128 labelled training rows per class; val and test unchanged) for probe vs fine-tune.
Test accuracy, macro-F1 and wall time of the training step (features come from the warm cache, and their
time is reported apart). Run: `python -m bench.finetune_quality [--modalities text image audio] [--budget text]`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import REPO, save
from tlops.config import load_config
from tlops.pipeline import evaluate_step, features_step, train_step

BUDGETS = (8, 32, 128)


def run(cfg, work: Path) -> dict:
    cfg.execution.work_dir = str(work)  # checkpoints live here: never resume from an earlier bench run
    t0 = time.perf_counter()
    feats = features_step(cfg, work / "features")
    t1 = time.perf_counter()
    rec = train_step(cfg, feats, work / "train")
    t2 = time.perf_counter()
    ev = evaluate_step(cfg, feats, rec, work / "eval")
    return {**ev.metrics, "train_wall_s": round(t2 - t1, 2), "features_wall_s": round(t1 - t0, 2),
            "evaluate_wall_s": round(time.perf_counter() - t2, 2), "val_macro_f1": rec.val_metrics["macro_f1"],
            "best_epoch": rec.loop.best_epoch if rec.loop else None, "epochs_run": rec.loop.epochs_run if rec.loop else None,
            "cache_misses": feats.cache.misses}


def strategies(modality: str, data_path: str | None = None) -> dict:
    over = [f"data.path={data_path}"] if data_path else []
    probe = load_config(REPO / "configs" / f"{modality}_linear_probe.yaml", over)
    ft = load_config(REPO / "configs" / f"{modality}_finetune.yaml", over)
    lpft = load_config(REPO / "configs" / f"{modality}_finetune.yaml", over + ["strategy.lp_ft=true"])
    for c in (probe, ft, lpft):
        c.features.cache_dir = str(REPO / ".tlops" / "cache")
    return {"linear_probe": probe, "finetune": ft, "lp_ft": lpft}


def subsample(src: Path, per_class: int, dst: Path, seed: int = 0) -> Path:
    """A copy of the dataset whose train.csv keeps `per_class` rows per label (seeded); other files linked."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "train.csv":
            (dst / f.name).symlink_to(f.resolve())
    train = pd.read_csv(src / "train.csv", dtype=str, keep_default_na=False)
    train.sample(frac=1.0, random_state=seed).groupby("label", sort=False).head(per_class).to_csv(dst / "train.csv", index=False)
    return dst


def main(modalities: list[str], budget: list[str]) -> dict:
    out: dict = {"strategies": {}, "label_budget": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for m in modalities:
            out["strategies"][m] = {}
            for name, cfg in strategies(m).items():
                out["strategies"][m][name] = run(cfg, tmp / m / name)
                print(m, name, out["strategies"][m][name], flush=True)
        for m in budget:
            out["label_budget"][m] = {}
            src = REPO / load_config(REPO / "configs" / f"{m}_linear_probe.yaml").data.path
            for k in BUDGETS:
                data = subsample(src, k, tmp / f"{m}-{k}")
                cfgs = strategies(m, str(data))
                out["label_budget"][m][k] = {name: run(cfgs[name], tmp / f"{m}-{k}-{name}") for name in ("linear_probe", "finetune")}
                print(m, k, out["label_budget"][m][k], flush=True)
                shutil.rmtree(data)
    return save("finetune_quality", out)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--modalities", nargs="*", default=["text", "image", "audio"])
    p.add_argument("--budget", nargs="*", default=["text"])
    a = p.parse_args()
    main(a.modalities, a.budget)
