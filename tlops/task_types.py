"""Task types: what the model predicts (classes or a number) selects the head's outputs, the loss, the test
metrics and plots, and which gate metrics apply with their direction. The pipeline asks `task_type(name)`;
it never branches on the task itself. (Named task *types*: `tasks/` is the Prefect task package.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tlops.errors import ConfigError

if TYPE_CHECKING:
    from tlops.config import RunConfig
    from tlops.data.dataset import Dataset

# Every gate metric and whether a higher value is better (the promotion gate compares in that direction).
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "mae": False, "rmse": False, "r2": True, "spearman": True}


def higher_is_better(metric: str) -> bool:
    if metric not in HIGHER_IS_BETTER:
        raise ConfigError(f"unknown gate metric {metric!r}; valid: {', '.join(HIGHER_IS_BETTER)}")
    return HIGHER_IS_BETTER[metric]


@dataclass(frozen=True)
class TaskType:
    name: str
    gate_metrics: tuple[str, ...]  # registry.metric must be one of these
    default_gate_metric: str
    heads: tuple[str, ...]  # linear_probe heads that fit this task

    def outputs(self, labels: Sequence[str]) -> int:
        """Width of the head's output layer."""
        raise NotImplementedError

    def truth(self, y: np.ndarray, labels: Sequence[str]) -> list:
        """The cached `y` of a split as what predictions are compared with."""
        raise NotImplementedError

    def dataset_truth(self, ds: Dataset, split: str) -> list:
        raise NotImplementedError

    def metrics(self, y_true: list, y_pred: list, labels: Sequence[str]) -> dict[str, float]:
        raise NotImplementedError

    def report_and_plots(self, y_true: list, y_pred: list, labels: Sequence[str], out_dir: Path) -> tuple[dict, str, list[Path]]:
        """(report, its file name, plots) of the test split."""
        raise NotImplementedError


class Classification(TaskType):
    def outputs(self, labels):
        return len(labels)

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


class Regression(TaskType):
    """One output: the standardised target (the head maps it back to the target's unit)."""

    def outputs(self, labels):
        return 1

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


CLASSIFICATION = Classification("classification", ("macro_f1", "accuracy"), "macro_f1", ("logreg", "mlp"))
# MAE is regression's default gate metric: in the target's own unit, so a margin reads as "0.2 letters better",
# and less swayed by a few outliers than RMSE; R² and Spearman are logged next to it and selectable.
REGRESSION = Regression("regression", ("mae", "rmse", "r2", "spearman"), "mae", ("ridge", "mlp"))
TASK_TYPES = {t.name: t for t in (CLASSIFICATION, REGRESSION)}


def task_type(name: str) -> TaskType:
    if name not in TASK_TYPES:
        raise ConfigError(f"unknown task {name!r}; valid: {', '.join(TASK_TYPES)}")
    return TASK_TYPES[name]


def check_config_fits(cfg: RunConfig, ds: Dataset) -> None:
    """The config must be one for the dataset's task (dataset.yaml `task:`): its strategy supports it, the
    probe's head and the gate metric belong to it. Raises ConfigError naming the key and the fix."""
    task = task_type(ds.task)
    where = f"{ds.root / 'dataset.yaml'} says task: {task.name}"
    supported = getattr(type(cfg.strategy), "TASKS", None)  # strategies that train more than classifiers say which
    if supported is None:
        supported = ("classification",)
    elif getattr(cfg.strategy, "head", None) not in (None, *getattr(type(cfg.strategy), "HEADS", task.heads)):  # finetune's fit every task
        raise ConfigError(f"strategy.head: {cfg.strategy.head} is not a {task.name} head ({where}); set strategy.head to one of "
                          f"{', '.join(task.heads)}")
    if task.name not in supported:
        raise ConfigError(f"strategy {cfg.strategy.name} does not train {task.name} models yet ({where}); "
                          f"use a strategy that does (linear_probe, finetune, domain_adapt; maml, fomaml or meta_sgd when dataset.yaml "
                          f"names a `group:` column of tasks), or a {' / '.join(supported)} dataset")
    refusal = getattr(cfg.strategy, "refusal_for_task", None)  # options of a strategy that only one task type has
    why = refusal(task.name) if refusal is not None else None
    if why:
        raise ConfigError(f"{why} ({where})")
    if cfg.registry.metric not in task.gate_metrics:
        raise ConfigError(f"registry.metric: {cfg.registry.metric} is not a {task.name} metric ({where}); set registry.metric "
                          f"to one of {', '.join(task.gate_metrics)} (e.g. {task.default_gate_metric})")
