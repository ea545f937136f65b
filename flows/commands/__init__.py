"""The `tlops` commands, one module each (as torchtune's `_cli/`: `ls.py`, `run.py`, `validate.py` on `subcommand.py`).

Each module defines its command and `register(app)`, which adds it (or its group of subcommands) to the typer app;
what they print goes through `flows.console` (user text escaped, one JSON object, `error:` lines). `COMMANDS` is
the order `tlops --help` lists them in. A module imports only what its own command needs at the top (typer, rich, the
shared helpers): the libraries a command uses are imported inside it, so `tlops --help` and the read-only commands
(`models`, `history`) stay fast (tests/unit/test_cli_commands.py checks both)."""

from __future__ import annotations

import importlib

import typer

COMMANDS = ("run", "validate", "describe", "init", "local_server", "models", "promote", "rollback", "history", "predict", "serve", "evaluate", "compare",
            "audit", "schedule", "rank", "tune", "drift")


def register_all(app: typer.Typer) -> None:
    for name in COMMANDS:
        importlib.import_module(f"flows.commands.{name}").register(app)
