"""Metrics (scikit-learn, scipy) and plots for a classifier or a regressor on a labelled split."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score


def classification_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MAE, RMSE (target units), R² (1 - SSE/SST: 0 = predicting the mean) and Spearman's rank correlation."""
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rho = spearmanr(y_true, y_pred).statistic if len(y_true) > 1 and np.ptp(y_pred) > 0 else 0.0  # constant predictions rank nothing
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": float(r2_score(y_true, y_pred)),
        "spearman": float(rho),
    }


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """The metrics, the baseline of predicting the test mean, and the residuals' spread (true - predicted)."""
    res = y_true - y_pred
    return {
        **regression_metrics(y_true, y_pred),
        "n": int(len(y_true)),
        "mae_of_predicting_the_mean": float(np.abs(y_true - y_true.mean()).mean()) if len(y_true) else float("nan"),
        "residual_mean": float(res.mean()),
        "residual_quantiles": {q: float(np.quantile(res, float(q))) for q in ("0.05", "0.25", "0.5", "0.75", "0.95")},
        "true_range": [float(y_true.min()), float(y_true.max())],
        "predicted_range": [float(y_pred.min()), float(y_pred.max())],
    }


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_png(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str = "") -> Path:
    """Predicted vs true with the y = x line: a perfect regressor puts every point on it."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.scatter(y_true, y_pred, s=8, alpha=0.4)
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="y = x")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title or f"predicted vs true (test, R²={regression_metrics(y_true, y_pred)['r2']:.3f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def residuals_png(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str = "") -> Path:
    """Residual (true - predicted) against predicted: a trend or a funnel shows bias or unequal error."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(y_pred, y_true - y_pred, s=8, alpha=0.4)
    ax.axhline(0, color="black", lw=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true - predicted")
    ax.set_title(title or "residuals (test)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def per_class_report(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    return classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)


def confusion_png(y_true: list[str], y_pred: list[str], labels: list[str], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(y_true, y_pred, labels=labels)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * n + 2), max(4, 0.5 * n + 1.5)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (test)")
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color="white" if cm[i, j] > thresh else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curves_png(history: list[dict], path: Path, size_curve: Sequence[dict], selection_key: str) -> Path | None:
    """Learning curves: the training and validation loss and the validation selection metric (`selection_key`, the task
    type's: val_macro_f1, val_mae) per epoch (a 1-epoch run shows its one point), and for a closed-form head, which has
    no epochs, the selection metric against the number of training rows."""
    keys = [k for k in ("train_loss", "val_loss", selection_key) if any(k in h for h in history)]
    size_key = selection_key if size_curve and selection_key in size_curve[0] else None
    by_epoch = keys if len({h.get("epoch") for h in history}) > 1 or not size_key else []  # a lone closed-form row: the size panel says it
    panels = [("epoch", k) for k in by_epoch] + ([("train_rows", size_key)] if size_key else [])
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullFormatter

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5))
    for ax, (x_key, k) in zip(np.atleast_1d(axes), panels):
        rows = [h for h in (history if x_key == "epoch" else size_curve) if k in h]
        ax.plot([h[x_key] for h in rows], [h[k] for h in rows], marker="o")
        if x_key == "epoch":
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
            ax.set_title(k)
        else:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks (3x10^1 4x10^1 ...) ran into each other
            ax.set_xticks(sorted({h[x_key] for h in rows}), [str(int(h)) for h in sorted({h[x_key] for h in rows})])
            ax.set_xlabel("training rows (log scale)")
            ax.set_title(f"{k} vs training data")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _few_shot_part(report):
    """The few-shot part (`TaskType.few_shot_options`) of the task type whose test report `report` is: it names the
    report's metrics and draws its plot (classes: accuracy; numbers: query MAE)."""
    from tlops.task_types import all_task_types

    kind = getattr(report, "kind", None)
    for t in all_task_types().values():
        part = t.few_shot_options()
        if part is not None and part.report_kind == kind:
            return part
    raise ValueError(f"no task type's few-shot part writes {type(report).__name__} reports")


def few_shot_metrics(report) -> dict[str, float]:
    """The metrics of a few-shot evaluation report, the same keys prefixed `<baseline>_` for each baseline, as the task
    type names them: episodic accuracy `accuracy_5w1s`, `ci95_5w1s`, ... (a `FewShotReport`), or query error `mae_1s`,
    `ci95_mae_1s`, ... (a `FewShotRegressionReport`)."""
    part = _few_shot_part(report)
    out: dict[str, float] = {}
    for prefix, scores in [("", report.model), *((f"{k}_", v) for k, v in report.baselines.items())]:
        for s in scores:
            out |= part.score_metrics(s, prefix)
    return out


def shots_png(report, path: Path) -> Path | None:
    """The model's and each baseline's metric (with 95% CI bars) vs shots, as the task type plots it: episodic accuracy
    (a `FewShotReport`), or the query MAE for few-shot regression (a `FewShotRegressionReport`)."""
    if not report.model:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    value, xlabel, ylabel, title = _few_shot_part(report).plot_axes(report)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, scores in [("model", report.model), *report.baselines.items()]:
        ax.errorbar([s.shots for s in scores], [value(s) for s in scores], yerr=[s.ci95 for s in scores],
                    marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
