"""`tlops evaluate MODEL_URI --data CSV_OR_FOLDER`: a registered model's metrics on any labelled data."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import JSON, TRACKING
from flows.commands._registry_read import check_model_uri
from flows.commands.predict import items_from
from flows.console import esc, out, print_json, quiet_third_party, user_errors


def evaluate(model_uri: str = typer.Argument(..., help="models:/NAME@champion, models:/NAME/VERSION, or runs:/RUN/model"),
             data: Path = typer.Option(..., "--data", help="a labelled CSV ('text' or 'path' column, and 'label'), or a dataset "
                                                         "folder (its --split CSV, or its --split file of a task with its own "
                                                         "files: CoNLL, SQuAD JSON)"),
             split: str = typer.Option("test", "--split", help="with a dataset folder: which split's CSV"),
             out_dir: Optional[Path] = typer.Option(None, "--out", help="also write the plots and report.json here"),
             json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Metrics of a registered model on any labelled data: per-class table and confusion matrix for a classifier,
    MAE/RMSE/R2/Spearman and predicted-vs-true plots for a regression model."""
    from tlops.data.dataset import _read_csv
    from tlops.errors import DataError

    quiet_third_party()  # no download or weight-loading bars while the model loads (`tlops -v` keeps them)
    if data.is_dir() and (data / "dataset.yaml").is_file() and (not (data / f"{split}.csv").is_file() or _reads_own_files(data)):
        return _evaluate_own_files(model_uri, data, split, out_dir, json_out, tracking_uri)
    csv = data / f"{split}.csv" if data.is_dir() else data
    column = "label"  # a dataset folder names its own: a regression dataset's `target:` column
    if data.is_dir() and (data / "dataset.yaml").is_file():
        from tlops.data.dataset import _read_meta

        column = _read_meta(data / "dataset.yaml").get("target") or "label"
    items = items_from([], csv)
    df = _read_csv(csv, [])
    if column not in df.columns:
        raise DataError(f"{csv} has no {column!r} column; evaluate needs the true labels (use `tlops predict` without them)")
    check_model_uri(tracking_uri, model_uri)  # an unknown model in a second, not after the imports below
    import mlflow

    from tasks.audit import verified_model
    from tasks.operate import connect

    reg = connect(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tlops-evaluate-") as tmp:  # loading runs the model's code: check its files first
        model = mlflow.pyfunc.load_model(str(verified_model(reg, model_uri, Path(tmp))))
        predicted = list(model.predict(items))
        regression = not all(isinstance(y, str) for y in predicted)  # a regression model predicts numbers
        known = None if regression else list(model.predict(items[:1], params={"proba": True}).columns)  # its labels, in order
    truth = df[column].str.strip().tolist()
    report = (_regression_report(truth, predicted, df, csv, out_dir) if regression
              else _classification_report(truth, [str(y) for y in predicted], known, csv, model_uri, out_dir))
    report = {"model_uri": model_uri, "data": str(csv), "rows": len(truth), **report}
    if out_dir:
        (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    if json_out:
        return print_json(report)
    m = report["metrics"]
    out.print(f"{esc(model_uri)} on {esc(str(csv))} ({len(truth)} rows): " + "  ".join(f"{k}={v:.4f}" for k, v in m.items()))
    if not regression:
        t = Table("label", "precision", "recall", "f1", "support")
        for label, r in report["per_class"].items():
            t.add_row(esc(str(label)), f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1-score']:.3f}", str(int(r["support"])))
        out.print(t)
        if report["labels_unknown_to_the_model"]:
            out.print(f"[yellow]labels the model does not know (always wrong):[/yellow] {esc(', '.join(report['labels_unknown_to_the_model']))}")
    if out_dir:
        out.print(esc(f"wrote {', '.join(str(out_dir / f) for f in report.get('plots', []))} and {out_dir / 'report.json'}"))


def _reads_own_files(data: Path) -> bool:
    """The folder's task type reads its own files (`TaskType.read_dataset`), even when they are CSVs (speech
    recognition's path,text): it is scored as a run scores it, not as label CSVs."""
    from tlops.data.dataset import _read_meta
    from tlops.task_types import task_type
    from tlops.task_types.base import TaskType

    kind = task_type(_read_meta(data / "dataset.yaml").get("task") or "classification")
    return type(kind).read_dataset is not TaskType.read_dataset


def _evaluate_own_files(model_uri: str, data: Path, split: str, out_dir: Path | None, json_out: bool, tracking_uri: str | None) -> None:
    """A dataset folder of a task type's own files (CoNLL, SQuAD JSON): read and checked as a run reads it, the model
    package scored on `split` the way the promotion gate scores a champion (`TaskType.score_package`), the task's
    metrics, and with --out its report and plots."""
    import dataclasses

    import mlflow

    from tasks.audit import verified_model
    from tasks.operate import connect
    from tlops.data.dataset import load_dataset
    from tlops.errors import DataError
    from tlops.package import META_FILE
    from tlops.task_types import task_type

    ds = load_dataset(data)
    tt = task_type(ds.task)
    tt.raise_reader_problems(ds)
    if split not in ds.splits or ds.splits[split].empty:
        raise DataError(f"{data} has no {split!r} rows; pass --split train, val or test")
    check_model_uri(tracking_uri, model_uri)
    ds = dataclasses.replace(ds, splits={**ds.splits, "test": ds.splits[split]})  # what score_package reads
    reg = connect(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tlops-evaluate-") as tmp:  # loading runs the model's code: check its files first
        model = mlflow.pyfunc.load_model(str(verified_model(reg, model_uri, Path(tmp))))
        root = model.unwrap_python_model().predictor.root
        meta = json.loads((root / META_FILE).read_text())
        if meta.get("task", "classification") != ds.task:
            raise DataError(f"{data} is a {ds.task.replace('_', ' ')} dataset; {model_uri} is a "
                            f"{str(meta.get('task', 'classification')).replace('_', ' ')} model")
        owned = tt.score_package(meta, lambda rel: root / rel, None, ds)
    if owned is None:
        raise DataError(f"{data}: a {ds.task.replace('_', ' ')} dataset is evaluated from CSV files; pass --data {data / 'test.csv'}")
    truth, pred, _ = owned
    report = {"model_uri": model_uri, "data": str(data), "split": split, "rows": len(truth), "metrics": tt.metrics(truth, pred, ds.labels)}
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        detail, name, plots = tt.report_and_plots(truth, pred, ds.labels, out_dir)
        (out_dir / name).write_text(json.dumps(detail, indent=1, default=str))
        report["plots"] = [Path(p).name for p in plots]
        (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    if json_out:
        return print_json(report)
    out.print(f"{esc(model_uri)} on {esc(str(data))} {esc(split)} ({len(truth)} rows): "
              + "  ".join(f"{k}={v:.4f}" for k, v in report["metrics"].items()))
    if out_dir:
        out.print(esc(f"wrote {', '.join(str(out_dir / f) for f in report.get('plots', []))} and {out_dir / 'report.json'}"))


def _classification_report(truth: list[str], predicted: list[str], known: list[str], csv: Path, model_uri: str,
                           out_dir: Path | None) -> dict:
    from tlops.evaluate import classification_metrics, confusion_png, per_class_report

    unknown = sorted(set(truth) - set(known))
    labels = known + unknown
    report = {"metrics": classification_metrics(truth, predicted, labels),
              "per_class": {k: v for k, v in per_class_report(truth, predicted, labels).items() if k in labels},
              "labels_unknown_to_the_model": unknown}
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        confusion_png(truth, predicted, labels, out_dir / "confusion.png", title=f"{model_uri} on {csv.name}")
        report["plots"] = ["confusion.png"]
    return report


def _regression_report(truth: list[str], predicted: list, df, csv: Path, out_dir: Path | None) -> dict:
    import math

    import numpy as np

    from tlops.errors import DataError
    from tlops.evaluate import regression_metrics, regression_report, residuals_png, scatter_png

    lines = df.attrs.get("lines") or list(range(2, len(df) + 2))
    values = []
    for line, raw in zip(lines, truth):
        try:
            v = float(raw)
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise DataError(f"{csv} line {line}: label {raw!r} is not a finite number, and this is a regression model; "
                            "give the true value as a number (e.g. 3.5)")
        values.append(v)
    t, p = np.asarray(values, dtype=float), np.asarray(predicted, dtype=float)
    report = {"metrics": regression_metrics(t, p), "regression": regression_report(t, p)}
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        scatter_png(t, p, out_dir / "predicted_vs_true.png")
        residuals_png(t, p, out_dir / "residuals.png")
        report["plots"] = ["predicted_vs_true.png", "residuals.png"]
    return report


def register(app: typer.Typer) -> None:
    app.command("evaluate")(user_errors(evaluate))
