"""`tlops serve MODEL_URI [--port P]`: a registered model over HTTP, with MLflow's scoring server (the REST API of
`mlflow models serve`: POST /invocations, GET /ping, GET /version), after its files are checked against the sha256
recorded at registration as `tlops predict` checks them (`tasks.audit.verified_model`). The server runs in this Python
environment (as `mlflow models serve --env-manager local`: no conda, no virtualenv built) from the checked copy, so
what answers is what was checked; the store is found as by every command (--tracking-uri, $MLFLOW_TRACKING_URI,
sqlite:///mlruns/mlflow.db)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from flows.commands._common import TRACKING
from flows.commands._registry_read import check_model_uri
from flows.console import esc, quiet_third_party, status, user_errors
from tlops.errors import TlopsError

DEFAULT_PORT = 5001  # next to the MLflow UI's 5000, which `tlops run` suggests opening


def _check_port(host: str, port: int) -> None:
    """One line now, not after the model has loaded, when the server could not listen there."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except socket.gaierror as e:
            raise TlopsError(f"cannot listen on {host!r} ({e.strerror}); give --host an address of this machine, "
                             "e.g. 127.0.0.1 or 0.0.0.0") from None
        except OSError as e:
            raise TlopsError(f"port {port} on {host} is in use ({e.strerror}); pick another with --port") from None


def _stop_with_parent() -> None:
    """In the server's process: SIGTERM when `tlops serve` dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG), so no
    orphan keeps the port."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)
        except OSError:
            pass


def serve(model_uri: str = typer.Argument(..., help="models:/NAME@champion, models:/NAME/VERSION, or runs:/RUN/model"),
          port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="port to listen on"),
          host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
          workers: int = typer.Option(1, "--workers", help="server processes (each loads the model)"),
          timeout: Optional[int] = typer.Option(None, "--timeout", help="seconds a request may take (default: MLflow's, 60)"),
          tracking_uri: Optional[str] = TRACKING) -> None:
    """Serve a registered model over HTTP with MLflow's scoring server (POST /invocations, as `mlflow models serve`),
    after checking its files against the sha256 recorded at registration. Ctrl-C stops it."""
    quiet_third_party()
    _check_port(host, port)
    check_model_uri(tracking_uri, model_uri)  # an unknown model in a second, not after the imports below
    from mlflow.pyfunc import scoring_server

    from tasks.audit import verified_model
    from tasks.operate import connect

    reg = connect(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tlops-serve-") as tmp:  # the checked copy, served until the server stops
        local = verified_model(reg, model_uri, Path(tmp))
        _, env = scoring_server.get_cmd(str(local), port, host, timeout, workers)  # its environment: the model's path, timeout
        args = [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port), "--workers", str(workers),
                "mlflow.pyfunc.scoring_server.app:app"]
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        status(esc(f"serving {model_uri} (files match the sha256 recorded at registration) at {url}: "
                   f"POST {url}/invocations with {{\"inputs\": [...]}}; Ctrl-C stops it"))
        server = subprocess.Popen(args, env=env, preexec_fn=_stop_with_parent)

        def stop(signum, frame):
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            code = server.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        raise TlopsError(f"the scoring server exited with code {code} (its lines above say why)")


def register(app: typer.Typer) -> None:
    app.command("serve")(user_errors(serve))
