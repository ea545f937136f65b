"""Seconds until a `tlops` command's first output line on a terminal, and until it exits (issue 27 item 6).

    .venv/bin/python bench/first_output.py [--runs N] -- tlops run c.yaml

Runs the command N times in a pseudo-terminal (stdout and stderr on it, as in a user's shell) and prints, per run, the
time of its first non-empty line and of its exit, with the first lines it printed."""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import subprocess
import time

ANSI = re.compile("\x1b" + r"\[[0-9;?]*[A-Za-z]")


def timed(cmd: list[str]) -> tuple[float | None, float, int, list[tuple[float, str]]]:
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    buf, lines = b"", []
    while True:
        ready, _, _ = select.select([master], [], [], 0.05)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        now = time.perf_counter() - t0
        buf += data
        *done, buf = re.split(rb"[\r\n]", buf)
        lines += [(now, text) for text in (ANSI.sub("", d.decode(errors="replace")).strip() for d in done) if text]
    rc = proc.wait()
    os.close(master)
    return (lines[0][0] if lines else None), time.perf_counter() - t0, rc, lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    for i in range(args.runs):
        first, total, rc, lines = timed(cmd)
        print(f"run {i + 1}: first line {first if first is not None else float('nan'):.2f} s, exit {rc} after {total:.2f} s")
        for t, text in [x for x in lines if "━" not in x[1]][:3]:
            print(f"    {t:6.2f} s  {text[:150]}")


if __name__ == "__main__":
    main()
