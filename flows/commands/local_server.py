"""`tlops local-server status | stop`: the local Prefect server `tlops run` keeps when no PREFECT_API_URL is set."""

from __future__ import annotations

import json

import typer

from flows.commands._common import HELP
from flows.console import failed
from tlops.errors import TlopsError


def status(json_out: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Whether a kept local Prefect server is running for this Prefect database, its URL, and the runs using it."""
    from flows.local_server import live_leases, running_server, server_home

    home = server_home()
    state, runs = running_server(home), live_leases(home)
    if json_out:
        print(json.dumps({"running": state is not None, **(state or {}), "runs": runs, "home": str(home)}))
        return
    if state is None:
        print(f"no kept local Prefect server is running (database folder {home}); the next `tlops run` starts one")
        return
    print(f"kept local Prefect server: {state['api_url']} (pid {state['pid']}), exits after {state['idle_s']:.0f} s without runs; "
          f"runs using it now: {', '.join(map(str, runs)) or 'none'}")


def stop(force: bool = typer.Option(False, "--force", help="stop it even while runs are using it (they fail)")) -> None:
    """Stop the kept local Prefect server now (the next `tlops run` starts a new one)."""
    from flows.local_server import server_home, stop_kept_server

    try:
        pid = stop_kept_server(server_home(), force)
    except TlopsError as e:
        raise failed(e, 1)
    print("no kept local Prefect server is running" if pid is None else f"stopped the kept local Prefect server (pid {pid})")


def register(app: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True, context_settings=HELP,
                        help="The local Prefect server `tlops run` keeps when no PREFECT_API_URL is set "
                             "(shared by runs; it exits after TLOPS_LOCAL_SERVER_IDLE seconds without one).")
    group.command("status")(status)
    group.command("stop")(stop)
    app.add_typer(group, name="local-server")
