"""Issue 25, trust holes a hostile probe found, the parts testable without a server or a process: database tracking
URIs that fail in one line and seconds (missing driver, nothing listening, a server that never answers), a full disk
named at the copy's destination, the kept local Prefect server's scrubbed environment, and a local server that went
away named as such and given up on at once."""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import socket
import time

import pytest

PASSWORD = "s3cret-db-pass-9f7c"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(uri: str, timeout_s: float = 5.0) -> tuple[str, float]:
    from tasks.tracking import _reachable, check_reachable
    from tlops.errors import RegistryError

    _reachable.discard(uri)
    t0 = time.monotonic()
    with pytest.raises(RegistryError) as err:
        check_reachable(uri, timeout_s=timeout_s)
    return str(err.value), time.monotonic() - t0


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is not None, reason="psycopg (SQLAlchemy's default PostgreSQL driver) is installed")
def test_a_postgresql_uri_whose_default_driver_is_missing_names_the_form_to_use():
    """SQLAlchemy 2.1 reads `postgresql://` as psycopg (3); MLflow then printed 82-108 lines of traceback."""
    port = _closed_port()
    message, _ = _check(f"postgresql://alice:{PASSWORD}@127.0.0.1:{port}/mlflow")
    assert "\n" not in message and PASSWORD not in message, message
    assert "needs SQLAlchemy's psycopg driver" in message and "No module named 'psycopg'" in message, message
    if importlib.util.find_spec("psycopg2") is not None:  # what `tlops[team]` installs
        assert f"write it postgresql+psycopg2://alice:***@127.0.0.1:{port}/mlflow (psycopg2 is installed here)" in message, message
    assert "pip install 'psycopg[binary]'" in message, message


@pytest.mark.skipif(importlib.util.find_spec("psycopg2") is None, reason="psycopg2 not installed")
def test_a_database_that_is_down_or_silent_fails_in_seconds_with_one_line():
    """Nothing on the port: MLflow retried for minutes (235 lines); now one line at once. A port that accepts but never
    answers (the backlog of a socket nobody accepts on): one line after the connect timeout."""
    port = _closed_port()
    message, took = _check(f"postgresql+psycopg2://alice:{PASSWORD}@127.0.0.1:{port}/mlflow")
    assert took < 3 and "\n" not in message and PASSWORD not in message, (took, message)
    assert message.startswith(f"the tracking database postgresql+psycopg2://alice:***@127.0.0.1:{port}/mlflow is unreachable "
                              f"(connection refused at 127.0.0.1:{port}); start it"), message
    assert "MLFLOW_TRACKING_URI" in message

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; no reply ever comes
        port = silent.getsockname()[1]
        message, took = _check(f"postgresql+psycopg2://alice@127.0.0.1:{port}/mlflow", timeout_s=2)
    assert took < 8 and "\n" not in message, (took, message)
    shown = f"postgresql+psycopg2://alice@127.0.0.1:{port}/mlflow"
    assert message.startswith(f"the tracking database {shown} did not accept the connection ("), message
    assert "PGPASSWORD" in message


@pytest.mark.skipif(importlib.util.find_spec("psycopg2") is None, reason="psycopg2 not installed")
def test_a_command_on_a_database_that_is_down_prints_one_error_line(tmp_path, monkeypatch):
    from tests.cli import cli

    monkeypatch.setenv("PGPASSWORD", "placeholder")  # the command moves the URI's password here: restored after the test
    uri = f"postgresql+psycopg2://alice:{PASSWORD}@127.0.0.1:{_closed_port()}/mlflow"
    t0 = time.monotonic()
    out = cli("history", "some-model", "--tracking-uri", uri, env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    took = time.monotonic() - t0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: the tracking database"), out.stderr[-3000:]
    assert "Traceback" not in out.stderr and PASSWORD not in out.stderr + out.stdout and took < 10, (took, out.stderr[-3000:])


def _enospc_on_copy(monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "sendfile", full)  # shutil's copy of a file on Linux; a disk that fills up mid-copy


def test_a_full_disk_during_a_copy_names_the_destination_not_the_source(tmp_path, monkeypatch):
    """Copying a model folder (the venv's) into execution.work_dir: the error named the venv's folder, where nothing
    was being written. A file copy (shutil.copy2) and a folder copy (shutil.copytree, which gathers its errors)."""
    from tlops.diskspace import DiskFull, as_disk_full

    source, work = tmp_path / "venv" / "site-packages" / "model", tmp_path / "work"
    source.mkdir(parents=True)
    (source / "model.safetensors").write_bytes(b"x" * 4096)
    (work / "package").mkdir(parents=True)
    _enospc_on_copy(monkeypatch)
    with pytest.raises(OSError) as copy_file:
        shutil.copy2(source / "model.safetensors", work / "package" / "model.safetensors")
    with pytest.raises(shutil.Error) as copy_tree:
        shutil.copytree(source, work / "tree")
    for error, where in ((copy_file.value, work / "package"), (copy_tree.value, work / "tree")):
        full = as_disk_full(error, tmp_path / "fallback")
        assert isinstance(full, DiskFull), error
        assert f"no space left on the device of {where};" in str(full) and str(source) not in str(full), str(full)


def test_the_local_prefect_server_gets_no_secret_of_the_run(monkeypatch):
    """A kept server outlives the run that starts it (up to 15 minutes) and serves later runs: none of that run's
    credentials may sit in its environment; what it needs (PATH, Prefect's settings, its own database password) stays."""
    from flows.local_server import server_env

    planted = {"MLFLOW_TRACKING_PASSWORD": "mlflow-pass-1234", "HF_TOKEN": "hf_token_abcdef", "OPENAI_API_KEY": "sk-openai-123456",
               "AWS_SECRET_ACCESS_KEY": "aws-secret-123456", "PGPASSWORD": "pg-pass-123456", "MY_DB_PASSWORD_X": "db-pass-123456",
               "SOME_SECRET": "some-secret-123456", "GITHUB_TOKEN": "ghp-token-123456", "PREFECT_API_KEY": "pnu-cloud-key-123456",
               "AWS_ACCESS_KEY_ID": "AKIA-123456", "UNRELATED_SETTING": "not-needed"}
    kept = {"PREFECT_SERVER_DATABASE_PASSWORD": "its-own-db-pass", "PREFECT_HOME": "/tmp/some-prefect-home", "LC_ALL": "C.UTF-8"}
    for k, v in {**planted, **kept}.items():
        monkeypatch.setenv(k, v)
    env = server_env()
    leaked = {k for k in planted if k in env} | {k for k, v in env.items() if v in planted.values()}
    assert not leaked, leaked
    assert all(env.get(k) == v for k, v in kept.items()), {k: env.get(k) for k in kept}
    assert env["PATH"] == os.environ["PATH"] and env["PREFECT_UI_ENABLED"] == "0"


class _ExitedProcess:
    pid = 4242

    def poll(self):
        return -9


def _watched_server(port: int, alive: bool):
    from flows.local_server import KeptServer

    server = KeptServer()
    server.port = port
    server.process = _ExitedProcess() if not alive else None
    server.state = None if not alive else {"pid": os.getpid()}
    server._watch()
    return server


def test_a_local_server_that_exited_is_given_up_on_at_once_and_named(monkeypatch):
    """Prefect's client retries a refused connection 5 times per request (2 + 4 + ... + 32 s) and a failing run makes
    several: after the kept server was killed the run took 3 min 50 s to say a "temporary" server stopped. Its
    process is gone: no retry can help, and the error says which server it was and that a rerun starts a new one."""
    import httpx
    from prefect.client.base import PrefectHttpxSyncClient
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    import flows.prefect_outage as outage
    from flows.local_server import USED, _watched, gone_error

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(outage, "_silence_prefect_services", lambda: None)  # it quiets this process's Prefect logging
    dead, live = _closed_port(), _closed_port()
    servers = [_watched_server(dead, alive=False), _watched_server(live, alive=True)]
    try:
        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 5}):
            with PrefectHttpxSyncClient(base_url=f"http://127.0.0.1:{dead}/api") as client:
                client._has_connected = True  # a client of a running flow: it retries a refused connection
                t0 = time.monotonic()
                with pytest.raises(httpx.TransportError) as err:
                    client.get("/flow_runs/1")
                took = time.monotonic() - t0
        assert isinstance(err.value, gone_error()) and took < 1.5, (type(err.value), took)
        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):  # a live process: Prefect's retries as before
            with PrefectHttpxSyncClient(base_url=f"http://127.0.0.1:{live}/api") as client:
                client._has_connected = True
                with pytest.raises(httpx.ConnectError) as live_err:
                    client.get("/flow_runs/1")
        assert not isinstance(live_err.value, gone_error())

        message = str(outage.prefect_server_gone(err.value))
        assert "\n" not in message and "temporary" not in message, message
        assert message.startswith(f"the kept local Prefect server this run used (http://127.0.0.1:{dead}/api, pid 4242) went away "
                                  "during the run (its process exited;"), message
        assert "rerun the same command, which starts a new local Prefect server" in message, message
    finally:
        for server in servers:
            _watched.pop(server.port, None)
            USED.pop(server.api_url, None)
