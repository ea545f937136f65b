"""Regression: one number per input. One output on the standardised target (the head maps it back to the target's
unit); ridge or MLP probe heads, MSE/Huber in the loop. MAE selects the kept model on val and is the default gate
metric: in the target's own unit, so a margin reads as "0.2 letters better", and less swayed by a few outliers than
RMSE; R² and Spearman are logged next to it and selectable. Predicted-vs-true and residual plots on test."""

from __future__ import annotations

import numpy as np

from tlops.task_types.base import TaskType
from tlops.task_types.registry import register_task_type


@register_task_type
class Regression(TaskType):
    name = "regression"
    gate_metrics = ("mae", "rmse", "r2", "spearman")
    default_gate_metric = "mae"
    higher_is_better = {"mae": False, "rmse": False, "r2": True, "spearman": True}
    heads = ("ridge", "mlp")
    selection_metric = "mae"
    val_metric_names = ("mae", "rmse", "r2", "spearman")
    few_shot_plot = "mae_vs_shots.png"
    numeric_target = True
    # a ridge probe; MAML on the `group:` column's tasks (finetune, domain_adapt: the classification starters with overrides)
    starters = {"linear_probe": "{m}_regression", "fewshot": "{m}_fewshot_regression"}

    def predicts(self, labels):
        return "a number"

    def outputs(self, labels):
        return 1

    def episodic_trainer(self, ctx, algorithm):
        """Episodes are tasks: the `group:` column's groups of rows with numeric targets."""
        from tlops.strategies._episodic_regression import train_episodic_regression

        return train_episodic_regression(ctx, algorithm)

    def loop_task(self, y, opts=None):
        from tlops.training.objectives import RegressionTask

        return RegressionTask.for_targets(y, opts)

    def fit_probe(self, x, y, xv, yv, n_classes, cfg, seed, scaler=None, curve=True):
        from tlops.training.probe import fit_mlp_regression, fit_ridge, size_curve

        y, yv = y.astype(np.float64), yv.astype(np.float64)
        if cfg.head != "ridge":
            return fit_mlp_regression(x, y, xv, yv, cfg, seed, scaler=scaler)
        result = fit_ridge(x, y, xv, yv, cfg, seed, scaler=scaler)
        if curve:
            kept = cfg.model_copy(update={"alphas": [result.history[-1]["alpha"]]})  # the subsets refit with the chosen alpha
            result.size_curve = size_curve(lambda i: fit_ridge(x[i], y[i], xv, yv, kept, seed).val_metrics["mae"], y, seed,
                                           "val_mae", full=result.val_metrics["mae"])
        return result

    def truth(self, y, labels):
        return [float(v) for v in y]

    def dataset_truth(self, ds, split):
        return ds.targets(split).tolist()

    def metrics(self, y_true, y_pred, labels):
        from tlops.evaluate import regression_metrics

        return regression_metrics(np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float))

    def report_and_plots(self, y_true, y_pred, labels, out_dir):
        from tlops import evaluate as ev

        t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
        return (ev.regression_report(t, p), "regression_report.json",
                [ev.scatter_png(t, p, out_dir / "predicted_vs_true.png"), ev.residuals_png(t, p, out_dir / "residuals.png")])
