"""Classification: one class per input. Logistic-regression or MLP probe heads, cross-entropy in the loop, macro-F1
selects the kept model on val and is the default gate metric; per-class report and confusion matrix on test."""

from __future__ import annotations

from tlops.task_types.base import TaskType
from tlops.task_types.registry import register_task_type


@register_task_type
class Classification(TaskType):
    name = "classification"
    gate_metrics = ("macro_f1", "accuracy")
    default_gate_metric = "macro_f1"
    higher_is_better = {"macro_f1": True, "accuracy": True}
    heads = ("logreg", "mlp")
    selection_metric = "macro_f1"
    classic_baseline_head = "logreg"
    val_metric_names = ("macro_f1",)
    few_shot_plot = "accuracy_vs_shots.png"
    class_probabilities = True

    def predicts(self, labels):
        return f"{len(labels)} classes"

    def outputs(self, labels):
        return len(labels)

    def loop_task(self, y, opts=None):
        from tlops.training.objectives import ClassificationTask

        return ClassificationTask.for_targets(y, opts)

    def fit_probe(self, x, y, xv, yv, n_classes, cfg, seed, scaler=None, curve=True):
        from tlops.training.probe import fit_logreg, fit_mlp, size_curve

        if cfg.head != "logreg":
            return fit_mlp(x, y, xv, yv, n_classes, cfg, seed, scaler=scaler)
        result = fit_logreg(x, y, xv, yv, n_classes, cfg, seed, scaler=scaler)
        if curve:
            result.size_curve = size_curve(lambda i: fit_logreg(x[i], y[i], xv, yv, n_classes, cfg, seed).val_metrics["macro_f1"], y,
                                           seed, "val_macro_f1", classes=True, full=result.val_metrics["macro_f1"])
        return result

    def truth(self, y, labels):
        return [labels[i] for i in y]

    def dataset_truth(self, ds, split):
        return ds.splits[split]["label"].tolist()

    def metrics(self, y_true, y_pred, labels):
        from tlops.evaluate import classification_metrics

        return classification_metrics(y_true, y_pred, list(labels))

    def report_and_plots(self, y_true, y_pred, labels, out_dir):
        from tlops import evaluate as ev

        return (ev.per_class_report(y_true, y_pred, list(labels)), "classification_report.json",
                [ev.confusion_png(y_true, y_pred, list(labels), out_dir / "confusion_matrix.png")])

    def few_shot(self, ctx):
        return FewShotClasses(ctx)

    def few_shot_options(self):
        return FewShotClasses


class FewShotClasses:
    """Few-shot classification's part of the shared episodic run (`tlops.strategies._episodic`): N-way K-shot episodes
    of a split's classes (an episode's targets are its ways), the prototype-initialised `MetaLearner`, validation on
    query accuracy, the registered head adapted to the support set's classes, and accuracy vs shots on test's novel
    classes against the classification baselines (linear_probe, protonet0, finetune_support)."""

    episode_targets = None  # the sampler's ways, not the rows' labels
    baselines = ("linear_probe", "protonet0", "finetune_support")
    default_baselines = ("linear_probe", "protonet0")  # finetune_support is slower (100 AdamW steps per episode)
    default_inner_lr = 0.01
    report_kind = None  # the `kind` of its test report (`FewShotReport` has none): how `tlops.evaluate` finds this part

    def __init__(self, ctx):
        self.ctx, self.s = ctx, ctx.cfg.strategy

    @staticmethod
    def refusal(s, task):
        return None  # every option of the few-shot strategies trains classes

    def sampler(self, split, seed):
        from tlops.training.episodes import EpisodeSampler

        s = self.s
        return EpisodeSampler(self.ctx.features.arrays(split)[1], s.ways, s.shots, s.queries, seed)

    def learner(self, encoder, algorithm, inner_lr, backbone_shapes=None):
        from tlops.training.meta import MetaLearner

        s = self.s
        return MetaLearner(encoder, algorithm, inner_lr, getattr(s, "inner_steps", 0), bool(getattr(s, "anil", False)),
                           backbone_shapes=backbone_shapes)

    def scoring(self):
        from tlops.training.meta import ClassEpisodeScoring

        return ClassEpisodeScoring()

    def fingerprint(self):
        return self.s.fingerprint()

    def adapt(self, learner, encoder, support, ys, backbone=None):
        """(head, adapted backbone parameters, support labels, support class indices) for the support set (`support`:
        its features, or its model-ready batch when `backbone` adapts too)."""
        import numpy as np
        import torch

        from tlops.training.meta import adapted_head

        classes = np.unique(ys)
        targets = np.searchsorted(classes, ys)
        head, adapted = adapted_head(learner, encoder, support, torch.from_numpy(targets), len(classes), backbone)
        return head, adapted, [self.ctx.features.labels[int(c)] for c in classes], targets

    def report(self, learner, encoder, labels, predict=None, x=None):
        """The model and the baselines on the same test episodes. `predict`, `x`: the model's predictor and its test
        "features" when its backbone was meta-trained (the baselines keep the pretrained backbone's cached features)."""
        from tlops.records import FewShotReport
        from tlops.training.episodic_eval import BASELINES, shot_scores
        from tlops.training.meta import learner_predict
        from tlops.validation import EVAL_WAYS

        s, seed = self.s, self.ctx.cfg.seed
        xt, yt = self.ctx.features.arrays("test")
        shots = sorted(set(s.eval_shots))
        # the episodes are a function of (labels, seed, shots) only, so two calls score the very same episodes
        model_scores, skipped = shot_scores({"model": predict or learner_predict(learner, encoder)}, xt if x is None else x, yt,
                                            EVAL_WAYS, shots, s.queries, s.eval_episodes, seed)
        predictors = {name: BASELINES[name](encoder.mean, encoder.std) for name in s.baselines_for(self.ctx.features.task)}
        scores, _ = shot_scores(predictors, xt, yt, EVAL_WAYS, shots, s.queries, s.eval_episodes, seed)
        return FewShotReport(split="test", queries=s.queries, model=model_scores["model"], baselines=scores, skipped_shots=skipped,
                             support_classes=labels)

    def state_options(self):
        return {}

    def test_rows(self, report):
        return None  # the model is scored on every test row

    # ---- a packaged meta-learner at predict time (`tlops.fewshot_predictor.FewShotAdapter` asks these) ----

    @staticmethod
    def restore_learner(encoder, meta: dict, backbone_shapes: dict):
        """The packaged adaptation rule (`meta`: the package's `few_shot` block): the prototype-initialised `MetaLearner`,
        with the backbone parameters its inner loop adapts (`backbone_shapes`: name -> shape)."""
        from tlops.training.meta import MetaLearner

        return MetaLearner(encoder, meta["algorithm"], meta["inner_lr"], meta["inner_steps"], meta["anil"], backbone_shapes=backbone_shapes)

    @staticmethod
    def restore_target(meta: dict):
        return None  # classes: no target scaler

    @staticmethod
    def adapted_head(adapter, features, targets, n_classes):
        """The head adapted to a support set's features and class indices (`n_classes` outputs)."""
        import numpy as np
        import torch

        from tlops.training.meta import adapted_head

        return adapted_head(adapter.learner, adapter.encoder, torch.from_numpy(np.asarray(features, dtype=np.float32)),
                            torch.as_tensor(targets, dtype=torch.long), n_classes)[0]

    # ---- the test report's metrics and plot (`tlops.evaluate.few_shot_metrics`, `shots_png`) ----

    @staticmethod
    def score_metrics(score, prefix: str) -> dict[str, float]:
        """One shot count's episodic accuracy and its 95% CI, as logged (`accuracy_5w1s`, `ci95_5w1s`)."""
        return {f"{prefix}accuracy_{score.ways}w{score.shots}s": score.accuracy, f"{prefix}ci95_{score.ways}w{score.shots}s": score.ci95}

    @staticmethod
    def plot_axes(report) -> tuple:
        """(each score's plotted value, x label, y label, title) of the accuracy-vs-shots plot."""
        return (lambda s: s.accuracy, "shots per class", f"{report.model[0].ways}-way query accuracy",
                f"{report.split}: novel classes, {report.model[0].episodes} episodes per point")
