"""Every command a user is shown, pasted as shown (issue 27 item 2): each `tlops ...` / `mlflow ...` line of README.md's
bash blocks that works on the local store, its Python blocks that set the tracking URI, and the hints `tlops run` prints
(`mlflow ui`, `tlops predict`, `load_model`), run from a project root in a fresh shell (`bash -c`, an environment with
only PATH = the venv first, HOME and LANG: no MLFLOW_* or PREFECT_* variable) against a registered store laid out as
`tlops run` leaves it (`mlruns/mlflow.db`).

Checked for each: it parses (no usage error), reaches that store (MLflow's 'Registered Model ... not found' never
appears; the commands about the README's model answer about it), and nothing is created beside it (no stray
`./mlflow.db`, no `./mlruns/0`). Servers (`tlops serve`, `mlflow models serve`, `mlflow ui`) are started, asked one
request (the README's own `curl` lines for the served model) and stopped.

The store is the zoo's tiny-text model (tests/zoo.py) under the README's name `wordnet-supersense`. Changed from the
text as written, and only these: ports (a free one instead of 5000/5001: the machine may be serving those), and the
hint's placeholders (`INPUT ...`, `[...]`) filled with a real input. Not run: `tlops run` and `rank` (train or embed),
`schedule`/`local-server`/`docker` (Prefect servers: tests/system/test_stack.py), `init`/`validate` (a config of the
user's own data); commands naming other models or files the reader does not have only have to parse and name the right
store."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO

MODEL = "wordnet-supersense"  # the model the README's registry commands name
NOT_RUN = {"run", "rank", "schedule", "local-server", "init", "validate"}  # they train or embed a config's data
SERVERS = {("tlops", "serve"), ("mlflow", "ui"), ("mlflow", "models")}
NOT_FOUND = re.compile(r"Registered Model .* not found|RESOURCE_DOES_NOT_EXIST", re.I)


def _blocks(lang: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    return [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M) if m.group(1) == lang]


def readme_commands() -> list[str]:
    """The tlops/mlflow command lines of README's bash blocks (continuation lines joined), in order."""
    found = []
    for body in _blocks("bash"):
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            words = shlex.split(line.removeprefix("$ "), comments=True)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words = words[1:]  # VAR=value before the command
            name = Path(words[0]).name if words else ""
            if name in ("tlops", "mlflow") and not (name == "tlops" and len(words) > 1 and words[1] in NOT_RUN):
                found.append(line.removeprefix("$ ").strip())
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_port(cmd: str, port: int) -> str:
    """The command on `port` instead of the README's 5000/5001 (or MLflow's and tlops's defaults)."""
    cmd, n = re.subn(r"(--port|-p) 500[01]\b", rf"\1 {port}", cmd)
    cmd = re.sub(r"127\.0\.0\.1:500[01]\b", f"127.0.0.1:{port}", cmd)
    if n == 0 and re.search(r"\b(tlops serve|mlflow ui)\b", cmd):
        head, _, comment = cmd.partition("  #")
        cmd = f"{head.rstrip()} --port {port}"
    return cmd


def _relocate(db: Path, old: str, new: str) -> None:
    """Every text cell of the store that starts with `old` (an artifact location) rewritten to start with `new`."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for col in [c[1] for c in con.execute(f'PRAGMA table_info("{table}")') if c[2].upper() in ("TEXT", "VARCHAR") or "CHAR" in c[2].upper()]:
                con.execute(f'UPDATE "{table}" SET "{col}" = ? || substr("{col}", ?) WHERE substr("{col}", 1, ?) = ?',
                            (new, len(old) + 1, len(old), old))
        con.commit()
    finally:
        con.close()


@pytest.fixture(scope="module")
def project(zoo, tmp_path_factory):
    """A project root as `tlops run` leaves one: mlruns/mlflow.db and mlruns/artifacts (a copy of the zoo's text store,
    the model renamed to the README's name; its own artifacts, since MLflow's direct loaders write into them), and the
    venv at .venv (the README's `.venv/bin/mlflow`)."""
    from mlflow.tracking import MlflowClient

    from tests.zoo import mlflow_uris_kept

    root = tmp_path_factory.mktemp("project")
    uri = zoo.text.copy_store(root)
    shutil.copytree(zoo.text.root / "mlruns" / "artifacts", root / "mlruns" / "artifacts")
    _relocate(root / "mlruns" / "mlflow.db", (zoo.text.root / "mlruns" / "artifacts").as_uri(), (root / "mlruns" / "artifacts").as_uri())
    with mlflow_uris_kept():
        MlflowClient(uri, registry_uri=uri).rename_registered_model(zoo.text.name, MODEL)
    (root / ".venv").symlink_to(REPO / ".venv")
    return root


def _shell_env(root: Path) -> dict:
    return {"PATH": f"{root}/.venv/bin:/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(root)), "LANG": "C.UTF-8",
            "COLUMNS": "200"}


def _start(cmd: str, root: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=root, env=_shell_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    proc.lines = []  # its output so far, read by a thread (a server's never ends)
    threading.Thread(target=lambda: proc.lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return proc


def _wait_for(proc: subprocess.Popen, ready, timeout: float) -> bool:
    """Until `ready()` (or the process ends, or `timeout` seconds)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if ready():
            return True
        time.sleep(0.3)
    return False


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen) -> str:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(0.2)  # the reader thread's last lines
    return "".join(proc.lines)


def _hints(zoo, root: Path) -> list[str]:
    """What `tlops run` prints after training this model in `root` (its summary, for the project's default store)."""
    import contextlib
    import io

    from flows.commands.run import print_summary

    outcome = zoo.text.results[-1].model_copy(update={"model_name": MODEL, "tracking_uri": f"sqlite:///{root}/mlruns/mlflow.db"})
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_summary(outcome)
    lines = {k: line.split(":", 1)[1].strip() for line in buf.getvalue().splitlines()
             for k in ("Open the MLflow UI", "Predict (checked)", "Load it in Python") if line.startswith(k)}
    assert set(lines) == {"Open the MLflow UI", "Predict (checked)", "Load it in Python"}, buf.getvalue()
    ui = lines["Open the MLflow UI"].split("   (then")[0]
    predict = lines["Predict (checked)"].replace("INPUT ...", "'a large marine mammal'")
    load = lines["Load it in Python"].split("  (loads without")[0].replace("[...]", "['a large marine mammal']")
    assert load.startswith("mlflow.set_tracking_uri(") and "; " in load, load
    set_uri, call = load.split("; ", 1)
    return [ui, predict, f"python -c {shlex.quote(f'import mlflow; {set_uri}; print({call})')}"]

def test_every_documented_and_printed_command_reaches_the_projects_store(zoo, project):
    started = time.monotonic()
    commands = readme_commands()
    assert sum(c.startswith("tlops") for c in commands) >= 10 and any("mlflow models serve" in c for c in commands), commands
    loading = [b for b in _blocks("python") if "load_model(" in b]
    assert loading and all("set_tracking_uri(" in b for b in loading), "a pasted load_model without the URI reads ./mlflow.db"
    python_blocks = [b for b in loading if MODEL in b]  # the others name models this store does not hold
    hints = _hints(zoo, project)
    ui_hint, predict_hint, load_hint = hints

    servers, oneshots = [], []
    for cmd in [*commands, ui_hint]:
        words = shlex.split(cmd, comments=True)
        words = [w for w in words if not re.fullmatch(r"[A-Z_]+=.*", w)]
        key = (Path(words[0]).name, words[1])
        if key in SERVERS:
            servers.append(cmd)
        elif words[0] != "curl":
            oneshots.append(cmd)
    writes = [c for c in oneshots if re.match(r"tlops (promote|rollback)\b", c)]  # moving aliases: after the rest
    reads = [c for c in oneshots if c not in writes] + [predict_hint, load_hint] + [f"python -c {shlex.quote(b)}" for b in python_blocks]
    curls = [re.sub(r"\\\n\s*", " ", c) for b in _blocks("bash") for c in re.findall(r"^curl .*(?:\n[ \t]+.*)*", b, re.M)]

    # servers and the model-loading reads in parallel (each is seconds of imports), then the alias moves in order. A server
    # the README's curl lines go to (its port 5001) is asked them; `tlops serve` otherwise stops at its "serving" line
    # (the model's files checked against the store), `mlflow ui` once its API has listed the registered models.
    ports = {cmd: _free_port() for cmd in servers}
    running = {cmd: _start(_with_port(cmd, ports[cmd]), project) for cmd in servers}
    pending = {cmd: _start(cmd, project) for cmd in reads}
    results: dict[str, tuple[int, str]] = {}
    for cmd, proc in pending.items():
        proc.wait(timeout=300)
        results[cmd] = (proc.returncode, _stop(proc))
    served = {}
    for cmd, proc in running.items():
        port = ports[cmd]
        if "mlflow ui" in cmd:
            if _wait_for(proc, lambda: _listening(port), 180):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/registered-models/search", timeout=60) as r:
                    served[cmd] = [m["name"] for m in json.load(r).get("registered_models", [])]
        elif re.search(r"(-p|--port) 5001\b", cmd):
            if _wait_for(proc, lambda: _listening(port), 240):
                served[cmd] = [subprocess.run(["bash", "-c", _with_port(c, port)], cwd=project, env=_shell_env(project),
                                              capture_output=True, text=True, timeout=120).stdout for c in curls]
        else:
            _wait_for(proc, lambda: any("serving" in line for line in proc.lines), 180)
        up = cmd in served or any("serving" in line for line in proc.lines)
        results[cmd] = (0 if up else 1, _stop(proc))
    for cmd in writes:
        r = subprocess.run(["bash", "-c", cmd], cwd=project, env=_shell_env(project), capture_output=True, text=True, timeout=300)
        results[cmd] = (r.returncode, r.stdout + r.stderr)

    problems = []
    for cmd, (code, out) in results.items():
        tail = out[-2500:]
        if "Usage:" in out or "No such option" in out or "Traceback" in out:
            problems.append(f"{cmd}: did not parse or crashed\n{tail}")
        if NOT_FOUND.search(out):
            problems.append(f"{cmd}: MLflow looked in another store\n{tail}")
        about_ours = MODEL in cmd and not re.search(r"--csv|--data", cmd)  # inputs this project does not have
        if "--if-better" in cmd:  # the gate's decision either way (after the README's `promote 3`, v3 already is champion)
            if code != 0 and not re.search(rf"error: {MODEL} v3 .*champion", out):
                problems.append(f"{cmd}: neither promoted nor refused by the gate\n{tail}")
        elif about_ours or cmd in servers or cmd in (load_hint, predict_hint) or cmd.startswith(("python", "tlops models", "tlops --version")):
            if code != 0:
                problems.append(f"{cmd}: exit {code}\n{tail}")
        elif code == 0 or "error:" not in out:  # another model, or a file the reader would have: refused by tlops
            problems.append(f"{cmd}: expected tlops's error line about a model or file this project lacks\n{tail}")
        elif "unknown model" in out and f"registered models: {MODEL}" not in out:
            problems.append(f"{cmd}: did not read this project's store\n{tail}")
    for cmd, answers in served.items():  # (a server that never came up has exit 1 above)
        if "mlflow ui" in cmd and answers != [MODEL]:
            problems.append(f"{cmd}: the UI's API lists {answers}")
        if "mlflow ui" not in cmd and not (len(answers) == len(curls) >= 2 and all('"predictions"' in a for a in answers)):
            problems.append(f"{cmd}: the README's curl lines got {answers}")
    assert not problems, "\n\n".join(problems)
    # nothing was created beside the store: MLflow's defaults (./mlflow.db, ./mlruns/0) would mean a command missed it
    assert sorted(p.name for p in project.iterdir()) == sorted([".venv", "mlruns", *(["compare.html"] if (project / "compare.html").exists() else [])])
    beside = sorted(p.name for p in (project / "mlruns").iterdir() if not re.fullmatch(r"mlflow\.db(-journal|-wal|-shm)?", p.name))
    assert beside == ["artifacts"], beside  # (SQLite's own journal files of the store, while a stopped server lets go, are fine)
    print(f"{len(results)} commands in {time.monotonic() - started:.1f} s")
