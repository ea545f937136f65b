"""The command line's own surface: --version, and data errors that fail fast."""

from __future__ import annotations

import os

import yaml

from tests.helpers import tiny_config
from tests.servers import tlops_cli


def test_an_error_inside_the_flow_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, text_dataset, tiny_bert, prefect_api):
    """A tlops error raised in a task (a backbone folder that is not there) reaches the user as the command's one
    `error:` line, without Prefect's console tracebacks of the same exception; `-v` still shows Prefect's."""
    cfg = tiny_config(tmp_path, text_dataset, tmp_path / "no-such-model")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)
    out = tlops_cli("run", str(tmp_path / "c.yaml"), env=env)
    assert out.returncode == 1 and "folder not found" in out.stderr, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "Task run" not in out.stderr, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1].startswith("error: "), out.stderr[-3000:]
    verbose = tlops_cli("-v", "run", str(tmp_path / "c.yaml"), env=env)
    assert verbose.returncode == 1 and "Task run failed with exception: BackboneError" in verbose.stderr, verbose.stderr[-3000:]
