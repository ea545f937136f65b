"""`tlops predict MODEL_URI INPUT...`: labels, probabilities, numbers, entity spans or answers from a registered model whose
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


def items_from(inputs: list[str], csv: Path | None) -> list:
    """The inputs to predict on: as given, or the 'text' / 'path' column of a CSV (paths relative to the CSV); a CSV with
    neither gives its rows as records (a model whose input is a row of named fields, e.g. question and context, takes
    them: `rows_for`)."""
    if csv is None:
        if not inputs:
            raise typer.BadParameter("give inputs (texts or file paths) or --csv FILE")
        return inputs
    from tlops.data.dataset import _read_csv
    from tlops.errors import DataError

    if not csv.is_file():
        raise DataError(f"{csv} not found; pass a CSV with a 'text' or 'path' column (or the columns the model's rows have)")
    df = _read_csv(csv, [])  # the dataset reader: a bad row is named by its line in the file
    if "text" in df.columns:
        return df["text"].tolist()
    if "path" in df.columns:  # relative paths are relative to the CSV, as in a dataset folder
        return [str((csv.parent / p).resolve()) if not Path(p).is_absolute() else p for p in df["path"]]
    if df.empty:
        raise DataError(f"{csv} has a header but no rows; add rows to predict on")
    return [dict(r) | {"_line": line} for r, line in zip(df.to_dict("records"), df.attrs["lines"])]


def rows_for(columns: tuple[str, ...], items: list, csv: Path | None) -> list:
    """Inputs for a model whose input is a row of named fields (`columns`): CSV records with those columns, or each
    command-line input a JSON object with them. Plain inputs for any other model (a CSV then needs 'text' or 'path')."""
    from tlops.errors import DataError

    example = "{" + ", ".join(f'"{c}": "..."' for c in columns) + "}"
    if not columns:
        if items and isinstance(items[0], dict):
            raise DataError(f"{csv} has columns {[k for k in items[0] if k != '_line']}; it needs a 'text' (texts) or 'path' "
                            "(image/audio files) column")
        return items
    if csv is not None:
        if not items or not isinstance(items[0], dict) or any(c not in items[0] for c in columns):
            have = [k for k in items[0] if k != "_line"] if items and isinstance(items[0], dict) else ["text or path"]
            raise DataError(f"{csv} has columns {have}; this model takes rows with {', '.join(columns)}: name those columns")
        return [{c: r[c] for c in columns} for r in items]
    rows = []
    for i, x in enumerate(items, start=1):
        try:
            row = json.loads(x)
        except ValueError:
            row = None
        if not isinstance(row, dict) or any(c not in row for c in columns):
            raise DataError(f"input {i} ({x[:40]!r}) is not a JSON object with {', '.join(columns)}; this model takes rows "
                            f"such as '{example}' (or --csv FILE with those columns)")
        rows.append(row)
    return rows


def predict(model_uri: str = typer.Argument(..., help="models:/NAME@champion, models:/NAME/VERSION, or runs:/RUN/model"),
            inputs: Optional[list[str]] = typer.Argument(None, help="texts, or image/audio file paths; for a model whose input "
                                                         "is a row of fields (extractive QA), JSON objects such as "
                                                         "'{\"question\": \"...\", \"context\": \"...\"}'"),
            csv: Optional[Path] = typer.Option(None, "--csv", help="a CSV with a 'text' or 'path' column (extractive QA: "
                                               "'question' and 'context' columns)"),
            proba: bool = typer.Option(False, "--proba", help="also the class probabilities"),
            support: Optional[Path] = typer.Option(None, "--support", help="a CSV of labelled rows ('text' or 'path', and "
                                                   "'label'): a meta-transfer model adapts to these classes on the spot"),
            timings: bool = typer.Option(False, "--timings", help="speech recognition: each word's start and end (seconds) "
                                         "from the CTC alignment"),
            score_threshold: Optional[float] = typer.Option(None, "--score-threshold", help="object detection: the boxes "
                                                            "returned score at least this (0..1; default: the model's, 0.3)"),
            out_dir: Optional[Path] = typer.Option(None, "--out", help="object detection / segmentation: write each image "
                                                   "with its predicted boxes or mask drawn on it here (NNN-<name>.png)"),
            json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Predict labels (and probabilities), numbers, entity spans or answers with a registered model; with --support, over the
    support set's classes."""
    from tlops.support_set import support_rows_from_csv

    quiet_third_party()  # no download or weight-loading bars while the model loads (`tlops -v` keeps them)
    items = items_from(inputs or [], csv)
    params = {"support": json.dumps(support_rows_from_csv(support))} if support else {}  # checked before loading the model
    params |= {"timings": True} if timings else {}
    params |= {"score_threshold": score_threshold} if score_threshold is not None else {}
    check_model_uri(tracking_uri, model_uri)  # an unknown model in a second, not after the imports below
    import mlflow

    from tasks.audit import verified_model
    from tasks.operate import connect

    from tlops.task_types import task_type

    reg = connect(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tlops-predict-") as tmp:  # loading runs the model's code: check its files first
        model = mlflow.pyfunc.load_model(str(verified_model(reg, model_uri, Path(tmp))))
        predictor = getattr(model.unwrap_python_model(), "predictor", None)
        kind = task_type(predictor.task) if predictor is not None else None
        columns = kind.input_columns if kind is not None else ()
        if timings and (kind is None or "timings" not in [p[0] for p in kind.pyfunc_params]):
            from tlops.errors import DataError

            raise DataError(f"--timings: {model_uri} is not a speech recognition model (no per-word timings); drop --timings")
        if score_threshold is not None and (kind is None or "score_threshold" not in [p[0] for p in kind.pyfunc_params]):
            from tlops.errors import DataError

            raise DataError(f"--score-threshold: {model_uri} is not an object detection model (no scored boxes); drop --score-threshold")
        if out_dir is not None and not hasattr(kind, "write_overlays"):
            from tlops.errors import DataError

            raise DataError(f"--out: {model_uri} is not an object detection or segmentation model (nothing to draw); drop --out")
        items = rows_for(columns, items, csv)  # a row of named fields (extractive QA: question, context), or plain inputs
        if support and predictor is not None and task_type(predictor.task).numeric_target:
            support_rows_from_csv(support, numeric=True)  # a regressor's labels are target values: a bad one named by its CSV line
        labels = list(model.predict(items, params=params or None))
        probs = model.predict(items, params={**params, "proba": True}) if proba else None
    if out_dir is not None:  # each image with its boxes or mask drawn (the files go beside, the table or JSON as always)
        kind.write_overlays(items, labels, predictor.labels, out_dir)
    if timings:  # per clip its words with start/end seconds (speech recognition)
        if not all(isinstance(y, list) for y in labels):  # a version whose signature has no `timings` param: MLflow drops it
            from tlops.errors import DataError

            raise DataError(f"{model_uri} was registered before per-word timings (its signature has no 'timings' param); "
                            "predict without --timings, or register a new version with `tlops run`")
        return _print_timings(model_uri, items, labels, json_out)
    if labels and all(isinstance(y, list) for y in labels):  # a list of entity spans per input (token classification)
        return _print_spans(model_uri, items, labels, json_out)
    if labels and all(isinstance(y, dict) for y in labels):  # a record per input (extractive QA: answer, offsets, score)
        return _print_records(model_uri, items, labels, json_out)
    # a regression model predicts numbers; a string is a label, or what the task type calls it (a transcript)
    key = (kind.prediction_column if kind is not None else "label") if all(isinstance(y, str) for y in labels) else "value"
    rows = [{"input": x, key: y if key != "value" else float(y)} for x, y in zip(items, labels)]
    if probs is not None:
        for row, (_, p) in zip(rows, probs.iterrows()):
            row["proba"] = {k: float(v) for k, v in p.items()}
    if json_out:
        return print_json({"model_uri": model_uri, "predictions": rows, **({"support": str(support)} if support else {})})
    t = Table("input", key, *(["p(label)"] if proba else []))
    for r in rows:
        t.add_row(esc(r["input"][:80]), esc(str(r[key])) if key != "value" else f"{r['value']:.4g}", *([f"{r['proba'][r[key]]:.3f}"] if proba else []))
    out.print(t)


def _print_timings(model_uri: str, items: list, words: list, json_out: bool) -> None:
    """Per clip its transcript and each word's start/end seconds: JSON, or a table (file names and words escaped)."""
    rows = [{"input": x, "transcript": " ".join(w["word"] for w in ws), "words": [dict(w) for w in ws]} for x, ws in zip(items, words)]
    if json_out:
        return print_json({"model_uri": model_uri, "predictions": rows})
    t = Table("input", "transcript", "words (start-end s)")
    for r in rows:
        t.add_row(esc(r["input"][:80]), esc(r["transcript"]), esc(" ".join(f"{w['word']} {w['start']:.2f}-{w['end']:.2f}" for w in r["words"])) or "-")
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


def _print_records(model_uri: str, items: list, answers: list[dict], json_out: bool) -> None:
    """A record per input: JSON as the model returns it, or a table of the input's fields (cut to 40 characters) and the
    record's (the user's text escaped)."""
    rows = [{"input": x, "prediction": dict(a)} for x, a in zip(items, answers)]
    if json_out:
        return print_json({"model_uri": model_uri, "predictions": rows})
    fields = list(items[0]) if isinstance(items[0], dict) else ["input"]
    keys = list(dict.fromkeys(k for a in answers for k in a))
    t = Table(*fields, *keys)
    for x, a in zip(items, answers):
        values = [x[f] for f in fields] if isinstance(x, dict) else [x]
        shown = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in (a.get(k, "") for k in keys)]
        shown = [v if len(v) <= 60 else v[:57] + "..." for v in shown]  # a mask's runs, a long box list: --json has them whole
        t.add_row(*(esc(str(v)[:40]) for v in values), *(esc(v) for v in shown))
    out.print(t)


def register(app: typer.Typer) -> None:
    app.command("predict")(user_errors(predict))
