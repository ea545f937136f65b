"""What `tlops` shows on the console while a flow runs (not what the Prefect server records)."""

from __future__ import annotations

import logging

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
