"""`tlops ARGS` in this process, through typer's CliRunner: the same command functions, options, exit codes and
stdout/stderr as a fresh `tlops` process, without paying ~10 s of imports per call. Use `tests.servers.tlops_cli`
(a real process) only where the process is the subject: signals, orphans, a real terminal's output, exit codes of
a process that crashes."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import REPO


@contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextmanager
def _prefect_settings(changes: dict):
    """Prefect reads its settings once per process: PREFECT_* values the command's environment sets or changes (the
    stack's API URL and auth string) are applied as Prefect settings for the command, as a fresh process would read them."""
    import prefect.settings

    def setting(key: str):
        try:
            return getattr(prefect.settings, key)
        except AttributeError:  # not a Prefect setting (e.g. PREFECT_HOME's relatives a test invents)
            return None

    updates = {setting(k): v for k, v in changes.items() if k.startswith("PREFECT_") and v is not None and setting(k) is not None}
    if not updates:
        yield
        return
    with prefect.settings.temporary_settings(updates=updates):
        yield


@contextmanager
def no_prefect_api():
    """No Prefect server configured, as in a fresh shell without PREFECT_API_URL: in a test process that has also run
    flow tests (xdist hands a worker whole files in any order), the session's test harness is the API URL, as a
    Prefect setting that leaving the variable out of `cli(env=...)` does not unset."""
    import prefect.settings

    with prefect.settings.temporary_settings(restore_defaults=[prefect.settings.PREFECT_API_URL]):
        yield


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `tlops ARGS` in-process; `env` is the whole environment of the command (as for a subprocess: variables
    absent from it are unset while it runs). Returns what `subprocess.run(..., capture_output=True, text=True)`
    would: returncode, stdout, stderr, with an escaped exception's traceback on stderr as Python would print it."""
    from typer.testing import CliRunner

    from flows import cli as cli_module
    from flows import console
    from flows.commands import _common

    _common._commands_started += 1  # not this process's first command: it starts now, not when pytest did
    changes = None
    if env is not None:
        changes = {k: v for k, v in env.items() if os.environ.get(k) != v}
        changes.update({k: None for k in os.environ if k not in env})
    hook, argv = sys.excepthook, sys.argv
    sys.argv = ["tlops", *args]  # what the history records as the command
    with _cwd(cwd or REPO), _prefect_settings(changes or {}):
        try:
            result = CliRunner().invoke(cli_module.app, list(args), env=changes)
        finally:
            sys.excepthook, sys.argv = hook, argv  # the CLI installs a masking excepthook for its own process
            console.set_verbosity(False, False)
            gc.unfreeze()  # `run` freezes the heap for a fast process exit; the test session goes on
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["tlops", *args], result.exit_code, result.stdout, stderr)
