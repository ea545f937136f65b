"""`tlops schedule add CONFIG | drift MODEL_URI | ls | rm NAME`: retrain on a schedule, when the data changes and when a
scheduled drift check finds the inputs moved (Prefect deployments; needs PREFECT_API_URL). `tlops schedule CONFIG ...` is
`tlops schedule add CONFIG ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import HELP, JSON, TRACKING
from flows.console import esc, out, print_json, user_errors


def schedule_ls(json_out: bool = JSON) -> None:
    """The schedules: name, kind (retrain or drift check), model, time schedule, data trigger, pool, paused, data."""
    from flows.schedule import list_schedules, require_server

    require_server()
    rows = list_schedules()
    if json_out:
        return print_json({"schedules": rows})
    t = Table("name", "kind", "model", "schedule", "data trigger", "pool", "paused", "data")
    for r in rows:
        t.add_row(esc(r["name"]), r["kind"], esc(str(r["model"])), esc(r["schedule"]), "yes" if r["data_trigger"] else "no",
                  esc(str(r["pool"])), str(r["paused"]), esc(str(r["data"])))
    out.print(t)


def schedule_rm(name: str = typer.Argument(..., help="the schedule to remove (see `tlops schedule ls`)"), json_out: bool = JSON) -> None:
    """Remove a schedule (its time schedule and its data trigger, or a drift check)."""
    from flows.schedule import remove_schedule, require_server
    from tlops.errors import ConfigError

    require_server()
    removed = remove_schedule(name)
    if not removed:
        raise ConfigError(f"no schedule named {name!r}; see `tlops schedule ls`")
    return print_json({"removed": removed}) if json_out else out.print(esc(f"removed {', '.join(removed)}"))


def schedule(target: str = typer.Argument(..., metavar="CONFIG", help="the config YAML to schedule"),
             cron: Optional[str] = typer.Option(None, "--cron", help="cron expression, e.g. '0 3 * * *' (03:00 daily)"),
             interval: Optional[float] = typer.Option(None, "--interval", help="seconds between runs"),
             pool: str = typer.Option("tlops-cpu", "--pool", help="work pool whose worker runs it (the stack's CPU worker: tlops-cpu)"),
             schedule_name: Optional[str] = typer.Option(None, "--name", help="schedule name (default: the model name)"),
             watch_every: float = typer.Option(300, "--watch-every", help="seconds between data-change checks (0: no data trigger)"),
             debounce: float = typer.Option(60, "--debounce", help="data changes within this many seconds give one run"),
             set_: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="override a config key, as for `tlops run`"),
             retrain_on_drift: bool = typer.Option(False, "--retrain-on-drift", help="also retrain when a drift check of this model "
                                                   "(`tlops schedule drift`) finds its inputs drifted"),
             json_out: bool = JSON) -> None:
    """Retrain CONFIG on a schedule and when its data changes (`tlops schedule CONFIG ...` is the same command)."""
    from flows.schedule import require_server
    from flows.schedule import schedule as do_schedule
    from tlops.config import load_config
    from tlops.errors import ConfigError

    require_server()
    if cron and interval:
        raise ConfigError("give --cron or --interval, not both")
    cfg = load_config(target, set_ or [])
    label = schedule_name or cfg.registry.model_name
    try:
        ids = do_schedule(cfg, label, pool, cron=cron, interval=interval, watch_every=watch_every or None, debounce=debounce,
                          retrain_on_drift=retrain_on_drift)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if json_out:
        return print_json({"name": label, "deployments": ids, "pool": pool, "cron": cron, "interval": interval, "watch_every": watch_every,
                           "retrain_on_drift": retrain_on_drift})
    when = f"cron '{cron}'" if cron else (f"every {interval:g} s" if interval else "no time schedule")
    out.print(f"scheduled [bold]{esc(label)}[/bold]: tlops-train/{esc(label)} ({esc(when)}) on pool {esc(repr(pool))}"
              + (f"; data watch every {watch_every:g} s retrains on change" if watch_every else "")
              + (f"; retrains when a drift check of {esc(cfg.registry.model_name)} finds drift" if retrain_on_drift else ""))
    out.print(f"start a worker: prefect worker start --pool {esc(pool)}")


def schedule_drift(model_uri: str = typer.Argument(..., help="models:/NAME@champion (the version the alias names at each check)"),
                   data: Path = typer.Option(..., "--data", help="the new inputs to check: a CSV with a 'text' or 'path' column, "
                                             "re-read at each check"),
                   cron: Optional[str] = typer.Option(None, "--cron", help="cron expression, e.g. '0 * * * *' (hourly)"),
                   interval: Optional[float] = typer.Option(None, "--interval", help="seconds between checks"),
                   pool: str = typer.Option("tlops-cpu", "--pool", help="work pool whose worker runs it"),
                   schedule_name: Optional[str] = typer.Option(None, "--name", help="schedule name (default: the model name + '-drift')"),
                   reference: str = typer.Option("train", "--reference", help="the split of the model's training data to compare with"),
                   alpha: float = typer.Option(0.01, "--alpha", min=1e-6, max=0.5, help="the MMD test's significance level"),
                   auc: float = typer.Option(0.75, "--auc", min=0.5, max=1.0, help="a domain-classifier AUC this high calls the shift sizeable"),
                   permutations: int = typer.Option(500, "--permutations", min=20, help="permutations of the MMD test"),
                   cache_dir: Path = typer.Option(Path(".tlops/cache"), "--cache-dir", help="the feature cache (a run's features.cache_dir)"),
                   tracking_uri: Optional[str] = TRACKING, json_out: bool = JSON) -> None:
    """Check a model's new inputs for drift on a schedule (as `tlops drift` does) and emit the Prefect event tlops.data.drift;
    a retrain scheduled with --retrain-on-drift runs on a `drift` verdict."""
    from flows.commands._registry_read import split_model_uri
    from flows.drift_flow import deploy_drift_check
    from flows.schedule import require_server
    from tlops.errors import ConfigError, DataError

    require_server()
    if cron and interval:
        raise ConfigError("give --cron or --interval, not both")
    if not model_uri.startswith("models:/") or not split_model_uri(model_uri)[0]:
        raise DataError(f"{model_uri!r}: a drift check compares with a registered version's training data; use models:/NAME@champion")
    if not data.is_file():
        raise DataError(f"{data} not found; pass a CSV with a 'text' or 'path' column (the inputs the model now sees)")
    label = schedule_name or f"{split_model_uri(model_uri)[0]}-drift"
    try:
        dep = deploy_drift_check(model_uri, data, label, pool, cron=cron, interval=interval, tracking_uri=tracking_uri,
                                 reference=reference, alpha=alpha, auc=auc, permutations=permutations, cache_dir=str(cache_dir))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if json_out:
        return print_json({"name": label, "deployments": {"drift": dep}, "pool": pool, "cron": cron, "interval": interval,
                           "model_uri": model_uri, "data": str(data.resolve())})
    when = f"cron '{cron}'" if cron else (f"every {interval:g} s" if interval else "no time schedule (run it from Prefect)")
    out.print(f"scheduled drift check [bold]{esc(label)}[/bold]: tlops-drift/{esc(label)} ({esc(when)}) of {esc(model_uri)} on "
              f"{esc(str(data))}, pool {esc(repr(pool))}; emits tlops.data.drift (a schedule added with --retrain-on-drift retrains on drift)")


class _AddByDefault(typer.core.TyperGroup):
    """`tlops schedule CONFIG ...` is `tlops schedule add CONFIG ...`: a first argument that names no subcommand is a config."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["add", *args]
        return super().resolve_command(ctx, args)


def register(app: typer.Typer) -> None:
    group = typer.Typer(cls=_AddByDefault, no_args_is_help=True, context_settings=HELP,
                        help="Retrain on a schedule and when the data changes: `tlops schedule add CONFIG --cron EXPR | --interval S` "
                             "(or `tlops schedule CONFIG ...`), `tlops schedule drift MODEL_URI --data CSV --cron EXPR` (a drift "
                             "check; `add --retrain-on-drift` retrains on it), `tlops schedule ls`, `tlops schedule rm NAME` "
                             "(Prefect deployments; needs PREFECT_API_URL).")
    group.command("add")(user_errors(schedule))
    group.command("drift")(user_errors(schedule_drift))
    group.command("ls")(user_errors(schedule_ls))
    group.command("rm")(user_errors(schedule_rm))
    app.add_typer(group, name="schedule")
