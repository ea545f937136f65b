"""`tlops models | promote | rollback | history | predict`: operate the registry from the command line.

Thin: each command calls tasks/operate.py or tasks/registry.py and prints a rich table for people or,
with --json, one JSON object. Errors are one line naming the thing and the fix; no alias moves on any.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape as esc  # every user-written string (names, reasons, inputs, labels, paths) before Rich
from rich.table import Table

from tlops.aliases import as_row

TRACKING = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
JSON = typer.Option(False, "--json", help="print one JSON object instead of a table")
REASON = typer.Option(..., "--reason", help="why: kept in the history with who did it and when")
out = Console() if sys.stdout.isatty() else Console(width=240)  # piped or logged: wide rows, not wrapped words


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def _command() -> str:
    return " ".join(["tlops", *sys.argv[1:]])


_started_ms: int | None = None  # when the running command started (set by the CLI's entry, `command_started`)
_commands_started = 0


def command_started() -> None:
    """Mark a command's start: a `tlops ...` process's first command started when the process did (imports and
    connecting take seconds, and a promote's "the champion now" means when the user pressed enter); a later
    command in the same process starts now."""
    global _started_ms, _commands_started
    if _commands_started == 0:
        import psutil

        _started_ms = int(psutil.Process().create_time() * 1000)
    else:
        _started_ms = int(time.time() * 1000)
    _commands_started += 1


def _print_json(obj) -> None:
    print(json.dumps(obj, default=str))


REGISTRATION_TAGS = ("tlops.package_sha256", "tlops.code_sha256")  # set last by a registration (tasks/register.py)


def _incomplete(tags: dict, run_status: str) -> str | None:
    """Why a version's registration did not finish, or None: tagged so when its run was found killed, missing the
    sha256 tags a registration sets last, or its run not FINISHED (killed, failed, or still running)."""
    from tasks.tracking import INCOMPLETE_TAG

    if tags.get(INCOMPLETE_TAG) == "true":
        return "its run ended (killed or failed) before its registration and gate finished"
    missing = [t for t in REGISTRATION_TAGS if t not in tags]
    if missing:
        return f"no {' / '.join(missing)} tag: its registration did not finish (or predates these tags)"
    if run_status != "FINISHED":
        return f"its run is {run_status}, not FINISHED: registered, but the run did not finish"
    return None


def models(name: Optional[str] = typer.Argument(None, help="a registered model: list its versions"),
           json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Registered models, or one model's versions with aliases, lineage and audit status (and incomplete registrations)."""
    from tasks.operate import connect
    from tasks.registry import lineage

    reg = connect(tracking_uri)
    if name is None:
        rows = []
        for n in reg.model_names():
            m = reg.client.get_registered_model(n)
            rows.append({"name": n, "versions": len(reg.client.search_model_versions(f"name='{n}'")), "champion": m.aliases.get("champion"),
                         "challenger": m.aliases.get("challenger"), "updated_ms": m.last_updated_timestamp})
        if json_out:
            return _print_json({"models": rows})
        t = Table("model", "versions", "champion", "challenger", "updated")
        for r in rows:
            t.add_row(esc(r["name"]), str(r["versions"]), str(r["champion"] or "-"), str(r["challenger"] or "-"), _when(r["updated_ms"]))
        out.print(t)
        return
    rows = []
    for mv in reg.versions(name):
        row = lineage(reg.client, mv)
        why = _incomplete(mv.tags, row["status"])
        rows.append({**row, "incomplete": why is not None, "incomplete_reason": why})
    if json_out:
        return _print_json({"model": name, "versions": rows})
    t = Table("version", "aliases", "strategy", "backbone", "test metric", "data md5", "git", "run", "created", "audit", title=esc(name))
    for r in rows:
        metric = f"{r['metric']}={r['test_metric']:.4f}" if r["test_metric"] is not None else f"- ({r['status']})"
        version = f"{r['version']} [red]incomplete[/red]" if r["incomplete"] else r["version"]
        t.add_row(version, esc(", ".join(r["aliases"]) or "-"), esc(r["strategy"] or "-"), esc(r["backbone"] or "-"),
                  esc(metric), esc((r["data_md5"] or "-")[:12]),
                  esc((r["git_commit"] or "-")[:10]) + ("*" if r["git_dirty"] == "True" else ""), r["run_id"][:12],
                  _when(r["created_ms"]), esc(r["audit"] or "-"))
    out.print(t)
    for r in rows:
        if r["incomplete"]:
            out.print(f"[red]v{r['version']} is incomplete[/red]: {esc(r['incomplete_reason'])} (run {r['run_id']}); "
                      "do not serve or promote it: train and register it again with `tlops run`", soft_wrap=True)


def _print_move(move, json_out: bool) -> None:
    if json_out:
        return _print_json(as_row(move))
    out.print(f"[bold]{esc(move.model)}[/bold]: {esc(move.alias)} {move.arrow()}  ({move.kind} by {esc(move.actor)})")
    if move.gate is not None:
        out.print(f"gate: {esc(move.gate.reason)}")


def promote(name: str = typer.Argument(..., help="registered model"), version: str = typer.Argument(..., help="version to make champion"),
            reason: str = REASON,
            if_better: bool = typer.Option(False, "--if-better", help="only if it beats the champion on its own test split (the training gate)"),
            expect: Optional[str] = typer.Option(None, "--expect", help="the champion version you expect to replace ('none': no champion); "
                                                                      "refused if it moved meanwhile (default: the champion when "
                                                                      "this command started)"),
            json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Move `champion` to VERSION (compare-and-set; recorded in the history)."""
    from tasks.operate import UNSET, connect
    from tasks.operate import promote as do_promote

    expected = UNSET if expect is None else (None if expect.lower() == "none" else expect.lstrip("v"))
    move = do_promote(connect(tracking_uri), name, version.lstrip("v"), reason, if_better=if_better, expected=expected, command=_command(),
                      started_ms=_started_ms)
    _print_move(move, json_out)


def rollback(name: str = typer.Argument(..., help="registered model"),
             to: Optional[str] = typer.Option(None, "--to", help="version to go back to (default: the champion before the current one)"),
             reason: str = REASON, json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Move `champion` back to the previous champion (from the history), or to --to VERSION."""
    from tasks.operate import connect
    from tasks.operate import rollback as do_rollback

    move = do_rollback(connect(tracking_uri), name, reason, to=to.lstrip("v") if to else None, command=_command(), started_ms=_started_ms)
    _print_move(move, json_out)


def history(name: str = typer.Argument(..., help="registered model"), json_out: bool = JSON,
            tracking_uri: Optional[str] = TRACKING) -> None:
    """Every alias move of a model, oldest first: when, who, from -> to, why, and which run or command."""
    from tasks.operate import connect

    reg = connect(tracking_uri)
    reg.require_model(name)
    moves = reg.history(name)
    if json_out:
        return _print_json({"model": name, "moves": [as_row(m) for m in moves]})
    t = Table("when", "who", "alias", "move", "", "kind", "why", "by", title=f"{esc(name)}: alias history")
    for m in moves:
        why = m.reason if m.gate is None or m.gate.reason in m.reason else f"{m.reason} ({m.gate.reason})"
        t.add_row(_when(m.when_ms), esc(m.actor), esc(m.alias), m.arrow(), "applied" if m.applied else "[red]refused[/red]", m.kind, esc(why),
                  f"run {m.source_run[:12]}" if m.source_run else esc(m.command or "-"))
    out.print(t)
    if not moves:
        out.print(f"no alias moves recorded for {esc(name)} yet")


def _items(inputs: list[str], csv: Path | None) -> list[str]:
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


def evaluate(model_uri: str = typer.Argument(..., help="models:/NAME@champion, models:/NAME/VERSION, or runs:/RUN/model"),
             data: Path = typer.Option(..., "--data", help="a labelled CSV ('text' or 'path' column, and 'label'), or a dataset "
                                                         "folder (its --split CSV)"),
             split: str = typer.Option("test", "--split", help="with a dataset folder: which split's CSV"),
             out_dir: Optional[Path] = typer.Option(None, "--out", help="also write the plots and report.json here"),
             json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Metrics of a registered model on any labelled data: per-class table and confusion matrix for a classifier,
    MAE/RMSE/R2/Spearman and predicted-vs-true plots for a regression model."""
    import mlflow

    from tasks.audit import verified_model
    from tasks.operate import connect
    from tlops.data.dataset import _read_csv
    from tlops.errors import DataError

    quiet_loading()
    csv = data / f"{split}.csv" if data.is_dir() else data
    column = "label"  # a dataset folder names its own: a regression dataset's `target:` column
    if data.is_dir() and (data / "dataset.yaml").is_file():
        from tlops.data.dataset import _read_meta

        column = _read_meta(data / "dataset.yaml").get("target") or "label"
    items = _items([], csv)
    df = _read_csv(csv, [])
    if column not in df.columns:
        raise DataError(f"{csv} has no {column!r} column; evaluate needs the true labels (use `tlops predict` without them)")
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
        return _print_json(report)
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


def quiet_loading() -> None:
    """No download or weight-loading bars from MLflow, the hub or transformers while a model loads (`tlops -v` keeps them)."""
    from flows.cli import quiet_third_party

    quiet_third_party()


def predict(model_uri: str = typer.Argument(..., help="models:/NAME@champion, models:/NAME/VERSION, or runs:/RUN/model"),
            inputs: Optional[list[str]] = typer.Argument(None, help="texts, or image/audio file paths"),
            csv: Optional[Path] = typer.Option(None, "--csv", help="a CSV with a 'text' or 'path' column"),
            proba: bool = typer.Option(False, "--proba", help="also the class probabilities"),
            support: Optional[Path] = typer.Option(None, "--support", help="a CSV of labelled rows ('text' or 'path', and "
                                                   "'label'): a meta-transfer model adapts to these classes on the spot"),
            json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Predict labels (and probabilities), numbers, or entity spans with a registered model; with --support, over the
    support set's classes."""
    import mlflow

    from tasks.audit import verified_model
    from tasks.operate import connect
    from tlops.support_set import support_rows_from_csv

    quiet_loading()
    items = _items(inputs or [], csv)
    params = {"support": json.dumps(support_rows_from_csv(support))} if support else {}  # checked before loading the model
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
        return _print_json({"model_uri": model_uri, "predictions": rows, **({"support": str(support)} if support else {})})
    t = Table("input", key, *(["p(label)"] if proba else []))
    for r in rows:
        t.add_row(esc(r["input"][:80]), esc(str(r["label"])) if key == "label" else f"{r['value']:.4g}", *([f"{r['proba'][r['label']]:.3f}"] if proba else []))
    out.print(t)


def _print_spans(model_uri: str, items: list, spans: list, json_out: bool) -> None:
    """Entity spans per input: JSON as the model returns them, or a table with each entity's text, type, character
    offsets and score (the user's text escaped: Rich markup in it prints as written)."""
    rows = [{"input": x, "entities": [dict(e) for e in ents]} for x, ents in zip(items, spans)]
    if json_out:
        return _print_json({"model_uri": model_uri, "predictions": rows})
    t = Table("input", "entities (type start-end score)")
    for r in rows:
        found = "; ".join(f"{e['text']} ({e['type']} {e['start']}-{e['end']} {float(e['score']):.2f})" for e in r["entities"])
        t.add_row(esc(r["input"][:80]), esc(found) if found else "-")
    out.print(t)


def audit(model_uri: str = typer.Argument(..., help="models:/NAME@champion or models:/NAME/VERSION"),
          use_cache: bool = typer.Option(False, "--use-cache", help="reuse cached features (default: recompute them from the data)"),
          repo: Optional[Path] = typer.Option(None, "--repo", help="git repository holding the recorded commit (default: this checkout)"),
          json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Reproduce a registered version from its lineage and check it is the same model (exit 0 only on pass)."""
    from tasks.audit import audit as do_audit
    from tasks.operate import connect

    report, run_id = do_audit(connect(tracking_uri), model_uri, use_cache=use_cache, repo=repo)
    if json_out:
        _print_json({**report.model_dump(mode="json"), "audit_run_id": run_id})
    else:
        t = Table("check", "result", "detail", title=f"audit of {esc(report.model)} v{report.version}: "
                  f"{'[green]PASSED[/green]' if report.passed else '[red]FAILED[/red]'}")
        for c in report.checks:
            t.add_row(c.name, {True: "pass", False: "[red]FAIL[/red]", None: "not run"}[c.passed], esc(c.detail))
        out.print(t)
        out.print(f"report: MLflow run {run_id} (experiment tlops-audits), {report.wall_s:.1f} s")
    if not report.passed:
        raise typer.Exit(1)


def schedule_ls(json_out: bool = JSON) -> None:
    """The schedules: name, model, time schedule, data trigger, pool, paused, data folder."""
    from flows.schedule import list_schedules, require_server

    require_server()
    rows = list_schedules()
    if json_out:
        return _print_json({"schedules": rows})
    t = Table("name", "model", "schedule", "data trigger", "pool", "paused", "data")
    for r in rows:
        t.add_row(esc(r["name"]), esc(str(r["model"])), esc(r["schedule"]), "yes" if r["data_trigger"] else "no", esc(str(r["pool"])),
                  str(r["paused"]), esc(str(r["data"])))
    out.print(t)


def schedule_rm(name: str = typer.Argument(..., help="the schedule to remove (see `tlops schedule ls`)"), json_out: bool = JSON) -> None:
    """Remove a schedule (its time schedule and its data trigger)."""
    from flows.schedule import remove_schedule, require_server
    from tlops.errors import ConfigError

    require_server()
    removed = remove_schedule(name)
    if not removed:
        raise ConfigError(f"no schedule named {name!r}; see `tlops schedule ls`")
    return _print_json({"removed": removed}) if json_out else out.print(esc(f"removed {', '.join(removed)}"))


def schedule(target: str = typer.Argument(..., metavar="CONFIG", help="the config YAML to schedule"),
             cron: Optional[str] = typer.Option(None, "--cron", help="cron expression, e.g. '0 3 * * *' (03:00 daily)"),
             interval: Optional[float] = typer.Option(None, "--interval", help="seconds between runs"),
             pool: str = typer.Option("tlops-cpu", "--pool", help="work pool whose worker runs it (the stack's CPU worker: tlops-cpu)"),
             schedule_name: Optional[str] = typer.Option(None, "--name", help="schedule name (default: the model name)"),
             watch_every: float = typer.Option(300, "--watch-every", help="seconds between data-change checks (0: no data trigger)"),
             debounce: float = typer.Option(60, "--debounce", help="data changes within this many seconds give one run"),
             set_: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="override a config key, as for `tlops run`"),
             json_out: bool = JSON) -> None:
    """Retrain CONFIG on a schedule and when its data changes (`tlops schedule CONFIG ...` is the same command)."""
    from flows.schedule import require_server
    from flows.schedule import schedule as do_schedule
    from tlops.config import load_config
    from tlops.errors import ConfigError

    require_server()
    if cron and interval:
        raise ConfigError("give --cron or --interval, not both")
    cfg = load_config(target, set_ or [])
    label = schedule_name or cfg.registry.model_name
    try:
        ids = do_schedule(cfg, label, pool, cron=cron, interval=interval, watch_every=watch_every or None, debounce=debounce)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if json_out:
        return _print_json({"name": label, "deployments": ids, "pool": pool, "cron": cron, "interval": interval, "watch_every": watch_every})
    when = f"cron '{cron}'" if cron else (f"every {interval:g} s" if interval else "no time schedule")
    out.print(f"scheduled [bold]{esc(label)}[/bold]: tlops-train/{esc(label)} ({esc(when)}) on pool {esc(repr(pool))}"
              + (f"; data watch every {watch_every:g} s retrains on change" if watch_every else ""))
    out.print(f"start a worker: prefect worker start --pool {esc(pool)}")
