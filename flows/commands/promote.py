"""`tlops promote NAME VERSION --reason ...`: move `champion` (compare-and-set, recorded in the history)."""

from __future__ import annotations

from typing import Optional

import typer

from flows.commands import _common
from flows.commands._common import JSON, REASON, TRACKING, command_line
from flows.console import print_move, user_errors


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
    move = do_promote(connect(tracking_uri), name, version.lstrip("v"), reason, if_better=if_better, expected=expected,
                      command=command_line(), started_ms=_common.started_ms())
    print_move(move, json_out)


def register(app: typer.Typer) -> None:
    app.command("promote")(user_errors(promote))
