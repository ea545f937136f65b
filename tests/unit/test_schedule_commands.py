"""`tlops schedule` has real subcommands, as `tlops local-server` has (issue 27 item 11: `ls` and `rm` were values of a
positional argument): `add`, `ls`, `rm`; `tlops schedule CONFIG ...` is still `add`."""

from __future__ import annotations

import os

from tests.cli import cli, no_prefect_api
from tests.helpers import REPO


def test_schedule_lists_its_subcommands_and_config_means_add():
    help_ = cli("schedule", "-h", env={**os.environ, "COLUMNS": "150"})
    assert help_.returncode == 0
    for sub in ("add", "ls", "rm"):
        assert f"│ {sub} " in help_.stdout, help_.stdout
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    config = str(REPO / "configs" / "text_linear_probe.yaml")
    for args in (["schedule", "add", config, "--cron", "0 3 * * *"], ["schedule", config, "--interval", "60"]):
        with no_prefect_api():
            out = cli(*args, env=env)  # both reach the add command, which names the server it needs
        assert out.returncode == 1 and out.stderr.startswith("error: tlops schedule needs a Prefect server"), (args, out.stderr)
    with no_prefect_api():
        missing = cli("schedule", "rm", env=env)
    assert missing.returncode == 2 and "Missing argument" in missing.stderr
