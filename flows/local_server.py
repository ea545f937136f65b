"""The temporary Prefect server of a `tlops run` with no PREFECT_API_URL configured.

Prefect would start one itself (`SubprocessASGIServer`: uvicorn on `prefect.server.api.server:create_app`);
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


class TemporaryServer:
    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._lock = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def begin(self) -> "TemporaryServer":
        """Take the start lock and launch the server; returns at once (see `wait`)."""
        import prefect
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        url = settings.server.database.connection_url.get_secret_value()
        home = Path(url.split(":///", 1)[1]).parent if url.startswith("sqlite") else Path(settings.home)
        home.mkdir(parents=True, exist_ok=True)
        self._lock = open(home / ".tlops-server.lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # one server starts (migrates, registers blocks, binds its port) at a time
        self._env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
                     **settings.to_environment_variables(exclude_unset=True)}  # what Prefect gives its own temporary server
        self._app_dir = str(Path(prefect.__file__).parent.parent)
        self._launch()
        return self

    def _launch(self) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", self._app_dir, "--factory", "prefect.server.api.server:create_app",
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
                        raise RuntimeError(f"the temporary Prefect server exited with status {code} before it answered; "
                                           "run `prefect server start` to see why, or set PREFECT_API_URL to a running server")
                    try:
                        if client.get(f"{self.api_url}/health").status_code == 200:
                            return self.api_url
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
            raise RuntimeError(f"the temporary Prefect server did not answer within {timeout:.0f} s; "
                               "set PREFECT_API_URL to a running server (`prefect server start`)")
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None

    def stop(self) -> None:
        self._release()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
