"""Live progress: what a person at a terminal sees during `tlops run`, and what CI logs and `--json` get.

The backbone is the tiny random-weight fixture (code path only)."""

from __future__ import annotations

import json
import os
import pty
import re
import struct
import subprocess
import sys
import threading

import yaml

from tests.helpers import REPO, tiny_config

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run_on_a_terminal(args: list[str], env: dict, cols: int = 120, timeout: int = 600) -> tuple[str, str, int]:
    """`tlops ARGS` with stderr on a pseudo-terminal (what a person sees) and stdout on a pipe; -> (screen, stdout, rc)."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], stdout=subprocess.PIPE, stderr=slave, cwd=REPO, env=env)
    os.close(slave)
    screen = bytearray()

    def read():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=timeout)
    reader.join(timeout=10)
    os.close(master)
    return screen.decode("utf-8", "replace"), stdout.decode(), proc.returncode


def test_fine_tune_progress_on_a_terminal_and_pure_json_on_stdout(tmp_path, text_dataset, tiny_bert, prefect_api):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy={"name": "finetune", "epochs": 2, "batch_size": 4})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "TERM": "xterm-256color"}
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)
    screen, stdout, rc = _run_on_a_terminal(["run", str(tmp_path / "c.yaml"), "--json"], env)
    plain = ANSI.sub("", screen)
    assert rc == 0, plain[-3000:]
    # --json: the pipe holds one JSON object and nothing else, while the terminal showed the progress
    lines = stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["strategy"] == "finetune", stdout[-2000:]
    for split in ("train", "val", "test"):  # a bar per split, named, then its summary line
        assert f"features {split}" in plain and re.search(rf"features {split}: \d+ rows, 0 from the cache", plain), split
    # the step bar: epoch n/N, steps done/total, running loss, samples/s, ETA
    assert re.search(r"epoch 1/2 .*\d+/\d+ eta .*loss \d+\.\d{4} +\d+\.\d samples/s", plain), plain[-3000:]
    assert re.search(r"training .*\d+/\d+ eta", plain)
    # one line per epoch with its validation result
    for n in (1, 2):
        assert re.search(rf"epoch {n}/2  train_loss \d\.\d{{4}}  val_loss \d\.\d{{4}}  val_macro_f1 \d\.\d{{4}}", plain), n
    # quiet by default: no Prefect INFO lines, no telemetry notice, no Great Expectations chatter, no MLflow notices
    for noise in ("Task run", "Beginning flow run", "Prefect collects", "Created temporary directory", "Successfully registered model",
                  "Created version", "Validating input example"):  # the summary says what was registered
        assert noise not in plain, noise
