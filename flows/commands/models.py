"""`tlops models [NAME]`: the registered models, or one model's versions with aliases, lineage and audit status.
Read-only and fast on the default SQLite store (`flows.commands._registry_read`): no Prefect, torch or MLflow import."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import JSON, TRACKING
from flows.commands._registry_read import read
from flows.console import esc, out, print_json, user_errors, when
from tlops.data_version import short_data_version


def models(name: Optional[str] = typer.Argument(None, help="a registered model: list its versions"),
           json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Registered models, or one model's versions with aliases, lineage and audit status (and incomplete registrations)."""
    if name is None:
        rows = read(tracking_uri, "models")
        if json_out:
            return print_json({"models": rows})
        t = Table("model", "versions", "champion", "challenger", "updated")
        for r in rows:
            t.add_row(esc(r["name"]), str(r["versions"]), str(r["champion"] or "-"), str(r["challenger"] or "-"), when(r["updated_ms"]))
        out.print(t)
        return
    rows = read(tracking_uri, "versions", name)
    if json_out:
        return print_json({"model": name, "versions": rows})
    t = Table("version", "aliases", "strategy", "backbone", "test metric", "data version", "git", "run", "created", "audit", title=esc(name))
    for r in rows:
        metric = f"{r['metric']}={r['test_metric']:.4f}" if r["test_metric"] is not None else f"- ({r['status']})"
        version = f"{r['version']} [red]incomplete[/red]" if r["incomplete"] else r["version"]
        t.add_row(version, esc(", ".join(r["aliases"]) or "-"), esc(r["strategy"] or "-"), esc(r["backbone"] or "-"),
                  esc(metric), esc(short_data_version(r["data_version"])),
                  esc((r["git_commit"] or "-")[:10]) + ("*" if r["git_dirty"] == "True" else ""), r["run_id"][:12],
                  when(r["created_ms"]), esc(r["audit"] or "-"))
    out.print(t)
    for r in rows:
        if r["incomplete"]:
            out.print(f"[red]v{r['version']} is incomplete[/red]: {esc(r['incomplete_reason'])} (run {r['run_id']}); "
                      "do not serve or promote it: train and register it again with `tlops run`", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("models")(user_errors(models))
