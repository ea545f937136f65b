"""`tlops history NAME`: every alias move of a model. Read-only and fast on the default SQLite store
(`flows.commands._registry_read`): no Prefect, torch or MLflow import."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import JSON, TRACKING
from flows.commands._registry_read import read
from flows.console import esc, out, print_json, user_errors, when


def history(name: str = typer.Argument(..., help="registered model"), json_out: bool = JSON,
            tracking_uri: Optional[str] = TRACKING) -> None:
    """Every alias move of a model, oldest first: when, who, from -> to, why, and which run or command."""
    moves = read(tracking_uri, "history", name)
    if json_out:
        from tlops.aliases import as_row

        return print_json({"model": name, "moves": [as_row(m) for m in moves]})
    t = Table("when", "who", "alias", "move", "", "kind", "why", "by", title=f"{esc(name)}: alias history")
    for m in moves:
        why = m.reason if m.gate is None or m.gate.reason in m.reason else f"{m.reason} ({m.gate.reason})"
        t.add_row(when(m.when_ms), esc(m.actor), esc(m.alias), m.arrow(), "applied" if m.applied else "[red]refused[/red]", m.kind, esc(why),
                  f"run {m.source_run[:12]}" if m.source_run else esc(m.command or "-"))
    out.print(t)
    if not moves:
        out.print(f"no alias moves recorded for {esc(name)} yet")


def register(app: typer.Typer) -> None:
    app.command("history")(user_errors(history))
