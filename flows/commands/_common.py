"""What several commands share besides output (that is `flows.console`): their common options, and when the running
command started (promote and rollback compare-and-set against the champion of that moment)."""

from __future__ import annotations

import sys
import time

import typer

HELP = {"help_option_names": ["-h", "--help"]}  # `tlops -h`, `tlops run -h`, as most command lines take it
TRACKING = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
JSON = typer.Option(False, "--json", help="print one JSON object instead of a table")
REASON = typer.Option(..., "--reason", help="why: kept in the history with who did it and when")

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


def started_ms() -> int | None:
    return _started_ms


def command_line() -> str:
    """The command as typed, quoted so that it pastes back (recorded in the alias history: its "by" column)."""
    import shlex

    return shlex.join(["tlops", *sys.argv[1:]])
