"""The local Prefect server of a `tlops run` with no PREFECT_API_URL configured: kept (the default) or temporary.

Kept (`KeptServer`, TLOPS_LOCAL_SERVER=keep): the first run starts a server in the background and later runs
reuse it, so they skip its boot (seconds of wall and CPU per run on 2 cores). It is not tied to any run: it
exits on its own once no run has used it for TLOPS_LOCAL_SERVER_IDLE seconds (default 900), and
`tlops local-server stop` stops it at once. Which runs use it is a lease file per run (its pid) beside
Prefect's database; a run killed with `kill -9` leaves a lease whose pid is dead, which does not count. The
start lock below serialises starting, reusing and the idle exit, so a run never picks a server that is
about to leave. It starts with a scrubbed environment (`server_env`): no credential of the run that started it
stays in the process that later runs share. If it is killed while a run uses it, that run's Prefect clients give up
at once (`_fail_fast_when_gone`: nobody restarts it on its port) and the error says so (`flows.prefect_outage`).

Temporary (`TemporaryServer`, TLOPS_LOCAL_SERVER=temporary): one server per run, ended with it. Prefect would start one itself (`SubprocessASGIServer`: uvicorn on `prefect.server.api.server:create_app`);
this runs the same command, with three differences that matter for a command-line run:
- it is started early and waited for late: the server boots in its own process while this one imports torch,
  MLflow and the flow (on 2 cores the two overlap; Prefect's `start()` blocks until the server is healthy);
- this process never imports the server application itself (`prefect.server.api.server`, ~2 CPU s);
- it ends with this process, even on `kill -9` (PR_SET_PDEATHSIG), and starts are serialised by a file lock
  beside Prefect's SQLite database: concurrent first runs otherwise race through its migrations, block
  registration and port choice, and Prefect's 20 s start limit killed 3 of 3 concurrent runs on 2 cores.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

PORT_IN_USE = 3  # uvicorn's exit status when it cannot bind (Prefect retries on another port too)
MODE_ENV, IDLE_ENV = "TLOPS_LOCAL_SERVER", "TLOPS_LOCAL_SERVER_IDLE"
MODES = ("keep", "temporary")
DEFAULT_IDLE_S = 900
STATE, LOG, LEASES, LOCK = ".tlops-server.json", ".tlops-server.log", ".tlops-server-leases", ".tlops-server.lock"


def mode() -> str:
    from tlops.errors import ConfigError

    value = os.environ.get(MODE_ENV, "keep").strip().lower()
    if value not in MODES:
        raise ConfigError(f"{MODE_ENV}={value!r}; use keep (a local Prefect server shared by runs, exits when idle) or temporary "
                         "(one per run)")
    return value


def idle_seconds() -> float:
    from tlops.errors import ConfigError

    raw = os.environ.get(IDLE_ENV, str(DEFAULT_IDLE_S))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{IDLE_ENV}={raw!r}; give the seconds a kept local Prefect server waits without runs before it exits "
                         f"(default {DEFAULT_IDLE_S})")
    return value


def server_home() -> Path:
    """The folder of Prefect's SQLite database (else Prefect's home): the lock, state and leases live there, so
    runs that share a database share a server."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    url = settings.server.database.connection_url.get_secret_value()
    home = Path(url.split(":///", 1)[1]).parent if url.startswith("sqlite") else Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    return home


# What the server process needs from this process's environment (it imports Prefect and runs uvicorn on SQLite):
# the interpreter's and the locale's settings and Prefect's own. Nothing else: a kept server outlives the run that
# started it (up to TLOPS_LOCAL_SERVER_IDLE) and serves later runs, so a run's credentials (MLFLOW_TRACKING_PASSWORD,
# PGPASSWORD, HF_TOKEN, *_API_KEY, ...) must not sit in its /proc/PID/environ.
SERVER_ENV_NAMES = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "SQLITE_TMPDIR",
                    "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "VIRTUAL_ENV",
                    "SSL_CERT_FILE", "SSL_CERT_DIR", "DO_NOT_TRACK", "NO_COLOR"}
SERVER_ENV_PREFIXES = ("LC_", "PREFECT_", "COVERAGE_")


def _for_server(name: str) -> bool:
    """Whether the local server gets variable `name`: the allow-list above, and of what is named like a secret only the
    server's own settings (PREFECT_SERVER_*: its database password, its API auth string) and the client auth string that
    goes with the latter (with no PREFECT_API_URL, the only server it can be meant for is this one)."""
    from tlops.secrets import is_secret_name

    if not (name in SERVER_ENV_NAMES or name.startswith(SERVER_ENV_PREFIXES)):
        return False
    return not is_secret_name(name) or name.startswith("PREFECT_SERVER_") or name == "PREFECT_API_AUTH_STRING"


def server_env() -> dict[str, str]:
    """What Prefect gives its own temporary server (this process's Prefect settings, no UI), from a scrubbed
    environment: only what the server needs (`_for_server`), never the run's other credentials."""
    from prefect.settings import get_current_settings

    settings = get_current_settings().to_environment_variables(exclude_unset=True)
    return {**{k: v for k, v in os.environ.items() if _for_server(k)},
            "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
            **{k: v for k, v in settings.items() if _for_server(k)}}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def live_leases(home: Path) -> list[int]:
    """Pids of the runs holding a lease on the kept server; leases of dead runs (kill -9) are removed."""
    folder = home / LEASES
    pids = []
    for f in folder.glob("*") if folder.is_dir() else []:
        try:
            pid = int(f.name)
        except ValueError:
            continue
        if _alive(pid):
            pids.append(pid)
        else:
            f.unlink(missing_ok=True)
    return sorted(pids)


def read_state(home: Path) -> dict | None:
    import json

    try:
        return json.loads((home / STATE).read_text())
    except (OSError, ValueError):
        return None


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def running_server(home: Path) -> dict | None:
    """The kept server's state ({pid, port, api_url, idle_s, started}) if it is alive and answers, else None."""
    state = read_state(home)
    if state and _alive(int(state["pid"])) and healthy(state["api_url"]):
        return state
    return None


class _StartLock:
    """The start lock beside Prefect's database (blocking, or a try that reports whether it got it)."""

    def __init__(self, home: Path):
        self.file = open(home / LOCK, "w")

    def acquire(self, block: bool = True) -> bool:
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            return False

    def close(self) -> None:
        self.file.close()  # closing the file drops the flock


def _die_with_parent() -> None:
    """In the server's child process, before exec: Linux sends it SIGTERM when the thread that started it dies,
    even by SIGKILL (which no cleanup code of ours can catch). So `begin` must run on the main thread."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The local servers this process used, by API URL: (kind, pid); `flows.prefect_outage` names the one that went away.
USED: dict[str, tuple[str, int]] = {}
_watched: dict[int, "TemporaryServer"] = {}  # port -> the server this process is using there (until its `stop`)
_hooked = False
_GoneError: type | None = None


def gone_error() -> type:
    """The transport error raised when the local server's process has exited (an `httpx.TransportError`, so it reads as
    a server that stopped answering, but none of those Prefect's client retries)."""
    global _GoneError
    if _GoneError is None:
        import httpx

        class LocalServerGone(httpx.TransportError):
            """The local Prefect server's process has exited: no retry can reach it (a new one gets a new port)."""

        _GoneError = LocalServerGone
    return _GoneError


def used_server(url: str | None) -> tuple[str, int, str] | None:
    """(kind, pid, api_url) of the local server this process used at `url`'s host and port; None for any other URL."""
    from urllib.parse import urlsplit

    if not url:
        return None
    where = urlsplit(url)
    for api_url, (kind, pid) in USED.items():
        mine = urlsplit(api_url)
        if (where.hostname, where.port) == (mine.hostname, mine.port):
            return kind, pid, api_url
    return None


def _gone(request):
    """The error to raise for a failed request to a watched local server whose process has exited; None otherwise."""
    server = _watched.get(request.url.port) if request.url.host in ("127.0.0.1", "localhost") else None
    if server is None or server.alive():
        return None
    return gone_error()(f"the {server.kind} Prefect server at {server.api_url} (pid {server.pid}) has exited", request=request)


def _fail_fast_when_gone() -> None:
    """Make Prefect's clients give up at once on a local server whose process has exited. Prefect retries a dropped
    connection PREFECT_CLIENT_MAX_RETRIES times (2 + 4 + ... + 32 s), per request, and a failing run makes several
    (state reports, logs, events): minutes of waiting for a server nobody restarts on its port. A refused connection to
    a live process (a server busy shutting down or starting) is still retried as before. Installed once per process."""
    global _hooked
    if _hooked:
        return
    import functools

    import httpx
    from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

    async_send_with_retry = PrefectHttpxAsyncClient._send_with_retry
    sync_send_with_retry = PrefectHttpxSyncClient._send_with_retry

    @functools.wraps(async_send_with_retry)
    async def checked_async(self, *args, **kwargs):
        send = kwargs.get("send")  # Prefect passes it by keyword
        if send is not None:
            async def send_or_give_up(request, *a, **k):
                try:
                    return await send(request, *a, **k)
                except httpx.TransportError as e:
                    if (gone := _gone(request)) is not None:
                        raise gone from e
                    raise

            kwargs["send"] = send_or_give_up
        return await async_send_with_retry(self, *args, **kwargs)

    @functools.wraps(sync_send_with_retry)
    def checked_sync(self, *args, **kwargs):
        send = kwargs.get("send")
        if send is not None:
            def send_or_give_up(request, *a, **k):
                try:
                    return send(request, *a, **k)
                except httpx.TransportError as e:
                    if (gone := _gone(request)) is not None:
                        raise gone from e
                    raise

            kwargs["send"] = send_or_give_up
        return sync_send_with_retry(self, *args, **kwargs)

    PrefectHttpxAsyncClient._send_with_retry = checked_async
    PrefectHttpxSyncClient._send_with_retry = checked_sync
    _hooked = True


class TemporaryServer:
    kind, why_hint = "temporary", "run `prefect server start` to see why"

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._lock = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        state = getattr(self, "state", None)
        return int(state["pid"]) if state else None

    def alive(self) -> bool:
        """Whether the server's process still runs (a child of this process is reaped here, so a dead one is no zombie)."""
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and _alive(self.pid)

    def _watch(self) -> None:
        """From now until `stop`: this process's Prefect clients give up at once if the server's process exits."""
        USED[self.api_url] = (self.kind, self.pid)
        _watched[self.port] = self
        _fail_fast_when_gone()

    def begin(self) -> "TemporaryServer":
        """Take the start lock and launch the server (unless `_reuse` finds one); returns at once (see `wait`)."""
        self.home = server_home()
        self._lock = _StartLock(self.home)
        self._lock.acquire()  # one server starts (migrates, registers blocks, binds its port) at a time
        if not self._reuse():
            self._env = server_env()
            self._launch()
        return self

    def _reuse(self) -> bool:
        """Under the start lock: whether a running server will do (a temporary server is never shared)."""
        return False

    def _launch(self) -> None:
        import prefect

        self.port = _free_port()
        app_dir = str(Path(prefect.__file__).parent.parent)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=self._env, preexec_fn=_die_with_parent)

    def wait(self, timeout: float = 180) -> str:
        """Block until the server answers /health (the start lock is then released); its API URL."""
        import httpx

        deadline = time.monotonic() + timeout
        try:
            with httpx.Client() as client:
                while time.monotonic() < deadline:
                    code = self.process.poll()
                    if code == PORT_IN_USE:  # someone took the port between our choice and its bind
                        self._launch()
                        continue
                    if code is not None:
                        raise RuntimeError(f"the {self.kind} Prefect server exited with status {code} before it answered; "
                                           f"{self.why_hint}, or set PREFECT_API_URL to a running server")
                    try:
                        if client.get(f"{self.api_url}/health").status_code == 200:
                            self._ready()
                            self._watch()
                            return self.api_url
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
            raise RuntimeError(f"the {self.kind} Prefect server did not answer within {timeout:.0f} s; "
                               "set PREFECT_API_URL to a running server (`prefect server start`)")
        finally:
            self._release()

    def _ready(self) -> None:
        """Called once the server answers, still under the start lock."""

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None

    def stop(self) -> None:
        self._release()
        if self.port is not None and _watched.get(self.port) is self:
            del _watched[self.port]
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class KeptServer(TemporaryServer):
    """The local server runs share (see the module docstring): `begin` takes the start lock and this run's lease,
    then reuses the running server or launches one in its own session (not a child that dies with this run);
    `wait` records it for the next runs; `stop` only gives the lease back."""

    kind = "kept local"

    def begin(self) -> "KeptServer":
        self.idle = idle_seconds()
        return super().begin()

    def _reuse(self) -> bool:
        self.why_hint = f"its log is {self.home / LOG}"
        self._lease = self.home / LEASES / str(os.getpid())
        self._lease.parent.mkdir(exist_ok=True)
        self._lease.touch()  # under the lock: the server cannot decide it is idle between our check and our use
        self.state = running_server(self.home)
        self.reused = self.state is not None
        if self.reused:
            self.port = int(self.state["port"])
        return self.reused

    def _launch(self) -> None:
        self.port = _free_port()
        with open(self.home / LOG, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--port", str(self.port), "--idle", str(self.idle), "--home", str(self.home)],
                env=self._env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)  # its own session: a Ctrl-C or kill of this run does not reach it

    def wait(self, timeout: float = 180) -> str:
        if self.reused:
            self._release()
            self._watch()
            return self.api_url
        return super().wait(timeout)

    def _ready(self) -> None:
        import json

        self.state = {"pid": self.process.pid, "port": self.port, "api_url": self.api_url, "idle_s": self.idle, "started": time.time()}
        tmp = self.home / f"{STATE}.{os.getpid()}"
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.home / STATE)

    def stop(self) -> None:
        """Give the lease back; the server stays for the next run (it exits by itself when idle). One this run
        launched that never answered is ended here: no later run would find it."""
        self._release()
        if self.port is not None and _watched.get(self.port) is self:
            del _watched[self.port]
        if not getattr(self, "reused", True) and self.process is not None and getattr(self, "state", None) is None:
            super().stop()
        lease = getattr(self, "_lease", None)
        if lease is not None:
            lease.unlink(missing_ok=True)
            self._lease = None


def begin_local_server() -> TemporaryServer:
    """The local server for a run without PREFECT_API_URL, begun (it boots while the caller imports the flow)."""
    return (KeptServer if mode() == "keep" else TemporaryServer)().begin()


def stop_kept_server(home: Path, force: bool = False) -> int | None:
    """Stop the kept server of `home` (SIGTERM, SIGKILL after 15 s) under the start lock, so no run picks it up
    meanwhile; its pid, or None when none runs. Refuses (`TlopsError`) while runs hold leases, unless `force`."""
    import signal

    from tlops.errors import TlopsError

    lock = _StartLock(home)
    lock.acquire()
    try:
        state, runs = running_server(home), live_leases(home)
        if state is None:
            return None
        if runs and not force:
            raise TlopsError(f"runs {', '.join(map(str, runs))} are using the kept local Prefect server; wait for them to "
                             "finish, or stop it anyway with --force (they fail)")
        pid = int(state["pid"])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        forget_state(home, pid)
        return pid
    finally:
        lock.close()


def forget_state(home: Path, pid: int) -> None:
    """Remove the state file if it still names server `pid` (a newer server's record is left alone)."""
    state = read_state(home)
    if state is not None and int(state.get("pid", -1)) == pid:
        (home / STATE).unlink(missing_ok=True)


def _exit_when_idle(server, idle: float, home: Path) -> None:
    """The kept server's watchdog: once no live lease has existed for `idle` seconds, take the start lock (a run
    starting now holds it and has written its lease), withdraw the state file and let uvicorn shut down."""
    last = time.monotonic()
    tick = min(5.0, max(0.2, idle / 5))
    while not server.should_exit:
        time.sleep(tick)
        if live_leases(home):
            last = time.monotonic()
            continue
        if time.monotonic() - last < idle:
            continue
        lock = _StartLock(home)
        try:
            if not lock.acquire(block=False):
                continue
            if live_leases(home):
                last = time.monotonic()
                continue
            forget_state(home, os.getpid())
            server.should_exit = True
        finally:
            lock.close()


def serve(port: int, idle: float, home: Path) -> None:
    """The kept server process: Prefect's API app under uvicorn, plus the idle watchdog."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                                           log_level="error", lifespan="on"))
    threading.Thread(target=_exit_when_idle, args=(server, idle, home), daemon=True).start()
    try:
        server.run()
    except SystemExit:
        if not server.started:  # the port was taken between the launcher's choice and the bind: it retries elsewhere
            sys.exit(PORT_IN_USE)
        raise
    finally:
        forget_state(home, os.getpid())


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="tlops's kept local Prefect server (started by `tlops run`)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--idle", type=float, required=True)
    ap.add_argument("--home", type=Path, required=True)
    a = ap.parse_args()
    serve(a.port, a.idle, a.home)
