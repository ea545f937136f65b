"""The command line's own surface (fast: no run)."""

from __future__ import annotations

import tomllib

from tests.helpers import REPO
from tests.servers import tlops_cli


def test_version_is_the_projects():
    out = tlops_cli("--version")
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert out.returncode == 0 and out.stdout.strip() == f"tlops {version}", out.stdout + out.stderr
