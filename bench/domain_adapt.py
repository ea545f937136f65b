"""Domain adaptation on the demo shifts (configs/*_domain_adapt.yaml, features mode): per modality and seed,
source-only (the baseline, same run) vs DANN vs CDAN vs MMD vs CORAL. Target-test macro-F1 of the model chosen
without target labels (the config's criterion over epochs x trade_off values: what `tlops run` registers),
of the oracle choice (the best epoch x trade_off by target-test macro-F1; for judging the criterion only),
and, post hoc from the same epoch rows, of the other criteria. "Best method without target labels": per
seed, the method whose chosen model has the best criterion value (DEV: lowest estimated target risk).
Then seconds per run of features mode vs finetune mode on one modality.

Run: `python -m bench.domain_adapt [--modalities image audio text] [--seeds 0 1 2] [--timing audio]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import OUT, REPO, save
from tlops.config import load_config
from tlops.pipeline import evaluate_step, features_step, train_step
from tlops.strategies.domain_adapt import CRITERIA
from tlops.training.callbacks import Callback

METHODS = ("source_only", "dann", "cdan", "mmd", "coral")


class EpochRows(Callback):
    """Every epoch row of every trade_off value (a sweep's rows arrive as `trade_off_<v>/<key>`)."""

    def __init__(self, trade_offs: list[float]):
        self.rows: dict[float, list[dict]] = {v: [] for v in trade_offs}
        self.single = trade_offs[0] if len(trade_offs) == 1 else None

    def on_epoch_end(self, state, row) -> None:
        if self.single is not None:
            self.rows[self.single].append(dict(row))
            return
        for v in self.rows:
            prefix = f"trade_off_{v:g}/"
            part = {k[len(prefix):]: x for k, x in row.items() if k.startswith(prefix)}
            if part:
                self.rows[v].append({"epoch": row["epoch"], **part})


def choose(rows: dict[float, list[dict]], criterion: str) -> dict:
    """The (trade_off, epoch) a criterion picks from all epoch rows, and its target-test macro-F1."""
    key, maximize = CRITERIA[criterion]
    flat = [(v, r) for v, rs in rows.items() for r in rs]
    v, r = (max if maximize else min)(flat, key=lambda vr: vr[1][key])
    return {"trade_off": v, "epoch": int(r["epoch"]), "criterion": r[key], "test_macro_f1": r["oracle_test_macro_f1"]}


def config(modality: str, method: str, seed: int, work: Path, overrides: list[str] = ()):
    cfg = load_config(REPO / "configs" / f"{modality}_domain_adapt.yaml", [f"strategy.method={method}", f"seed={seed}", *overrides])
    cfg.features.cache_dir = str(REPO / ".tlops" / "cache")
    cfg.execution.work_dir = str(work)  # checkpoints live here: never resume from an earlier bench run
    return cfg


def run_one(cfg, feats, work: Path) -> dict:
    s = cfg.strategy
    rows = EpochRows(s.trade_offs())
    t0 = time.perf_counter()
    rec = train_step(cfg, feats, work / "train", callbacks=[rows])
    seconds = time.perf_counter() - t0
    ev = evaluate_step(cfg, feats, rec, work / "eval")
    a = rec.adaptation
    last = {v: rs[-1] for v, rs in rows.rows.items()}
    return {
        "unsupervised": a.chosen.oracle_test_macro_f1, "registered_test_macro_f1": ev.metrics["macro_f1"],
        "chosen": {"trade_off": a.chosen.trade_off, "epoch": a.chosen.best_epoch, "criterion": a.chosen.criterion},
        "oracle": a.oracle.test_macro_f1, "oracle_choice": {"trade_off": a.oracle.trade_off, "epoch": a.oracle.epoch},
        "post_hoc": {c: choose(rows.rows, c) for c in CRITERIA},
        "last_epoch": {str(v): {k: r[k] for k in ("domain_acc", "oracle_test_macro_f1", "val_macro_f1") if k in r} for v, r in last.items()},
        "train_seconds": round(seconds, 2),
    }


def mean_std(xs: list[float]) -> dict:
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": xs}


def summarise(runs: dict, seeds: list[int], criterion: str) -> dict:
    """Per method: unsupervised and oracle mean +- std; the label-free best method per seed; the targets."""
    maximize = CRITERIA[criterion][1]
    table = {m: {"unsupervised": mean_std([runs[m][s]["unsupervised"] for s in seeds]),
                 "oracle": mean_std([runs[m][s]["oracle"] for s in seeds]),
                 **{f"post_hoc_{c}": mean_std([runs[m][s]["post_hoc"][c]["test_macro_f1"] for s in seeds]) for c in CRITERIA}}
             for m in runs}
    label_free = []
    for s in seeds:  # across methods too, the criterion decides (DEV values are comparable: one risk estimate)
        adapted = [m for m in runs if m != "source_only"]
        pick = (max if maximize else min)(adapted, key=lambda m: runs[m][s]["chosen"]["criterion"])
        label_free.append({"seed": s, "method": pick, "test_macro_f1": runs[pick][s]["unsupervised"]})
    base = table["source_only"]["unsupervised"]["mean"]
    best_by_mean = max((m for m in runs if m != "source_only"), key=lambda m: table[m]["unsupervised"]["mean"])
    lf = mean_std([r["test_macro_f1"] for r in label_free])
    return {"methods": table, "label_free_best": {"per_seed": label_free, **lf, "gain_over_source_only": lf["mean"] - base},
            "best_method_by_mean": {"method": best_by_mean, "gain_over_source_only": table[best_by_mean]["unsupervised"]["mean"] - base},
            "selection_gap": {m: table[m]["oracle"]["mean"] - table[m]["unsupervised"]["mean"] for m in runs}}


def timing(modality: str, tmp: Path, epochs: int) -> dict:
    """Seconds of the training step, features mode vs finetune mode, same method/epochs/one trade_off (warm cache)."""
    out = {}
    for mode in ("features", "finetune"):
        cfg = config(modality, "dann", 0, tmp / f"time-{mode}", [f"strategy.mode={mode}", f"strategy.epochs={epochs}", "strategy.trade_off=1.0"])
        feats = features_step(cfg, tmp / f"time-{mode}" / "features")
        r = run_one(cfg, feats, tmp / f"time-{mode}")
        out[mode] = {"train_seconds": r["train_seconds"], "seconds_per_epoch": round(r["train_seconds"] / epochs, 3),
                     "unsupervised": r["unsupervised"], "oracle": r["oracle"]}
        print(modality, mode, out[mode], flush=True)
    out["finetune_over_features"] = out["finetune"]["train_seconds"] / out["features"]["train_seconds"]
    return out


def main(modalities: list[str], seeds: list[int], timing_modality: str | None, timing_epochs: int) -> dict:
    out: dict = {"seeds": seeds, "runs": {}, "summary": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for modality in modalities:
            t0 = time.perf_counter()
            feats = features_step(config(modality, "dann", 0, tmp / modality), tmp / modality / "features")
            out.setdefault("features_seconds", {})[modality] = round(time.perf_counter() - t0, 2)
            runs: dict = {m: {} for m in METHODS}
            for seed in seeds:
                for method in METHODS:
                    work = tmp / modality / f"{method}-{seed}"
                    cfg = config(modality, method, seed, work)
                    runs[method][seed] = run_one(cfg, feats, work)
                    r = runs[method][seed]
                    OUT.mkdir(parents=True, exist_ok=True)  # partial results survive an interrupted bench (a shared machine)
                    (OUT / "domain_adapt.partial.json").write_text(json.dumps({**out, "runs": {**out["runs"], modality: runs}}, indent=1))
                    print(modality, seed, method, {k: r[k] for k in ("unsupervised", "oracle", "chosen", "train_seconds")}, flush=True)
            out["runs"][modality] = runs
            out["summary"][modality] = summarise(runs, seeds, config(modality, "dann", 0, tmp).strategy.selection)
            print(modality, out["summary"][modality]["label_free_best"], flush=True)
        if timing_modality:
            out["timing"] = {timing_modality: timing(timing_modality, tmp, timing_epochs)}
    return save("domain_adapt", out)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--modalities", nargs="*", default=["image", "audio", "text"])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--timing", default="audio", help="modality for features vs finetune seconds ('' to skip)")
    p.add_argument("--timing-epochs", type=int, default=5)
    a = p.parse_args()
    main(a.modalities, a.seeds, a.timing or None, a.timing_epochs)
