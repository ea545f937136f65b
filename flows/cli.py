"""The `tlops` command line (typer). It lives beside the flows it starts (the core `tlops/` never imports
orchestration); the flow is imported lazily so `tlops --help` and config errors stay fast."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from flows import registry_commands
from tlops.errors import TlopsError
from tlops.records import RunOutcome
from tlops.secrets import adopt_credentials, mask

HUMAN_ONLY = {"experiment", "backbone"}  # in the summary for people, not in --json (unchanged keys)

# no rich tracebacks with local variables: they would print credentials; `_masked_excepthook` prints plain ones, masked
# typer 0.29's help prints a value type for flags ("--json <bool>"), which take no value, and "inputs... <list[str]>"
# for repeated arguments: show no type for flags, the element type for repeated arguments
_option_type, _argument_type = typer.core.TyperOption.display_type_rich, typer.core.TyperArgument.display_type_rich
typer.core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _option_type(self, ctx)
typer.core.TyperArgument.display_type_rich = lambda self, ctx: re.sub(r"^<list\[(.+)\]>$", r"<\1>", _argument_type(self, ctx))

HELP = {"help_option_names": ["-h", "--help"]}  # `tlops -h`, `tlops run -h`, as most command lines take it
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, context_settings=HELP,
                  help="Transfer learning from pretrained models, as a governed pipeline.")
err = Console(stderr=True, soft_wrap=True)  # paths in messages stay whole (copy-pastable)


QUIET_ENV = {  # always: telemetry and URLs on stdout (where `--json` prints its one object)
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # "🏃 View run ... at: http://..." after each run against a server
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",  # Prefect's client telemetry and its first-run notice (PREFECT_SERVER_ANALYTICS_ENABLED is the server's)
}
# unless `tlops -v`: third-party progress bars ("Downloading artifacts", "Loading weights") and MLflow's INFO lines ("Waiting
# up to 300 seconds for model version to finish creation" against a tracking server). Read when each library is imported
# (transformers takes the hub's setting), so set before any of them is.
BARS_AND_INFO_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
# Without -v, Prefect's console handler shows warnings and errors only; the run's INFO logs still reach the
# Prefect server (its UI), whose handler this does not touch. Read when Prefect configures logging at import.
PREFECT_CONSOLE_LEVEL_ENV = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
_verbose = False  # `tlops -v`: third-party logs (Prefect, Great Expectations, MLflow) shown
_quiet = False  # `tlops -q`: no progress and no status lines; errors, warnings and the result only


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


def quiet_third_party() -> None:
    """No telemetry, no nested progress bars, no third-party INFO lines (`tlops -v` shows them): the run's own
    output stays readable. Cheap (no library imported): every command calls it first."""
    for k, v in {**QUIET_ENV, **({} if _verbose else BARS_AND_INFO_ENV)}.items():
        os.environ.setdefault(k, v)
    import logging

    if _verbose:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s | %(levelname)-7s | %(name)s - %(message)s")
        for name in ("great_expectations", "mlflow", "tlops"):  # until Prefect's logging config takes over the root handler
            logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)  # 100s of lines about its own API docs
        return
    os.environ.setdefault(PREFECT_CONSOLE_LEVEL_ENV, "WARNING")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # "Created temporary directory ..." and friends
    # the hub and transformers read HF_HUB_DISABLE_PROGRESS_BARS when imported; one already imported (a second command in
    # this process, or a caller's import) is switched off here. Neither is imported for it: the hub alone costs ~0.3 s
    if "huggingface_hub.utils" in sys.modules:
        sys.modules["huggingface_hub.utils"].disable_progress_bars()
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()
    for name in ("mlflow.store.db.utils",  # "Creating initial MLflow database tables..."
                 "mlflow.pyfunc",  # "Validating input example against model signature" at every run
                 "mlflow.store.model_registry.abstract_store"):  # "Waiting up to 300 seconds ..." (MLflow imported already)
        logging.getLogger(name).setLevel(logging.WARNING)


def _print_error(e: Exception) -> None:
    err.print(f"[red]error:[/red] {escape(mask(str(e)))}", highlight=False)  # messages quote user text: never markup


def _failed(e: Exception, code: int) -> typer.Exit:
    """One masked `error:` line; the exit to raise (1: the run failed, 2: the command or config is wrong)."""
    _print_error(e)
    return typer.Exit(code)


def _masked_excepthook(kind, value, tb) -> None:
    import traceback

    sys.stderr.write(mask("".join(traceback.format_exception(kind, value, tb))))


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"tlops {version('tlops')}")
        raise typer.Exit()


@app.callback()
def _main(show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                            help="print the version and exit"),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="also show Prefect, Great Expectations and MLflow logs, "
                                       "and the download and weight-loading bars of MLflow and Hugging Face"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars or status lines: errors, warnings and the "
                                     "result only")) -> None:
    """tlops: build custom models from pretrained ones; tracked in MLflow, orchestrated by Prefect."""
    global _verbose, _quiet
    if verbose and quiet:
        raise _failed(TlopsError("give -v (more output) or -q (less), not both"), 2)
    _verbose, _quiet = verbose, quiet
    sys.excepthook = _masked_excepthook
    quiet_third_party()  # before any command imports MLflow, Hugging Face or transformers
    registry_commands.command_started()


def status(text: str) -> None:
    """A status line on stderr for people (stdout stays the result, or the one JSON object); none with `tlops -q`.
    `text` is markup: user-written parts are escaped by the caller."""
    if not _quiet:
        err.print(text, highlight=False)


@app.command()
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
    status(f"[dim]tlops run {escape(str(config))}: checking the config and the data[/dim]")  # at once: the imports below take seconds
    from tlops.config import load_config

    named = [f"tracking.{k}={json.dumps(v)}" for k, v in (("experiment", experiment), ("run_name", run_name), ("uri", tracking_uri))
             if v is not None]
    try:  # a name is a string as typed (JSON is YAML): `--experiment 2024` is not the number 2024
        cfg = load_config(config, [*(set_ or []), *named])
    except TlopsError as e:
        raise _failed(e, 2)
    if cfg.tracking.uri:  # the password travels in the environment, never in the flow's parameters
        cfg.tracking.uri = adopt_credentials(cfg.tracking.uri)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = adopt_credentials(os.environ["MLFLOW_TRACKING_URI"])
    quiet_third_party()
    checked = _check_data_first(cfg, str(config))
    from tlops.config import default_run_name

    cfg.tracking.run_name = cfg.tracking.run_name or default_run_name(cfg.registry.model_name)  # named now: the line below says it
    rows = checked["report"]["rows"]
    status(f"[dim]data ok ({', '.join(f'{k} {v}' for k, v in rows.items())} rows); training {escape(cfg.registry.model_name)} "
           f"({escape(cfg.strategy.name)} on {escape(cfg.backbone.name)}) as run {escape(repr(cfg.tracking.run_name))} "
           f"in experiment {escape(repr(cfg.tracking.experiment))}[/dim]")
    server = None
    if not os.environ.get("PREFECT_API_URL"):  # a local server boots in its own process while we import the flow
        from flows.local_server import begin_local_server

        try:
            server = begin_local_server()
        except TlopsError as e:
            raise _failed(e, 2)
    try:
        from flows.train import train_flow

        if not _verbose:
            from flows.console import leave_run_errors_to_the_command

            leave_run_errors_to_the_command()
        gc.freeze()  # the imported libraries live until exit: keep them out of every GC pass

        from tlops.progress import Display, use

        try:  # progress on stderr (bars on a terminal, epoch lines anywhere): stdout stays the summary or the JSON alone
            with local_prefect_server(server), use(None if _quiet else Display(err)):
                result = train_flow(cfg.model_dump(mode="json"), source=str(config), progress=sys.stderr.isatty(), checked=checked)
        except TlopsError as e:
            raise _failed(e, 1)
        except OSError as e:  # a full disk where no step said what it was writing (features, evaluation, packaging)
            from tlops.diskspace import as_disk_full

            full = as_disk_full(e, Path(cfg.execution.work_dir))
            if full is None:
                raise
            raise _failed(full, 1)
        except Exception as e:  # the Prefect server went away for longer than its client retries: one line, not a traceback
            from flows.prefect_outage import prefect_server_gone

            gone = prefect_server_gone(e)
            if gone is None:
                raise
            raise _failed(gone, 1)
    finally:
        if server is not None:
            server.stop()  # already stopped unless the imports failed; stopping twice is harmless
    gc.freeze()  # skips a multi-second final collection of millions of objects at interpreter exit
    if json_out:
        print(json.dumps(result.model_dump(mode="json", exclude=HUMAN_ONLY)))
        return
    _print_summary(result)


@app.command()
def validate(
    config: Path = typer.Argument(..., help="experiment YAML whose data to check"),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="override a config key, as for `tlops run`"),
    json_out: bool = typer.Option(False, "--json", help="print the report as one JSON object"),
) -> None:
    """Check the data of a config (the run's Great Expectations rules) without training or logging anything."""
    from rich.table import Table

    from tlops.config import load_config
    from tlops.errors import ValidationFailed
    from tlops.pipeline import validate_step

    try:
        cfg = load_config(config, set_ or [])
        quiet_third_party()
        report, failed = validate_step(cfg), None
    except ValidationFailed as e:
        report, failed = e.report, e
    except TlopsError as e:
        raise _failed(e, 2)
    if json_out:
        print(json.dumps(report.model_dump(mode="json")))
    else:
        t = Table("split", "rule", "result", "where / fix")
        for c in report.checks:
            where = f"{Path(c.file).name} rows {', '.join(map(str, c.rows[:5]))}: {c.fix}" if not c.success else ""
            t.add_row(escape(c.split), escape(c.rule), "ok" if c.success else "[red]failed[/red]", escape(mask(where)))
        Console().print(t)
        Console().print(escape(f"{report.dataset}: rows {report.rows}"))
    if failed:
        raise _failed(failed, 1)


@app.command()
def init(
    data_dir: Optional[Path] = typer.Argument(None, help="your dataset folder: train.csv + test.csv (text,label or path,label; "
                                              "numbers: dataset.yaml `task: regression`, optional `target:` and `group:` columns)"),
    out: Optional[Path] = typer.Option(None, "--out", help="config file to write (default: <folder name>.yaml here)"),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="linear_probe | finetune | domain_adapt | fewshot "
                                           "(default: fewshot for novel test classes or a regression's `group:` tasks, "
                                           "domain_adapt with unlabeled.csv, else linear_probe)"),
    list_: bool = typer.Option(False, "--list", help="list the starter configs shipped with tlops and exit"),
    force: bool = typer.Option(False, "--force", help="replace an existing config file"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Write a starter config for a dataset folder (classes, or numbers: a regression): modality, backbone and
    validation limits fitted to the data."""
    from tlops.init import init as do_init
    from tlops.init import starter_names

    out_console = Console(soft_wrap=True)
    if list_:
        names = starter_names()
        if json_out:
            return print(json.dumps({"starters": names}))
        for name, what in names.items():
            out_console.print(f"{name:<26}{what}", highlight=False)
        return
    if data_dir is None:
        raise _failed(TlopsError("tlops init DATA_DIR: name your dataset folder (or pass --list)"), 2)
    try:
        r = do_init(data_dir, out, strategy, force)
    except TlopsError as e:
        raise _failed(e, 2)
    f = r.folder
    if json_out:
        return print(json.dumps({"config": str(r.config), "starter": r.starter, "modality": f.modality, "task": f.task,
                                 "classes": f.classes, "rows": f.rows, "val_carved": f.val_carved, "validation": r.validation,
                                 "strategy_changes": r.strategy_changes, "wrote_dataset_yaml": r.wrote_dataset_yaml}))
    carved = " (val carved from train)" if f.val_carved else ""
    out_console.print(f"[bold]{f.root}[/bold]: {f.summary()}{carved}", highlight=False)
    if not f.regression:  # a regression has no classes to count: its target rules are dataset.yaml's
        smallest = min(f.counts["train"].items(), key=lambda kv: (kv[1], kv[0]))
        out_console.print(f"  smallest class {smallest[0]!r}: {smallest[1]} training rows -> validation.min_per_class "
                          f"{r.validation['min_per_class']}", highlight=False)
    for k, v in r.strategy_changes.items():
        why = "fitted to the rows per task" if k == "queries" and f.regression else \
            "fitted to the rows per class" if k in ("queries", "ways") else "for numbers; see its comment"
        out_console.print(f"  strategy.{k} {v} ({why})", highlight=False)
    if r.wrote_dataset_yaml:
        out_console.print(f"wrote {f.root / 'dataset.yaml'} (modality: {f.modality})", highlight=False)
    out_console.print(f"wrote {r.config} from starter {r.starter}", highlight=False)
    out_console.print(f"next:  tlops validate {r.config}   then   tlops run {r.config}", highlight=False)


local_server_app = typer.Typer(no_args_is_help=True, context_settings=HELP, help="The local Prefect server `tlops run` keeps when no PREFECT_API_URL is set "
                                                          "(shared by runs; it exits after TLOPS_LOCAL_SERVER_IDLE seconds without one).")
app.add_typer(local_server_app, name="local-server")


@local_server_app.command("status")
def local_server_status(json_out: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Whether a kept local Prefect server is running for this Prefect database, its URL, and the runs using it."""
    from flows.local_server import live_leases, running_server, server_home

    home = server_home()
    state, runs = running_server(home), live_leases(home)
    if json_out:
        print(json.dumps({"running": state is not None, **(state or {}), "runs": runs, "home": str(home)}))
        return
    if state is None:
        print(f"no kept local Prefect server is running (database folder {home}); the next `tlops run` starts one")
        return
    print(f"kept local Prefect server: {state['api_url']} (pid {state['pid']}), exits after {state['idle_s']:.0f} s without runs; "
          f"runs using it now: {', '.join(map(str, runs)) or 'none'}")


@local_server_app.command("stop")
def local_server_stop(force: bool = typer.Option(False, "--force", help="stop it even while runs are using it (they fail)")) -> None:
    """Stop the kept local Prefect server now (the next `tlops run` starts a new one)."""
    from flows.local_server import server_home, stop_kept_server

    try:
        pid = stop_kept_server(server_home(), force)
    except TlopsError as e:
        raise _failed(e, 1)
    print("no kept local Prefect server is running" if pid is None else f"stopped the kept local Prefect server (pid {pid})")


def _check_data_first(cfg, source: str) -> dict:
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
        _print_error(e)
        from tasks.validate import record_failed_check

        run_id = record_failed_check(cfg, source, e)
        err.print(f"(recorded as FAILED MLflow run {run_id})", highlight=False)
        raise typer.Exit(1)
    return {"report": report.model_dump(mode="json"), "data_md5": data_md5}


def _print_summary(r: RunOutcome) -> None:
    from rich.markup import escape as e  # names, paths and reasons are user-written: never read as markup

    out = Console(soft_wrap=True)  # keep the commands on one line, copy-pastable
    m = r.test_metrics
    out.print(f"\n[bold]trained[/bold] {e(r.strategy)} on {e(r.backbone)}")
    from tlops.task_types import all_task_types

    headline = [k for k in ("accuracy", "macro_f1", "mae", "rmse", "r2", "spearman") if k in m]  # classes or numbers
    headline += list(dict.fromkeys(k for t in all_task_types().values() for k in t.gate_metrics if k in m and k not in headline))
    out.print("[bold]test[/bold]    " + "  ".join(f"{k}={m[k]:.4f}" for k in headline))
    if r.best_epoch is not None:
        resumed = f"  (resumed from {e(str(r.resumed_from['checkpoint']))})" if r.resumed_from else ""
        # epochs counted from 1, as the progress lines show them (MLflow's steps count from 0)
        val = next((f"{k}={v:.4f}" for k, v in r.val_metrics.items()), "")  # the task type's selection metric comes first
        out.print(f"[bold]val[/bold]     {val}, kept epoch {r.best_epoch + 1}{resumed}")
    out.print(f"[bold]cache[/bold]   hits={r.cache.hits} misses={r.cache.misses}")
    out.print(f"[bold]model[/bold]   {e(r.model_name)} version {r.version} aliases={', '.join(r.aliases)}")
    out.print(f"[bold]gate[/bold]    {e(r.promotion.reason)}")
    out.print(f"[bold]run[/bold]     {r.run_id} in experiment {e(repr(r.experiment))}")
    out.print(f"\nOpen the MLflow UI:  mlflow ui --backend-store-uri {e(r.tracking_uri)}   (then http://127.0.0.1:5000)")
    out.print(f"Predict (checked):   tlops predict models:/{e(r.model_name)}@champion INPUT ... --tracking-uri {e(r.tracking_uri)}")
    out.print(f"Load it in Python:   mlflow.set_tracking_uri('{e(r.tracking_uri)}'); "
              f"mlflow.pyfunc.load_model('models:/{e(r.model_name)}@champion').predict([...])  (loads without tlops's sha256 check)")


def _registry_command(fn):
    """A registry command whose user errors print as one `error:` line (exit 1), like `run`'s."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TlopsError as e:
            raise _failed(e, 1)

    return wrapped


for _name in ("models", "promote", "rollback", "history", "predict", "evaluate", "audit"):
    app.command(_name)(_registry_command(getattr(registry_commands, _name)))


class _AddByDefault(typer.core.TyperGroup):
    """`tlops schedule CONFIG ...` is `tlops schedule add CONFIG ...`: a first argument that names no subcommand is a config."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["add", *args]
        return super().resolve_command(ctx, args)


schedule_app = typer.Typer(cls=_AddByDefault, no_args_is_help=True, context_settings=HELP,
                           help="Retrain on a schedule and when the data changes: `tlops schedule add CONFIG --cron EXPR | --interval S` "
                                "(or `tlops schedule CONFIG ...`), `tlops schedule ls`, `tlops schedule rm NAME` (Prefect deployments; "
                                "needs PREFECT_API_URL).")
app.add_typer(schedule_app, name="schedule")
schedule_app.command("add")(_registry_command(registry_commands.schedule))
schedule_app.command("ls")(_registry_command(registry_commands.schedule_ls))
schedule_app.command("rm")(_registry_command(registry_commands.schedule_rm))


if __name__ == "__main__":
    app()
