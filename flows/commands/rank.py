"""`tlops rank CONFIG --backbones A B C ...`: rank candidate backbones for a config's task by transferability (LogME,
and the H-score for classes) on its training split, in seconds once features are cached; nothing is trained. The ranking is
the core's `tlops.transferability.rank`; it is logged as an MLflow run of the config's experiment (`tasks/rank.py`: the
table as an artifact, the scores as metrics) unless --no-log, so a choice of backbone stays on record beside the runs
it led to. No Prefect import."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from flows.commands._common import HELP, JSON
from flows.console import esc, failed, out, print_json, quiet_third_party, status
from tlops.errors import TlopsError


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _params(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


def rank(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="experiment YAML: its data's training split is scored, its backbone options apply"),
    backbones: Optional[list[str]] = typer.Option(None, "--backbones", "-b", metavar="NAME ...",
                                                  help="candidate backbones, e.g. --backbones packaged:efficientnet-lite0 "
                                                       "timm:resnet18@weights.safetensors (names as for backbone.name)"),
    max_rows: Optional[int] = typer.Option(None, "--max-rows", min=2, help="score a seeded random sample of this many training rows"),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="override a config key, as for `tlops run`"),
    log: bool = typer.Option(True, "--log/--no-log", help="log the ranking as an MLflow run in the config's experiment "
                             "(table as artifact, scores as metrics); --no-log: print it only"),
    json_out: bool = JSON,
) -> None:
    """Rank candidate backbones for a config's task before training: LogME (You et al., 2021) and H-score of each one's
    frozen features on the training split, best first, with the recommendation. Classification and regression."""
    from tlops.config import load_config
    from tlops.transferability.rank import rank_backbones

    names = [n for arg in [*(backbones or []), *ctx.args] for n in arg.split(",") if n.strip()]
    names = [n.strip() for n in names]
    try:
        bad = next((a for a in ctx.args if a.startswith("-")), None)
        if bad:
            raise TlopsError(f"unknown option {bad!r}; tlops rank -h lists the options")
        cfg = load_config(config, set_ or [])
        quiet_third_party()
        if not json_out:
            status(esc(f"ranking {len(names)} backbones on {cfg.data.path} (train split"
                       f"{f', {max_rows} rows at most' if max_rows else ''})"))
        ranking = rank_backbones(cfg, names, max_rows=max_rows, config_name=str(config))
    except TlopsError as e:
        raise failed(e, 2)
    logged = None
    if log:
        from tasks.rank import log_ranking

        try:
            logged = log_ranking(cfg, ranking, str(config))
        except TlopsError as e:
            raise failed(e, 1)
    if json_out:
        return print_json(ranking.as_dict() | ({"run_id": logged[0], "experiment_id": logged[1]} if logged else {}))
    from rich.table import Table

    regression = all(c.h_score is None for c in ranking.candidates)
    t = Table("#", "candidate", "LogME", "H-score", "seconds", "features", "parameters", "cache (hit/embedded)")
    for i, c in enumerate(ranking.candidates, 1):
        t.add_row(str(i), esc(c.name), _fmt(c.logme), "-" if regression else _fmt(c.h_score, 2), f"{c.seconds:.1f}",
                  str(c.num_features), _params(c.parameters), f"{c.cache_hits}/{c.cache_misses}")
    out.print(t)
    sample = f"{ranking.rows} of {ranking.train_rows} training rows" if ranking.rows < ranking.train_rows else f"{ranking.rows} training rows"
    out.print(esc(f"{ranking.task}, {sample}, {ranking.seconds:.1f} s; ranked by LogME (higher is better)"
                  + ("" if regression else "; H-score: regularised (Ledoit-Wolf), at most classes - 1")))
    best = ranking.best
    if best is not None:
        runner_up = ranking.candidates[1] if len(ranking.candidates) > 1 else None
        margin = f" ({best.logme - runner_up.logme:+.3f} LogME over {runner_up.name})" if runner_up else ""
        out.print(f"[bold]recommended:[/bold] {esc(best.name)}{esc(margin)}: "
                  + esc(shlex.join(["tlops", "run", str(config), "--set", f"backbone.name={best.name}"])))
    if logged:
        out.print(esc(f"logged as MLflow run {logged[0]} in experiment {cfg.tracking.experiment!r}"))


def register(app: typer.Typer) -> None:
    app.command("rank", context_settings={**HELP, "allow_extra_args": True})(rank)
