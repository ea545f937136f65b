"""`tlops audit MODEL_URI`: reproduce a registered version from its lineage and check it is the same model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import JSON, TRACKING
from flows.commands._registry_read import check_model_uri
from flows.console import esc, out, print_json, user_errors


def audit(model_uri: str = typer.Argument(..., help="models:/NAME@champion or models:/NAME/VERSION"),
          use_cache: bool = typer.Option(False, "--use-cache", help="reuse cached features (default: recompute them from the data)"),
          repo: Optional[Path] = typer.Option(None, "--repo", help="git repository holding the recorded commit (default: this checkout)"),
          json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Reproduce a registered version from its lineage and check it is the same model (exit 0 only on pass)."""
    check_model_uri(tracking_uri, model_uri)  # an unknown model in a second, not after the imports below
    from tasks.audit import audit as do_audit
    from tasks.operate import connect

    report, run_id = do_audit(connect(tracking_uri), model_uri, use_cache=use_cache, repo=repo)
    if json_out:
        print_json({**report.model_dump(mode="json"), "audit_run_id": run_id})
    else:
        t = Table("check", "result", "detail", title=f"audit of {esc(report.model)} v{report.version}: "
                  f"{'[green]PASSED[/green]' if report.passed else '[red]FAILED[/red]'}")
        for c in report.checks:
            t.add_row(c.name, {True: "pass", False: "[red]FAIL[/red]", None: "not run"}[c.passed], esc(c.detail))
        out.print(t)
        out.print(f"report: MLflow run {run_id} (experiment tlops-audits), {report.wall_s:.1f} s")
    if not report.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("audit")(user_errors(audit))
