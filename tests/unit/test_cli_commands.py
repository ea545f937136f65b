"""The command line is one module per command (flows/commands/): every module registers its command, each answers
`--help` and `-h` (issue 27 item 11; that the read-only commands import neither Prefect, torch nor MLflow is
tests/flow/test_readonly_commands.py's, which starts processes)."""

from __future__ import annotations

import pkgutil

import typer
from typer.testing import CliRunner


def _registered() -> dict[str, object]:
    from flows.cli import app

    return typer.main.get_command(app).commands


def test_every_command_module_is_registered_and_answers_help():
    import flows.commands
    from flows.cli import app

    modules = [m.name for m in pkgutil.iter_modules(flows.commands.__path__) if not m.name.startswith("_")]
    assert sorted(modules) == sorted(flows.commands.COMMANDS), (modules, flows.commands.COMMANDS)
    commands = _registered()
    for module in modules:
        assert module.replace("_", "-") in commands, (module, sorted(commands))
    for name, command in commands.items():
        subcommands = list(getattr(command, "commands", {}))  # a group (local-server, schedule): each of its own
        for args in ([name, "--help"], [name, "-h"], *([name, sub, "-h"] for sub in subcommands)):
            result = CliRunner().invoke(app, args, env={"COLUMNS": "150"})
            assert result.exit_code == 0 and "Usage: " in result.output, (args, result.output)
    top = CliRunner().invoke(app, ["-h"], env={"COLUMNS": "150"})
    assert top.exit_code == 0 and all(f" {name} " in top.output for name in commands), top.output

