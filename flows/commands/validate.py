"""`tlops validate CONFIG`: the run's Great Expectations rules on the config's data, nothing trained or logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from flows.console import esc, failed, quiet_third_party
from tlops.errors import TlopsError
from tlops.secrets import mask


def validate(
    config: Path = typer.Argument(..., help="experiment YAML whose data to check"),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="override a config key, as for `tlops run`"),
    json_out: bool = typer.Option(False, "--json", help="print the report as one JSON object"),
) -> None:
    """Check the data of a config (the run's Great Expectations rules) without training or logging anything."""
    from rich.console import Console
    from rich.table import Table

    from tlops.config import load_config
    from tlops.errors import ValidationFailed
    from tlops.pipeline import validate_step

    try:
        cfg = load_config(config, set_ or [])
        quiet_third_party()
        report, failure = validate_step(cfg), None
    except ValidationFailed as e:
        report, failure = e.report, e
    except TlopsError as e:
        raise failed(e, 2)
    if json_out:
        print(json.dumps(report.model_dump(mode="json")))
    else:
        t = Table("split", "rule", "result", "where / fix")
        for c in report.checks:
            where = f"{Path(c.file).name} rows {', '.join(map(str, c.rows[:5]))}: {c.fix}" if not c.success else ""
            t.add_row(esc(c.split), esc(c.rule), "ok" if c.success else "[red]failed[/red]", esc(mask(where)))
        Console().print(t)
        Console().print(esc(f"{report.dataset}: rows {report.rows}"))
    if failure:
        raise failed(failure, 1)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
