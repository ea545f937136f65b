"""`tlops rollback NAME --reason ...`: `champion` back to the previous champion, or to --to VERSION."""

from __future__ import annotations

from typing import Optional

import typer

from flows.commands import _common
from flows.commands._common import JSON, REASON, TRACKING, command_line
from flows.console import print_move, user_errors


def rollback(name: str = typer.Argument(..., help="registered model"),
             to: Optional[str] = typer.Option(None, "--to", help="version to go back to (default: the champion before the current one)"),
             reason: str = REASON, json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Move `champion` back to the previous champion (from the history), or to --to VERSION."""
    from tasks.operate import connect
    from tasks.operate import rollback as do_rollback

    move = do_rollback(connect(tracking_uri), name, reason, to=to.lstrip("v") if to else None, command=command_line(),
                       started_ms=_common.started_ms())
    print_move(move, json_out)


def register(app: typer.Typer) -> None:
    app.command("rollback")(user_errors(rollback))
