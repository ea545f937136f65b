"""`tlops predict MODEL_URI INPUT...`: labels, probabilities, numbers or entity spans from a registered model whose
files are checked against their recorded sha256 before it loads (`tasks.audit.verified_model`)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import JSON, TRACKING
from flows.commands._registry_read import check_model_uri
from flows.console import esc, out, print_json, quiet_third_party, user_errors


def items_from(inputs: list[str], csv: Path | None) -> list[str]:
    """The inputs to predict on: as given, or the 'text' / 'path' column of a CSV (paths relative to the CSV)."""
    if csv is None:
        if not inputs:
            raise typer.BadParameter("give inputs (texts or file paths) or --csv FILE")
        return inputs
    from tlops.data.dataset import _read_csv
    from tlops.errors import DataError

    if not csv.is_file():
        raise DataError(f"{csv} not found; pass a CSV with a 'text' or 'path' column")
    df = _read_csv(csv, [])  # the dataset reader: a bad row is named by its line in the file
    if "text" in df.columns:
        return df["text"].tolist()
    if "path" in df.columns:  # relative paths are relative to the CSV, as in a dataset folder
        return [str((csv.parent / p).resolve()) if not Path(p).is_absolute() else p for p in df["path"]]
    raise DataError(f"{csv} has columns {list(df.columns)}; it needs a 'text' (texts) or 'path' (image/audio files) column")


def predict(model_uri: str = typer.Argument(..., help="models:/NAME@champion, models:/NAME/VERSION, or runs:/RUN/model"),
            inputs: Optional[list[str]] = typer.Argument(None, help="texts, or image/audio file paths"),
            csv: Optional[Path] = typer.Option(None, "--csv", help="a CSV with a 'text' or 'path' column"),
            proba: bool = typer.Option(False, "--proba", help="also the class probabilities"),
            support: Optional[Path] = typer.Option(None, "--support", help="a CSV of labelled rows ('text' or 'path', and "
                                                   "'label'): a meta-transfer model adapts to these classes on the spot"),
            json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Predict labels (and probabilities), numbers, or entity spans with a registered model; with --support, over the
    support set's classes."""
    from tlops.support_set import support_rows_from_csv

    quiet_third_party()  # no download or weight-loading bars while the model loads (`tlops -v` keeps them)
    items = items_from(inputs or [], csv)
    params = {"support": json.dumps(support_rows_from_csv(support))} if support else {}  # checked before loading the model
    check_model_uri(tracking_uri, model_uri)  # an unknown model in a second, not after the imports below
    import mlflow

    from tasks.audit import verified_model
    from tasks.operate import connect

    reg = connect(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tlops-predict-") as tmp:  # loading runs the model's code: check its files first
        model = mlflow.pyfunc.load_model(str(verified_model(reg, model_uri, Path(tmp))))
        if support and getattr(getattr(model.unwrap_python_model(), "predictor", None), "task", None) == "regression":
            support_rows_from_csv(support, numeric=True)  # a regressor's labels are target values: a bad one named by its CSV line
        labels = list(model.predict(items, params=params or None))
        probs = model.predict(items, params={**params, "proba": True}) if proba else None
    if labels and all(isinstance(y, list) for y in labels):  # a list of entity spans per input (token classification)
        return _print_spans(model_uri, items, labels, json_out)
    key = "label" if all(isinstance(y, str) for y in labels) else "value"  # a regression model predicts numbers
    rows = [{"input": x, key: y if key == "label" else float(y)} for x, y in zip(items, labels)]
    if probs is not None:
        for row, (_, p) in zip(rows, probs.iterrows()):
            row["proba"] = {k: float(v) for k, v in p.items()}
    if json_out:
        return print_json({"model_uri": model_uri, "predictions": rows, **({"support": str(support)} if support else {})})
    t = Table("input", key, *(["p(label)"] if proba else []))
    for r in rows:
        t.add_row(esc(r["input"][:80]), esc(str(r["label"])) if key == "label" else f"{r['value']:.4g}", *([f"{r['proba'][r['label']]:.3f}"] if proba else []))
    out.print(t)


def _print_spans(model_uri: str, items: list, spans: list, json_out: bool) -> None:
    """Entity spans per input: JSON as the model returns them, or a table with each entity's text, type, character
    offsets and score (the user's text escaped: Rich markup in it prints as written)."""
    rows = [{"input": x, "entities": [dict(e) for e in ents]} for x, ents in zip(items, spans)]
    if json_out:
        return print_json({"model_uri": model_uri, "predictions": rows})
    t = Table("input", "entities (type start-end score)")
    for r in rows:
        found = "; ".join(f"{e['text']} ({e['type']} {e['start']}-{e['end']} {float(e['score']):.2f})" for e in r["entities"])
        t.add_row(esc(r["input"][:80]), esc(found) if found else "-")
    out.print(t)


def register(app: typer.Typer) -> None:
    app.command("predict")(user_errors(predict))
