"""A Prefect server restarted during `tlops run`: ride it out; one that stays away: one error line.

Prefect's client retries a refused connection (PREFECT_CLIENT_MAX_RETRIES, default 5, backing off 2, 4, 8, 16, 32 s:
about a minute), but only on a client that has connected before (fail fast on a wrong URL, PrefectHQ/prefect#20276),
and its engine makes fresh clients mid-flow (creating the train-step subflow's parent task run does): measured here, a
13 s restart during the features task failed the run at once. `ride_out_restarts` lets every client made while the flow
body runs retry (the flow reaching its body proves the URL is right; PrefectHQ/prefect#20462 asks for a setting).

A longer outage ends the flow with an httpx transport error raised from deep inside Prefect's engine; by then the MLflow
run is already closed (`tasks.tracking.tracked_run`: FAILED, or FINISHED when only the flow's final state report failed)
and registration either happened completely or not at all. What is left to say is which server, and what to do.

A local server (`flows.local_server`, used when no PREFECT_API_URL is set) that went away is another case: nobody
restarts it on its port, so `flows.local_server` makes the clients give up at once once its process has exited, and the
error says which server it was (kept or temporary) and that a rerun starts a new one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from typing import Iterator

from tlops.errors import TlopsError


class PrefectServerGone(TlopsError):
    pass


@contextlib.contextmanager
def ride_out_restarts() -> Iterator[None]:
    """While the block runs, Prefect clients created in this process retry a refused connection like ones that have
    connected before (Prefect's `_has_connected`)."""
    from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

    originals = {cls: cls.__init__ for cls in (PrefectHttpxAsyncClient, PrefectHttpxSyncClient)}

    def connected_once(init):
        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self._has_connected = True

        return __init__

    for cls, init in originals.items():
        cls.__init__ = connected_once(init)
    try:
        yield
    finally:
        for cls, init in originals.items():
            cls.__init__ = init


def _transport_error(e: BaseException | None):
    import httpx

    from tlops.errors import exception_chain

    # the engine re-raises; the transport error may be a cause or context
    return next((c for c in exception_chain(e) if isinstance(c, httpx.TransportError)), None)


def _silence_prefect_services() -> None:
    """The run's log and event workers would each report the dead server again at exit, after our line: stop them now,
    quietly (a short wait: they cannot deliver anything)."""
    from prefect._internal.concurrency.services import QueueService

    logging.raiseExceptions = False  # Prefect's log worker prints "--- Error logging to API ---" only when this is set
    logging.getLogger("prefect").setLevel(logging.CRITICAL + 1)
    try:
        QueueService.drain_all(timeout=3)
    except Exception:  # draining is a courtesy; the error line matters
        pass
    sys.stderr.write("\n")  # the log worker's last "--- Error logging to API ---" message ends without one
    sys.stderr.flush()


def _request_url(cause) -> str | None:
    """scheme://host:port of the request that failed, if the error carries it."""
    try:
        u = cause.request.url
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when the error carries no request
        return None
    return f"{u.scheme}://{u.host}" + (f":{u.port}" if u.port else "")


def prefect_server_gone(e: BaseException) -> PrefectServerGone | None:
    """The error to print when `e` comes from a Prefect API that stopped answering; None for anything else."""
    from flows.local_server import gone_error, used_server

    cause = _transport_error(e)
    if cause is None:
        return None
    _silence_prefect_services()
    after = ("the MLflow run is closed and no version is half-registered (`tlops history` shows what this run registered, "
             "if anything)")
    api, url = os.environ.get("PREFECT_API_URL"), _request_url(cause)
    local = None if api else used_server(url)
    if local is not None:  # no restart brings it back: a new local server gets a new port
        kind, pid, local_url = local
        why = "its process exited" if isinstance(cause, gone_error()) else f"{type(cause).__name__}: {cause}"
        stopped = "stopped (`tlops local-server stop --force`) or killed" if kind == "kept local" else "killed"
        return PrefectServerGone(
            f"the {kind} Prefect server this run used ({local_url}, pid {pid}) went away during the run ({why}; it was {stopped}); "
            f"{after}: rerun the same command, which starts a new local Prefect server (fine-tuning resumes from its checkpoint)")
    server = f"the Prefect server at {api or url}" if api or url else "this run's Prefect server"
    retries = os.environ.get("PREFECT_CLIENT_MAX_RETRIES", "5")
    return PrefectServerGone(
        f"{server} stopped answering during the run ({type(cause).__name__}: {cause}) and was not back within the client's "
        f"{retries} retries; {after}: start the server again and rerun the same command (fine-tuning resumes from its checkpoint)")
