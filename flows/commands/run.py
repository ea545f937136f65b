"""`tlops run CONFIG`: validate -> features -> train -> evaluate -> register, as a Prefect flow (a local Prefect server
when no PREFECT_API_URL is set). The data is checked before any orchestration import, so a data error is seconds away;
the flow itself is imported lazily."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from flows import console
from flows.console import err, esc, failed, print_error, quiet_third_party, status
from tlops.errors import TlopsError
from tlops.secrets import adopt_credentials

HUMAN_ONLY = {"experiment", "backbone"}  # in the summary for people, not in --json (unchanged keys)


def run(
    config: Path = typer.Argument(..., help="experiment YAML, e.g. configs/text_linear_probe.yaml"),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="override a config key: --set strategy.head=mlp "
                                             "(shown in the run's name)"),
    experiment: Optional[str] = typer.Option(None, "--experiment", metavar="NAME", help="MLflow experiment to log the run in "
                                             "(default: the config's tracking.experiment, else the model's name)"),
    run_name: Optional[str] = typer.Option(None, "--run-name", metavar="NAME", help="the run's name in MLflow (default: "
                                           "<model>-<date>-<time> followed by the --set overrides)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the config's "
                                               "tracking.uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
) -> None:
    """Run the training flow: validate -> features -> train -> evaluate -> register."""
    status(f"[dim]tlops run {esc(str(config))}: checking the config and the data[/dim]")  # at once: the imports below take seconds
    from tlops.config import load_config

    named = [f"tracking.{k}={json.dumps(v)}" for k, v in (("experiment", experiment), ("run_name", run_name), ("uri", tracking_uri))
             if v is not None]
    try:  # a name is a string as typed (JSON is YAML): `--experiment 2024` is not the number 2024
        cfg = load_config(config, [*(set_ or []), *named])
    except TlopsError as e:
        raise failed(e, 2)
    if cfg.tracking.uri:  # the password travels in the environment, never in the flow's parameters
        cfg.tracking.uri = adopt_credentials(cfg.tracking.uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = adopt_credentials(os.environ["MLFLOW_TRACKING_URI"])
    quiet_third_party()
    checked = check_data_first(cfg, str(config))
    from tlops.config import default_run_name

    cfg.tracking.run_name = cfg.tracking.run_name or default_run_name(cfg.registry.model_name)  # named now: the line below says it
    rows = checked["report"]["rows"]
    status(f"[dim]data ok ({', '.join(f'{k} {v}' for k, v in rows.items())} rows); training {esc(cfg.registry.model_name)} "
           f"({esc(cfg.strategy.name)} on {esc(cfg.backbone.name)}) as run {esc(repr(cfg.tracking.run_name))} "
           f"in experiment {esc(repr(cfg.tracking.experiment))}[/dim]")
    server = None
    if not os.environ.get("PREFECT_API_URL"):  # a local server boots in its own process while we import the flow
        from flows.local_server import begin_local_server

        try:
            server = begin_local_server()
        except TlopsError as e:
            raise failed(e, 2)
    try:
        from flows.train import train_flow

        if not console.verbose():
            console.leave_run_errors_to_the_command()
        gc.freeze()  # the imported libraries live until exit: keep them out of every GC pass

        from tlops.progress import Display, use

        try:  # progress on stderr (bars on a terminal, epoch lines anywhere): stdout stays the summary or the JSON alone
            with local_prefect_server(server), use(None if console.quiet() else Display(err)):
                result = train_flow(cfg.model_dump(mode="json"), source=str(config), progress=sys.stderr.isatty(), checked=checked)
        except TlopsError as e:
            raise failed(e, 1)
        except OSError as e:  # a full disk where no step said what it was writing (features, evaluation, packaging)
            from tlops.diskspace import as_disk_full

            full = as_disk_full(e, Path(cfg.execution.work_dir))
            if full is None:
                raise
            raise failed(full, 1)
        except Exception as e:  # the Prefect server went away for longer than its client retries: one line, not a traceback
            from flows.prefect_outage import prefect_server_gone

            gone = prefect_server_gone(e)
            if gone is None:
                raise
            raise failed(gone, 1)
    finally:
        if server is not None:
            server.stop()  # already stopped unless the imports failed; stopping twice is harmless
    gc.freeze()  # skips a multi-second final collection of millions of objects at interpreter exit
    if json_out:
        print(json.dumps(result.model_dump(mode="json", exclude=HUMAN_ONLY)))
        return
    print_summary(result, _input_example(cfg))


@contextlib.contextmanager
def local_prefect_server(server=None):
    """Without PREFECT_API_URL, run against a local Prefect server (`flows.local_server`: the kept one runs share,
    or one of this process with TLOPS_LOCAL_SERVER=temporary); `server`: one already begun by the caller (it
    boots while the caller imports the flow)."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    from flows.local_server import begin_local_server

    server = server or begin_local_server()
    try:
        api_url = server.wait(timeout=180)
        if getattr(server, "reused", True) is False:  # a kept server this run started: say it stays, and how to stop it
            status(f"[dim]started a local Prefect server at {api_url} (pid {server.process.pid}); later runs reuse it, and it exits "
                   f"after {server.idle:.0f} s without runs (`tlops local-server stop` stops it now)[/dim]")
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield
    finally:
        _drain_prefect_services()  # on every exit path: left queued, they would retry a stopped server at exit (60+ s)
        with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False}):  # nothing left to send them to
            server.stop()


def _drain_prefect_services() -> None:
    """Deliver the run's queued events and log lines while the temporary server still answers (bounded wait)."""
    from prefect._internal.concurrency.services import QueueService

    try:
        QueueService.drain_all(timeout=5)
    except Exception:  # a courtesy to the server's records; never the reason a run fails
        pass


def check_data_first(cfg, source: str) -> dict:
    """Validate the data before any server or orchestration import is needed, so a data error reaches the user in
    seconds (and once); it is still recorded as a FAILED MLflow run. The report travels into the flow, which
    reuses it while the data's md5 is unchanged."""
    from tlops.data.versions import dir_md5
    from tlops.pipeline import validate_step

    data = Path(cfg.data.path)
    try:
        data_md5 = dir_md5(data) if data.is_dir() else None  # before the checks: a later change is seen by the flow
        report = validate_step(cfg)
    except TlopsError as e:
        print_error(e)
        from tasks.validate import record_failed_check

        run_id = record_failed_check(cfg, source, e)
        err.print(f"(recorded as FAILED MLflow run {run_id})", highlight=False)
        raise typer.Exit(1)
    return {"report": report.model_dump(mode="json"), "data_md5": data_md5}


def _input_example(cfg) -> str | None:
    """A row of the task's named fields as JSON (extractive QA: '{"question": "...", "context": "..."}'), for the predict
    hints; None for a model of plain inputs (texts, file paths)."""
    from tlops.data.dataset import _read_meta
    from tlops.task_types import task_type

    try:
        task = _read_meta(Path(cfg.data.path) / "dataset.yaml").get("task") or "classification"
        columns = task_type(task).input_columns
    except TlopsError:
        return None
    return json.dumps({c: "..." for c in columns}) if columns else None


def print_summary(r, row: str | None = None) -> None:
    """The run's result for people (`r`: a `tlops.records.RunOutcome`; `row`: a JSON input row when the model takes
    rows of named fields); names, paths and reasons escaped."""
    from rich.console import Console

    e = esc
    out = Console(soft_wrap=True)  # keep the commands on one line, copy-pastable
    m = r.test_metrics
    out.print(f"\n[bold]trained[/bold] {e(r.strategy)} on {e(r.backbone)}")
    from tlops.task_types import all_task_types

    headline = [k for k in ("accuracy", "macro_f1", "mae", "rmse", "r2", "spearman") if k in m]  # classes or numbers
    headline += list(dict.fromkeys(k for t in all_task_types().values() for k in t.gate_metrics if k in m and k not in headline))
    out.print("[bold]test[/bold]    " + "  ".join(f"{k}={m[k]:.4f}" for k in headline))
    b = getattr(r, "baseline", None)
    if b:  # the trivial baseline on the same split (tlops.classic_baseline)
        gm = b["gate_metric"]
        line = f"{e(b['name'])} {gm}={b['metrics'][gm]:.4f} on the same test split"
        if b["wins"]:
            out.print(f"[bold yellow]warning[/bold yellow] the classic baseline beats this model: {line}; the pretrained backbone "
                      "has not earned its cost here (try fine-tuning, another backbone, or keep the baseline)")
        else:
            out.print(f"[bold]baseline[/bold] {line} (the model beats it)")
    if getattr(r, "selection", None):  # the label-free choice among candidates (domain adaptation, meta-transfer)
        from tlops.selection_record import SelectionRecord

        out.print(SelectionRecord.model_validate(r.selection).rich_table())
    if r.best_epoch is not None:
        resumed = f"  (resumed from {e(str(r.resumed_from['checkpoint']))})" if r.resumed_from else ""
        # epochs counted from 1, as the progress lines show them (MLflow's steps count from 0)
        val = next((f"{k}={v:.4f}" for k, v in r.val_metrics.items()), "")  # the task type's selection metric comes first
        out.print(f"[bold]val[/bold]     {val}, kept epoch {r.best_epoch + 1}{resumed}")
    out.print(f"[bold]cache[/bold]   hits={r.cache.hits} misses={r.cache.misses}")
    out.print(f"[bold]model[/bold]   {e(r.model_name)} version {r.version} aliases={', '.join(r.aliases)}")
    out.print(f"[bold]gate[/bold]    {e(r.promotion.reason)}")
    out.print(f"[bold]run[/bold]     {r.run_id} in experiment {e(repr(r.experiment))}")
    # `workflowType=machine_learning`: MLflow 3's UI otherwise opens in its GenAI view in a fresh browser (the experiment's
    # kind tag does not switch it; bench/screenshot_mlflow.py checks the link lists the run)
    page = f"http://127.0.0.1:5000/#/experiments/{r.experiment_id}?workflowType=machine_learning" if r.experiment_id else "http://127.0.0.1:5000"
    out.print(f"\nOpen the MLflow UI:  mlflow ui --backend-store-uri {e(r.tracking_uri)}   (then {page})")
    given = f"'{e(row)}'" if row else "INPUT ..."
    out.print(f"Predict (checked):   tlops predict models:/{e(r.model_name)}@champion {given} --tracking-uri {e(r.tracking_uri)}")
    out.print(f"Load it in Python:   mlflow.set_tracking_uri('{e(r.tracking_uri)}'); "
              f"mlflow.pyfunc.load_model('models:/{e(r.model_name)}@champion').predict([{e(row) if row else '...'}])  "
              "(loads without tlops's sha256 check)")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
