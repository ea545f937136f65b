"""What `tlops` shows, for every command (`flows/commands/`): the consoles, user text escaped before Rich reads it,
one JSON object, `error:` lines and status lines, how much third-party output gets through (`-v`/`-q`), and, while
a flow runs, the filter on Prefect's console handler (not what the Prefect server records).

Cheap to import (typer, rich, the core's errors and secrets): `tlops models` and `tlops history` import it."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time

import typer
from rich.console import Console
from rich.markup import escape as esc  # every user-written string (names, reasons, inputs, labels, paths) before Rich

from tlops.errors import TlopsError
from tlops.secrets import mask

__all__ = ["esc", "err", "out", "status", "print_json", "print_error", "failed", "user_errors", "when", "print_move",
           "quiet_third_party", "verbose", "quiet"]

err = Console(stderr=True, soft_wrap=True)  # paths in messages stay whole (copy-pastable)
out = Console() if sys.stdout.isatty() else Console(width=240)  # tables; piped or logged: wide rows, not wrapped words

_verbose = False  # `tlops -v`: third-party logs (Prefect, Great Expectations, MLflow) shown
_quiet = False  # `tlops -q`: no progress and no status lines; errors, warnings and the result only


def verbose() -> bool:
    return _verbose


def quiet() -> bool:
    return _quiet


def set_verbosity(verbose_: bool, quiet_: bool) -> None:
    global _verbose, _quiet
    _verbose, _quiet = verbose_, quiet_


# ---- lines ---------------------------------------------------------------------------------------------------------

def status(text: str) -> None:
    """A status line on stderr for people (stdout stays the result, or the one JSON object); none with `tlops -q`.
    `text` is markup: user-written parts are escaped by the caller."""
    if not _quiet:
        err.print(text, highlight=False)


def print_json(obj) -> None:
    """The command's result as one JSON object on one line of stdout."""
    print(json.dumps(obj, default=str))


def print_error(e: Exception) -> None:
    err.print(f"[red]error:[/red] {esc(mask(str(e)))}", highlight=False)  # messages quote user text: never markup


def failed(e: Exception, code: int) -> typer.Exit:
    """One masked `error:` line; the exit to raise (1: the run failed, 2: the command or config is wrong)."""
    print_error(e)
    return typer.Exit(code)


def user_errors(fn):
    """A command whose user errors (TlopsError) print as one `error:` line and exit 1, like `run`'s."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TlopsError as e:
            raise failed(e, 1)

    return wrapped


def when(ms: int | None) -> str:
    """A timestamp in milliseconds as local time, or '-'."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def print_move(move, json_out: bool) -> None:
    """An alias move (promote, rollback): its row as JSON, or one line and the gate's reason."""
    from tlops.aliases import as_row

    if json_out:
        return print_json(as_row(move))
    out.print(f"[bold]{esc(move.model)}[/bold]: {esc(move.alias)} {move.arrow()}  ({move.kind} by {esc(move.actor)})")
    if move.gate is not None:
        out.print(f"gate: {esc(move.gate.reason)}")


def masked_excepthook(kind, value, tb) -> None:
    """Plain tracebacks with credentials masked (no rich tracebacks with local variables: they would print them)."""
    import traceback

    sys.stderr.write(mask("".join(traceback.format_exception(kind, value, tb))))


# ---- third-party output --------------------------------------------------------------------------------------------

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


def quiet_third_party() -> None:
    """No telemetry, no nested progress bars, no third-party INFO lines (`tlops -v` shows them): the run's own
    output stays readable. Cheap (no library imported): every command calls it first."""
    for k, v in {**QUIET_ENV, **({} if _verbose else BARS_AND_INFO_ENV)}.items():
        os.environ.setdefault(k, v)
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


# ---- while a flow runs ---------------------------------------------------------------------------------------------

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class RunErrorsToTheCommand(logging.Filter):
    """A failed task or flow run is the command's to report: one `error:` line for a tlops error, a (masked)
    traceback for anything else. Prefect's console copy of it (the same exception as a traceback, two or three
    times over, before that line) is dropped; the Prefect server still receives every record (its UI shows them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.name.startswith(RUN_LOGGERS))


def leave_run_errors_to_the_command() -> None:
    """Filter Prefect's console handler (configured when prefect is imported); `tlops -v` does not call this."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(isinstance(f, RunErrorsToTheCommand) for f in handler.filters):
            handler.addFilter(RunErrorsToTheCommand())
