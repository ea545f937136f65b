"""`tlops schedule` without a Prefect server: one line naming PREFECT_API_URL and how to get a server, before any
server starts (it used to start a temporary one, print Prefect's log lines and fail on the work pool 13 s later)."""

from __future__ import annotations

import os

from tests.cli import cli, no_prefect_api
from tests.helpers import REPO


def test_schedule_without_a_server_says_what_it_needs_in_one_line():
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    for args in (["schedule", str(REPO / "configs" / "text_linear_probe.yaml"), "--cron", "0 3 * * *"], ["schedule", "ls"],
                 ["schedule", "rm", "nightly"]):
        with no_prefect_api():
            out = cli(*args, env=env)  # a temporary server would start a process here, which the unit tier refuses
        assert out.returncode == 1, (args, out.stdout[-1500:], out.stderr[-1500:])
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: tlops schedule needs a Prefect server"), lines
        assert "PREFECT_API_URL" in lines[0] and "docker/stack.sh up" in lines[0] and out.stdout == ""
