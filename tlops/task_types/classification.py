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
