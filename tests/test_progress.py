"""Live progress: what a person at a terminal sees during `tlops run`, and what CI logs and `--json` get.

The backbone is the tiny random-weight fixture (code path only)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import threading

import pytest
import yaml
from rich.console import Console

from tests.helpers import REPO, tiny_config
from tlops.progress import Display, LoopProgress, use
from tlops.training.loop import LoopState

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_off_a_terminal_only_plain_epoch_lines_are_written():
    """CI logs: no bars or cursor codes, one readable line per epoch (1-based), the best one marked."""
    out = io.StringIO()
    with use(Display(Console(file=out, force_terminal=False, width=200))) as display:
        cb, state = LoopProgress(display), LoopState()
        for epoch, f1 in enumerate([0.5, 0.4]):
            state.epoch = epoch
            cb.on_epoch_begin(state, batches=3, epochs=2)
            for b in range(3):
                state.batch, state.epoch_seen, state.epoch_losses = b + 1, 4 * (b + 1), {"task": 2.0 * (b + 1)}
                cb.on_step_end(state)
            if epoch == 0:
                state.best_epoch = 0
            cb.on_epoch_end(state, {"epoch": epoch, "train_loss": 0.5, "val_macro_f1": f1, "lr_head": 1e-3, "epoch_train_seconds": 1.25})
        cb.on_fit_end(state)
    text = out.getvalue()
    assert "\x1b[" not in text and "\r" not in text, repr(text)
    lines = text.splitlines()
    assert lines == ["epoch 1/2  train_loss 0.5000  val_macro_f1 0.5000  1.2 s  best so far",
                     "epoch 2/2  train_loss 0.5000  val_macro_f1 0.4000  1.2 s"], lines


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


@pytest.mark.slow
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
