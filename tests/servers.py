"""Start and stop real servers (Prefect API, MLflow tracking, a Prefect worker) on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


class Services:
    """Processes started in their own process groups; `stop()` ends every one of them."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        f = open(log, "w")
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=self.root, start_new_session=True)
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen) -> Path:
        return next(l for p, l in self.procs if p is proc)

    def stop_one(self, proc: subprocess.Popen) -> None:
        """Stop one service (its whole process group) now, e.g. a server going down mid-run."""
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def prefect_env(root: Path, api_url: str) -> dict:
    return {**os.environ, "PREFECT_HOME": str(root / "prefect-home"), "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_UI_ENABLED": "false"}


def start_prefect_server(svc: Services, **server_env: str) -> tuple[str, dict]:
    """A Prefect server (SQLite) on 127.0.0.1; `server_env` adds settings, e.g. a faster scheduler loop."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**prefect_env(svc.root, api), **server_env}
    env.pop("PREFECT_API_URL")  # the server itself must not look for another server
    proc = svc.start("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"], env)
    wait_http(f"{api}/health", proc, svc.log(proc))
    return api, prefect_env(svc.root, api)


def start_mlflow_server(svc: Services, port: int | None = None) -> str:
    """An MLflow server (SQLite store + artifacts under `svc.root/mlflow`); `port`: restart one on its old port."""
    port = port or free_port()
    store = svc.root / "mlflow"
    store.mkdir(exist_ok=True)
    proc = svc.start("mlflow-server", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                       "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
                                       "--artifacts-destination", str(store / "artifacts")], dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc, svc.log(proc), timeout=180)
    return url


STACK = Path(__file__).resolve().parent.parent / "docker" / "stack.sh"


class NativeStack:
    """`docker/stack.sh` on free ports in a fresh state folder: PostgreSQL, Prefect and MLflow servers on it, a
    CPU worker. `env` is a client's environment (PREFECT_API_URL, MLFLOW_TRACKING_URI); `stop()` brings it down."""

    def __init__(self, **extra_env: str):
        import re
        import tempfile

        # as root, PostgreSQL runs as Debian's `postgres` user, which must reach its folder
        self.root = Path(tempfile.mkdtemp(prefix="tlops-stack-", dir="/tmp"))
        self.root.chmod(0o755)
        ports = {k: str(free_port()) for k in ("POSTGRES_PORT", "PREFECT_PORT", "MLFLOW_PORT", "WORKER_CPU_HEALTH_PORT")}
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
        env.update(ports, TLOPS_STACK_DIR=str(self.root / "state"), TLOPS_STACK_ENV=str(self.root / "stack.env"),
                   PREFECT_HOME=str(self.root / "prefect-home"), PREFECT_UI_ENABLED="false", **extra_env)
        self.stack_env = env
        up = subprocess.run([str(STACK), "up"], env=env, capture_output=True, text=True, timeout=600)
        if up.returncode != 0:
            self.stop()
            raise RuntimeError(f"stack.sh up failed:\n{up.stdout}{up.stderr}")
        exports = dict(re.findall(r"export (\w+)=(\S+)", up.stdout))
        self.env = {**env, **exports}
        self.mlflow = exports["MLFLOW_TRACKING_URI"]
        self.prefect_api = exports["PREFECT_API_URL"]

    def log(self, service: str) -> str:
        return (self.root / "state" / "logs" / f"{service}.log").read_text()[-4000:]

    def stop(self) -> None:
        import shutil

        subprocess.run([str(STACK), "down"], env=self.stack_env, capture_output=True, timeout=120)
        shutil.rmtree(self.root, ignore_errors=True)


def serve_model(svc: Services, model_uri: str, tracking_uri: str) -> str:
    """`mlflow models serve` of a registered model on 127.0.0.1 (the venv on PATH: it execs uvicorn); its URL."""
    port = free_port()
    proc = svc.start("serve", [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1",
                               "-p", str(port)], {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
                                                     "PATH": f"{BIN}:{os.environ['PATH']}"})
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/ping", proc, svc.log(proc), timeout=180)
    return url


def invocations(url: str, body: dict) -> list:
    """POST a body to the server's /invocations; its `predictions`."""
    import json

    req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["predictions"]


def tlops_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`tlops ARGS` in a fresh process, from the repository root."""
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, env=env or dict(os.environ), timeout=timeout)


def demo_data(config: Path, needs: str = "test.csv") -> Path:
    """The data folder a demo config names (relative to the config); `make test` builds the demo data first, so a
    missing folder is a broken build, not a reason to skip."""
    import yaml

    data = (config.parent / yaml.safe_load(config.read_text())["data"]["path"]).resolve()
    assert (data / needs).is_file(), f"{data} not built: run `make data`"
    return data


def run_demo(config: Path, tmp_path: Path, prefect_api: str, **sets) -> tuple[dict, str]:
    """`tlops run CONFIG --json` (in-process) on the shared Prefect server, with its own MLflow store, work dir, feature cache and
    DVC cache under `tmp_path` (plus `sets`, dotted keys with '__' for '.'): (the JSON result, the tracking URI)."""
    import json

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    overrides = {"tracking.uri": uri, "execution.work_dir": str(tmp_path / "runs"), "features.cache_dir": str(tmp_path / "cache"),
                 "data.dvc_cache": str(tmp_path / "dvc-cache"), **{k.replace("__", "."): v for k, v in sets.items()}}
    args = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    from tests.cli import cli

    out = cli("run", str(config), "--json", *args, env={**os.environ, "PREFECT_API_URL": prefect_api})  # in this process
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), uri


def uvicorn_children(pid: int) -> list:
    """The uvicorn (Prefect or MLflow server) processes below `pid`; a child that ends while we look (a zombie, or gone:
    a short-lived git or uname) is skipped rather than failing the caller."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for c in children:
        try:
            if "uvicorn" in " ".join(c.cmdline()):
                found.append(c)
        except psutil.Error:
            continue
    return found
