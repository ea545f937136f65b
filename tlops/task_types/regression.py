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
    classic_baseline_head = "ridge"
    val_metric_names = ("mae", "rmse", "r2", "spearman")
    few_shot_plot = "mae_vs_shots.png"
    numeric_target = True
    # a ridge probe; MAML on the `group:` column's tasks (finetune, domain_adapt: the classification starters with overrides)
    starters = {"linear_probe": "{m}_regression", "fewshot": "{m}_fewshot_regression"}

    def predicts(self, labels):
        return "a number"

    def outputs(self, labels):
        return 1

    def few_shot(self, ctx):
        """Episodes are tasks: the `group:` column's groups of rows with numeric targets."""
        return FewShotTasks(ctx)

    def few_shot_options(self):
        return FewShotTasks

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


class FewShotTasks:
    """Few-shot regression's part of the shared episodic run (`tlops.strategies._episodic`): a dataset whose `group:`
    column makes its rows tasks; an episode is one task's K support rows (targets known) and Q query rows, its targets
    the rows' own, standardised with train's mean and std. The MAML family's `RegressionMetaLearner` (a meta-learned
    head start, adapted alone by a normalised step), validation on the episodes' mean query MAE, the registered model
    adapted to the support set (labelled rows of one test task) and scored on that task's other test rows, and MAE vs
    shots on test's new tasks against support_mean, support_ridge and pooled_ridge. A support set of another task given
    at predict time (rows with their target values) adapts the head to that task (`tlops.fewshot_predictor`)."""

    baselines = default_baselines = ("support_mean", "support_ridge", "pooled_ridge")
    default_inner_lr = 1.0  # the step is normalised: 1 fits one support row exactly
    report_kind = "regression"  # the `kind` of its test report (`FewShotRegressionReport`): how `tlops.evaluate` finds this part

    @staticmethod
    def refusal(s, task):
        """The MAML family's options few-shot regression cannot train with (it adapts the head alone, by a normalised step)."""
        if s.anil is False:
            return ("anil: false asks the inner loop to adapt the encoder too; few-shot regression adapts the head only (ANIL, "
                    "with a normalised step): remove anil: false")
        if s.inner_groups:
            return (f"strategy.inner_groups: {s.inner_groups} asks the inner loop to adapt backbone groups; few-shot regression "
                    "adapts the head only (its normalised step is stable for the head alone): set inner_groups: 0 (trainable: N "
                    "still meta-trains the top N groups in the outer loop)")
        if not 0 < s.inner_lr_for(task) < 2:
            return (f"strategy.inner_lr: {s.inner_lr_for(task)} is outside (0, 2): few-shot regression's inner step is normalised by the "
                    "support embeddings' squared norm and only shrinks the error below 2 (1 fits one support row exactly)")
        return None

    def __init__(self, ctx):
        from tlops.training.objectives import RegressionTask

        self.ctx, self.s = ctx, ctx.cfg.strategy
        ds, feats = ctx.dataset(), ctx.features
        _, y = feats.arrays("train")
        _, yv = feats.arrays("val")
        self.groups = {"train": ds.groups("train"), "val": ds.groups("val")}
        if len(self.groups["train"]) != len(y) or len(self.groups["val"]) != len(yv):
            raise RuntimeError("the dataset's rows and the cached features differ in number; rerun the features step")
        self.target = RegressionTask.for_targets(y)
        self.episode_targets = (y - self.target.mean) / self.target.std

    def sampler(self, split, seed):
        from tlops.training.episodes import TaskEpisodeSampler

        return TaskEpisodeSampler(self.groups[split], self.s.shots, self.s.queries, seed)

    def learner(self, encoder, algorithm, inner_lr, backbone_shapes=None):
        from tlops.training.meta import RegressionMetaLearner

        return RegressionMetaLearner(encoder, algorithm, inner_lr, self.s.inner_steps)  # no backbone groups (the config refuses them)

    def scoring(self):
        from tlops.training.meta import NumberEpisodeScoring

        return NumberEpisodeScoring(self.target)

    def fingerprint(self):
        # the step size this run uses (an unset inner_lr means 1 here, 0.01 for classes): two runs share a folder only if equal
        return {**self.s.fingerprint(), "task": "regression", "inner_lr": self.s.inner_lr_for("regression")}

    def adapt(self, learner, encoder, support, ys, backbone=None):
        """(head in the target's unit, no adapted backbone parameters, no labels, the support targets) for support rows."""
        import torch

        from tlops.training.meta import adapted_regression_head

        return adapted_regression_head(learner, encoder, support, torch.from_numpy(ys), self.target), {}, [], ys

    def report(self, learner, encoder, labels, predict=None, x=None):
        """The model and the baselines on the same test episodes; each ridge baseline picks its strength on val's episodes
        (meta-training's validation episodes). `x`: the model's test features when its backbone meta-trained (the
        baselines keep the pretrained backbone's cached features)."""
        from tlops.data.fewshot import SUPPORT
        from tlops.records import FewShotRegressionReport
        from tlops.training.episodic_eval import (
            pick_alpha,
            pooled_ridge,
            shot_errors,
            support_mean,
            support_ridge,
        )
        from tlops.training.meta import regression_learner_predict

        s, feats, seed, ds = self.s, self.ctx.features, self.ctx.cfg.seed, self.ctx.dataset()
        x_train, y = feats.arrays("train")
        xv, yv = feats.arrays("val")
        xt, yt = feats.arrays("test")
        gt, val_sampler = ds.groups("test"), self.sampler("val", seed + 1)
        shots = sorted(set(s.eval_shots))
        predictors = {}
        for name in s.baselines_for(feats.task):
            if name == "support_mean":
                predictors[name] = support_mean()
            elif name == "support_ridge":
                alpha = pick_alpha(lambda a: support_ridge(encoder.mean, encoder.std, a), xv, yv, val_sampler, s.val_episodes)
                predictors[name] = support_ridge(encoder.mean, encoder.std, alpha)
            elif name == "pooled_ridge":
                alpha = pick_alpha(lambda a: pooled_ridge(x_train, y, a), xv, yv, val_sampler, s.val_episodes)
                predictors[name] = pooled_ridge(x_train, y, alpha)
        # the episodes are a function of (groups, seed, shots) only, so the two calls score the very same episodes
        scores, skipped = shot_errors(predictors, xt, yt, gt, shots, s.queries, s.eval_episodes, seed)
        model = shot_errors({"model": predict or regression_learner_predict(learner, encoder, self.target)}, xt if x is None else x,
                            yt, gt, shots, s.queries, s.eval_episodes, seed)[0]["model"]
        support_task = sorted(set(ds.groups(SUPPORT)))
        return FewShotRegressionReport(split="test", queries=s.queries, model=model, baselines=scores, skipped_shots=skipped,
                                       support_task=support_task[0] if support_task else "")

    def state_options(self):
        return {"target_scaler": (self.target.mean, self.target.std)}

    def test_rows(self, report):
        """The registered model is its support task's: scored on that task's other test rows."""
        import numpy as np

        return [int(i) for i in np.flatnonzero(self.ctx.dataset().groups("test") == report.support_task)]

    # ---- a packaged meta-learner at predict time (`tlops.fewshot_predictor.FewShotAdapter` asks these) ----

    @staticmethod
    def restore_learner(encoder, meta: dict, backbone_shapes: dict):
        """The packaged adaptation rule: `RegressionMetaLearner` (the head's meta-learned start, adapted alone by a
        normalised step; no backbone parameters in its inner loop)."""
        from tlops.training.meta import RegressionMetaLearner

        return RegressionMetaLearner(encoder, meta["algorithm"], meta["inner_lr"], meta["inner_steps"])

    @staticmethod
    def restore_target(meta: dict):
        """The train targets' scaler the learner's outputs are standardised with."""
        from tlops.training.objectives import RegressionTask

        return RegressionTask(*meta["target_scaler"])

    @staticmethod
    def adapted_head(adapter, features, targets, n_classes=None):
        """The head adapted to a support set's features and target values, predicting in the target's unit."""
        import torch

        from tlops.training.meta import adapted_regression_head

        return adapted_regression_head(adapter.learner, adapter.encoder, torch.from_numpy(np.asarray(features, dtype=np.float32)),
                                       torch.as_tensor(np.asarray(targets, dtype=np.float64)), adapter.target)

    # ---- the test report's metrics and plot (`tlops.evaluate.few_shot_metrics`, `shots_png`) ----

    @staticmethod
    def score_metrics(score, prefix: str) -> dict[str, float]:
        """One shot count's query MAE and its 95% CI, as logged (`mae_5s`, `ci95_mae_5s`)."""
        return {f"{prefix}mae_{score.shots}s": score.mae, f"{prefix}ci95_mae_{score.shots}s": score.ci95}

    @staticmethod
    def plot_axes(report) -> tuple:
        """(each score's plotted value, x label, y label, title) of the MAE-vs-shots plot."""
        return (lambda s: s.mae, "shots (labelled rows of the task)", "query MAE (lower is better)",
                f"{report.split}: new tasks, {report.model[0].episodes} episodes per point")
