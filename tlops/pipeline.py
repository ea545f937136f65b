"""The training pipeline as plain functions: validate -> features -> train -> evaluate -> package.

Each step takes the config (and the records of earlier steps), writes its outputs under a work folder,
and returns a typed record (`tlops.records`). Prefect tasks wrap these one-to-one; `run_core` chains
them without any orchestration or tracking (the baseline of the overhead benchmark). The train step
looks the strategy up in the registry by name: no strategy is special-cased here.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from tlops.config import RunConfig
from tlops.records import CacheTotals, CoreResult, Evaluation, FeatureSet, TrainResult, ValidationReport
from tlops.resolve import backbone_of, feature_inputs, open_dataset
from tlops.strategies.context import TrainContext
from tlops.strategies.registry import get_strategy
from tlops.task_types import check_config_fits, task_type
from tlops.training.callbacks import Callback, faults_from_env
from tlops.validation import raise_for_report, validate_dataset

# torch (features, backbones) and scikit-learn/matplotlib (evaluate) are imported inside the steps that use them:
# `validate_step` runs before anything else in `tlops run` and `tlops validate`, and a data error should not wait
# for them (tests/system/test_layering.py checks that importing this module and validating pull in neither).


def validate_step(cfg: RunConfig) -> ValidationReport:
    """Report of all validation rules (including the extra splits the strategy needs); raises
    ValidationFailed (carrying the report) if any fails."""
    entry = get_strategy(cfg.strategy.name)
    ds = open_dataset(cfg)
    check_config_fits(cfg, ds)  # a classification config on a regression dataset (or the reverse) stops here
    report = validate_dataset(ds, cfg.validation, required=entry.splits, few_shot=cfg.strategy if entry.few_shot else None)
    raise_for_report(report)
    return report


def features_step(cfg: RunConfig, out_dir: Path, progress: bool = False) -> FeatureSet:
    """Backbone features of every split (and of the extra splits the strategy needs) through the cache, saved
    as `<split>.npz` (x, y; y = -1 for unlabelled rows) in `out_dir`. With `features.shard_rows`, in shards
    (`tlops.feature_shards`), one after another here."""
    from tlops.cache import FeatureCache
    from tlops.features import stats_dict

    if cfg.features.shard_rows:
        from tlops.feature_shards import run_sharded

        return run_sharded(cfg, Path(out_dir), progress=progress)
    ds, backbone, splits = feature_inputs(cfg)
    task = task_type(ds.task)
    cache = FeatureCache(cfg.features.cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    totals = CacheTotals()
    t0 = time.perf_counter()
    identity = task.feature_identity(backbone.identity())  # once: the same for every split (keyed by the feature level too)
    for split in splits:  # the task type's features: pooled per input (cached_features), or per word (token classification)
        x, y, extra, stats = task.split_features(backbone, ds, split, cache, batch_size=cfg.backbone.batch_size, progress=progress,
                                                 identity=identity, label=f"features {split}")
        np.savez(out_dir / f"{split}.npz", x=x, y=y, **extra)
        for k, v in stats_dict(stats).items():
            setattr(totals, k, getattr(totals, k) + v)
    totals.backbone_calls = backbone.calls
    return FeatureSet(dir=str(out_dir), splits=list(splits), labels=ds.labels, task=ds.task, num_features=backbone.num_features, identity=identity,
                      found_via=backbone.found_via, cache=totals, seconds=time.perf_counter() - t0, task_meta=task.feature_meta(ds))


def train_step(cfg: RunConfig, features: FeatureSet, out_dir: Path, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train with the strategy the config names (looked up in the registry)."""
    entry = get_strategy(cfg.strategy.name)
    return entry.train(TrainContext(cfg, features, Path(out_dir), callbacks=[*callbacks, *faults_from_env()]))


def evaluate_step(cfg: RunConfig, features: FeatureSet, result: TrainResult, out_dir: Path) -> Evaluation:
    """Test metrics, report and plots of a trained model as its task type defines them (classes: per-class
    report and confusion matrix; numbers: MAE/RMSE/R²/Spearman, predicted-vs-true and residual plots), plus
    learning curves; for a few-shot model also its episodic metrics (accuracy_5w1s, ...; regression: mae_5s, ...) and the
    accuracy- (or MAE-) vs-shots plot."""
    from tlops.evaluate import curves_png, few_shot_metrics, shots_png

    task = task_type(features.task)
    labels = getattr(result, "labels", None) or features.labels  # a few-shot head knows only its support set's classes
    y_true, y_pred = task.test_outputs(features, result, lambda: open_dataset(cfg))
    out_dir.mkdir(parents=True, exist_ok=True)
    report, report_name, plots = task.report_and_plots(y_true, y_pred, labels, out_dir)
    curves = curves_png(result.history, out_dir / "learning_curves.png", result.size_curve, task.selection_key)
    report_path = out_dir / report_name
    report_path.write_text(json.dumps(report, indent=1))
    metrics, shots = task.metrics(y_true, y_pred, labels), None
    if result.few_shot is not None:
        metrics |= few_shot_metrics(result.few_shot)
        shots = shots_png(result.few_shot, out_dir / task.few_shot_plot)
    return Evaluation(metrics=metrics, report_path=str(report_path), plots=[str(p) for p in (*plots, curves, shots) if p is not None],
                      n_test=len(y_true), baseline=classic_baseline_step(cfg, task, metrics))


def classic_baseline_step(cfg: RunConfig, task, metrics: dict[str, float]) -> dict | None:
    """The trivial baseline (`tlops.classic_baseline`) on the run's own splits, with `wins`: whether it beats the model on
    the gate metric; None where it does not apply (`evaluation.classic_baseline: false`, other strategies or tasks)."""
    if not (cfg.evaluation.classic_baseline and get_strategy(cfg.strategy.name).classic_baseline and task.classic_baseline_head):
        return None
    from tlops.classic_baseline import verdict

    base = task.classic_baseline(open_dataset(cfg), cfg.seed)
    gate = cfg.registry.metric if cfg.registry.metric in base.metrics else task.selection_metric
    wins = verdict(metrics[gate], base.metrics[gate], task.higher_is_better[gate])
    return {**base.as_dict(), "gate_metric": gate, "wins": wins}


def package_step(cfg: RunConfig, features: FeatureSet, result: TrainResult, out_dir: Path) -> Path:
    """The model package to register: written here for a head on the pretrained backbone, or the one the
    train step already wrote (a trained backbone)."""
    from tlops.package import record_input_rules, write_package

    package = write_package(result, lambda: backbone_of(cfg), features.labels, Path(out_dir),
                            extra={"strategy": cfg.strategy.model_dump(), "seed": cfg.seed,
                                   **task_type(features.task).package_meta(features)})
    record_input_rules(package, cfg.validation.control_characters)  # predict strips what training stripped
    return package


def finish(result: TrainResult) -> None:
    """After registration: drop the run's checkpoints, so a later run of this config starts fresh."""
    if result.loop is not None and result.loop.checkpoint_dir:
        shutil.rmtree(result.loop.checkpoint_dir, ignore_errors=True)


def run_core(cfg: RunConfig, work_dir: Path, progress: bool = False) -> CoreResult:
    """The whole pipeline without Prefect or MLflow: the plain baseline."""
    work_dir = Path(work_dir)
    validate_step(cfg)
    feats = features_step(cfg, work_dir / "features", progress=progress)
    result = train_step(cfg, feats, work_dir / "train")
    ev = evaluate_step(cfg, feats, result, work_dir / "eval")
    pkg = package_step(cfg, feats, result, work_dir / "package")
    finish(result)
    return CoreResult(features=feats, train=result, evaluation=ev, package=str(pkg))
