"""`tlops schedule add CONFIG | ls | rm NAME`: retrain on a schedule and when the data changes (Prefect deployments;
needs PREFECT_API_URL). `tlops schedule CONFIG ...` is `tlops schedule add CONFIG ...`."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import HELP, JSON
from flows.console import esc, out, print_json, user_errors


def schedule_ls(json_out: bool = JSON) -> None:
    """The schedules: name, model, time schedule, data trigger, pool, paused, data folder."""
    from flows.schedule import list_schedules, require_server

    require_server()
    rows = list_schedules()
    if json_out:
        return print_json({"schedules": rows})
    t = Table("name", "model", "schedule", "data trigger", "pool", "paused", "data")
    for r in rows:
        t.add_row(esc(r["name"]), esc(str(r["model"])), esc(r["schedule"]), "yes" if r["data_trigger"] else "no", esc(str(r["pool"])),
                  str(r["paused"]), esc(str(r["data"])))
    out.print(t)


def schedule_rm(name: str = typer.Argument(..., help="the schedule to remove (see `tlops schedule ls`)"), json_out: bool = JSON) -> None:
    """Remove a schedule (its time schedule and its data trigger)."""
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
        ids = do_schedule(cfg, label, pool, cron=cron, interval=interval, watch_every=watch_every or None, debounce=debounce)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if json_out:
        return print_json({"name": label, "deployments": ids, "pool": pool, "cron": cron, "interval": interval, "watch_every": watch_every})
    when = f"cron '{cron}'" if cron else (f"every {interval:g} s" if interval else "no time schedule")
    out.print(f"scheduled [bold]{esc(label)}[/bold]: tlops-train/{esc(label)} ({esc(when)}) on pool {esc(repr(pool))}"
              + (f"; data watch every {watch_every:g} s retrains on change" if watch_every else ""))
    out.print(f"start a worker: prefect worker start --pool {esc(pool)}")


class _AddByDefault(typer.core.TyperGroup):
    """`tlops schedule CONFIG ...` is `tlops schedule add CONFIG ...`: a first argument that names no subcommand is a config."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["add", *args]
        return super().resolve_command(ctx, args)


def register(app: typer.Typer) -> None:
    group = typer.Typer(cls=_AddByDefault, no_args_is_help=True, context_settings=HELP,
                        help="Retrain on a schedule and when the data changes: `tlops schedule add CONFIG --cron EXPR | --interval S` "
                             "(or `tlops schedule CONFIG ...`), `tlops schedule ls`, `tlops schedule rm NAME` (Prefect deployments; "
                             "needs PREFECT_API_URL).")
    group.command("add")(user_errors(schedule))
    group.command("ls")(user_errors(schedule_ls))
    group.command("rm")(user_errors(schedule_rm))
    app.add_typer(group, name="schedule")
