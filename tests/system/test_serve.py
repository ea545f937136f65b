"""`tlops serve MODEL_URI`: the registered model's files checked as `tlops predict` checks them, then MLflow's scoring
server on them (the REST API of `mlflow models serve`), the store found as by every command; SIGTERM stops the server
with it. A model that does not resolve, or a port in use, is one `error:` line and no server (issue 27, "Build")."""

from __future__ import annotations

import os
import signal
import socket
import sys

import psutil

from tests.helpers import REPO
from tests.servers import Services, free_port, invocations, tlops_cli, uvicorn_children, wait_http


def test_serve_answers_invocations_and_stops_with_sigterm(zoo, tmp_path):
    port = free_port()
    svc = Services(tmp_path)
    try:
        proc = svc.start("serve", [sys.executable, "-m", "flows.cli", "serve", zoo.text.model_uri(), "--port", str(port),
                                   "--tracking-uri", zoo.text.uri], env={**os.environ, "PYTHONPATH": str(REPO)})
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ping", proc, svc.log(proc), timeout=120)
        assert invocations(url, {"inputs": ["a small dog that barks at the moon", "a sweet cake baked with the river"]}) == ["animal", "food"]
        proba = invocations(url, {"inputs": ["a red car parked by the road"], "params": {"proba": True}})
        assert set(proba[0]) == {"animal", "food", "vehicle"}, proba
        servers = uvicorn_children(proc.pid)
        assert servers, "no uvicorn below tlops serve"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, svc.log(proc).read_text()[-2000:]
        _, alive = psutil.wait_procs(servers, timeout=10)
        assert not alive, alive
        log = svc.log(proc).read_text()
        assert f"at {url}: POST {url}/invocations" in log and "Traceback" not in log, log[-2000:]
    finally:
        svc.stop()


def test_serve_refuses_an_unknown_model_and_a_port_in_use_in_one_line(zoo, tmp_path):
    bad = tlops_cli("serve", "models:/nope@champion", "--port", str(free_port()), "--tracking-uri", zoo.text.uri, timeout=120)
    assert bad.returncode == 1 and "error: unknown model 'nope'" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = tlops_cli("serve", zoo.text.model_uri(), "--port", str(port), "--tracking-uri", zoo.text.uri, timeout=120)
    assert taken.returncode == 1 and f"error: port {port} on 127.0.0.1 is in use (Address already in use); pick another with --port" in taken.stderr, taken.stderr
    assert [line for line in bad.stderr.splitlines() + taken.stderr.splitlines() if line.strip()] == [
        bad.stderr.strip(), taken.stderr.strip()]
