"""`tlops tune CONFIG --trials N [--timeout S] [--register]`: a hyperparameter search over the config's `search:` section
(Optuna TPE, median or successive-halving pruning on the per-epoch validation metric), each trial a Prefect task and a nested MLflow run under
the search's run; the best trial's config written out, its model scored once on test (or, with --register, trained,
scored and gated as a normal `tlops run`). The same command again resumes the search where it stopped."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Optional

import typer

from flows.commands._common import HELP, JSON
from flows.console import esc, failed, out, print_json, quiet_third_party, status
from tlops.errors import TlopsError


def _shown(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def tune(
    config: Path = typer.Argument(..., help="experiment YAML with a search: section, e.g. strategy.C: loguniform(1e-3, 10)"),
    trials: int = typer.Option(20, "--trials", "-n", min=1, help="finished trials (complete or pruned) the search ends with; "
                               "a resumed search runs only those still missing"),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=1, metavar="SECONDS", help="start no trial after this many seconds"),
    register: bool = typer.Option(False, "--register", help="train the best config as a normal run: test scored, gated, registered"),
    out_path: Optional[Path] = typer.Option(None, "--out", metavar="PATH", help="where the best config goes (default: "
                                            "<config>.tuned.yaml next to the config)"),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="the search's name (default: <model>-<hash of the config "
                                       "and space>: the same command resumes it)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="override a config key, as for `tlops run`"),
    json_out: bool = JSON,
) -> None:
    """Search hyperparameters: Optuna's TPE over the config's search: section, trials pruned on their per-epoch validation
    metric, the choice made on validation only; writes the best config and scores its model once on test."""
    from flows.commands.run import check_data_first, local_prefect_server, print_summary
    from tlops.config import default_run_name, load_config
    from tlops.text_files import read_utf8
    from tlops.tuning import check_space, parse_pruner, parse_search

    try:
        cfg = load_config(config, set_ or [])
        text = read_utf8(config, TlopsError)
        space = parse_search(cfg.search, str(config), text)
        pruner = parse_pruner(cfg.search, str(config), text)
        check_space(cfg, space, str(config))
    except TlopsError as e:
        raise failed(e, 2)
    quiet_third_party()
    checked = check_data_first(cfg, str(config))
    best_out = (out_path or config.with_name(f"{config.stem}.tuned.yaml")).resolve()
    cfg.tracking.run_name = cfg.tracking.run_name or default_run_name(f"{cfg.registry.model_name}-tune")
    if not json_out:
        status(f"[dim]tuning {esc(cfg.registry.model_name)} ({esc(cfg.strategy.name)} on {esc(cfg.backbone.name)}): {trials} trials "
               f"over {esc(', '.join(f'{p.key} {p.describe()}' for p in space))}, {pruner} pruning, selected on validation[/dim]")
    try:
        from flows.tune import tune_flow

        with local_prefect_server():
            summary = tune_flow(cfg.model_dump(mode="json"), source=str(config), trials=trials, timeout=timeout, name=name,
                                best_out=str(best_out), overrides=list(set_ or []), score_test=not register,
                                progress=not json_out)
            outcome = None
            if register and summary["best"] is not None:
                from flows.tune import link_registered
                from flows.train import train_flow

                best_cfg = load_config(best_out)
                best_cfg.tracking.run_name = default_run_name(best_cfg.registry.model_name) + " (tuned)"
                checked = check_data_first(best_cfg, str(best_out))
                outcome = train_flow(best_cfg.model_dump(mode="json"), source=str(best_out), progress=sys.stderr.isatty(), checked=checked)
                link_registered(cfg, summary["run_id"], outcome)
                summary["registered"] = outcome.model_dump(mode="json", exclude={"experiment", "backbone"})
                summary["test_metrics"] = outcome.test_metrics
    except TlopsError as e:
        raise failed(e, 1)
    gc.freeze()
    if json_out:
        return print_json(summary)
    _print(summary, config, best_out)
    if outcome is not None:
        print_summary(outcome)


def _print(s: dict, config: Path, best_out: Path) -> None:
    from rich.table import Table

    t = Table("trial", "state", s["metric"], "seconds", "values")
    best = s["best"]
    for r in s["trials"]:
        mark = " *" if best and r["number"] == best["number"] else ""
        state = r["state"] + (" (interrupted)" if r["interrupted"] else "") + (f" (retry of {r['retry_of']})" if r["retry_of"] is not None else "")
        t.add_row(f"{r['number']}{mark}", esc(state), "-" if r["value"] is None else f"{r['value']:.4f}",
                  "-" if r["seconds"] is None else f"{r['seconds']:.1f}", esc(_shown(r["params"])))
    out.print(t)
    ran = f"{s['ran']} trials run now" + (f", {s['before']} before (resumed)" if s["before"] else "")
    out.print(esc(f"{ran}; {s['finished']} finished; selected on {s['metric']} ({'higher' if s['maximize'] else 'lower'} is better)"))
    if best is None:
        out.print("[bold]no trial completed[/bold]: see the failed trials' runs (tag tlops.error)")
        return
    out.print(f"[bold]best[/bold]    trial {best['number']}: {s['metric']}={best['value']:.4f}  {esc(_shown(best['params']))}")
    if s.get("test_metrics") and not s.get("registered"):
        out.print("[bold]test[/bold]    " + "  ".join(f"{k}={v:.4f}" for k, v in s["test_metrics"].items()) + "  (the best trial, scored once)")
    out.print(f"[bold]config[/bold]  {esc(str(best_out))}")
    out.print(f"[bold]run[/bold]     {s['run_id']} (the search; each trial a nested run)")
    if not s.get("registered"):
        out.print(f"Train and register it:  tlops run {esc(str(best_out))}")


def register(app: typer.Typer) -> None:
    app.command("tune", context_settings=HELP)(tune)
