"""The command line's own surface: --version, and data errors that fail fast."""

from __future__ import annotations

import json
import re
import tomllib

import yaml

from tests.helpers import REPO, tiny_config
from tests.cli import cli


def test_version_is_the_projects():
    out = cli("--version")
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert out.returncode == 0 and out.stdout.strip() == f"tlops {version}", out.stdout + out.stderr


def test_help_shows_no_value_type_for_flags_and_element_types_for_lists():
    import typer
    from typer.testing import CliRunner

    from flows.cli import app

    group = typer.main.get_command(app)
    commands = [[name] for name in group.commands]
    assert len(commands) >= 11, commands
    for args in [["--help"], ["-h"]] + [c + ["--help"] for c in commands] + [c + ["-h"] for c in commands]:
        out = CliRunner().invoke(app, args, env={"COLUMNS": "150"})
        assert out.exit_code == 0 and "Usage:" in out.output, (args, out.output)
        assert "<bool>" not in out.output and "<list[" not in out.output, (args, out.output)
    assert CliRunner().invoke(app, ["local-server", "status", "-h"]).exit_code == 0  # a sub-command group's commands too
    predict = CliRunner().invoke(app, ["predict", "--help"], env={"COLUMNS": "150"}).output
    assert "--proba  " in predict and "inputs...      <str>" in predict, predict
    assert re.search(r"--set +KEY=VALUE", CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "150"}).output)


def test_validate_checks_the_data_without_running(tmp_path, text_dataset, tiny_bert):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    ok = cli("validate", str(tmp_path / "c.yaml"), "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout.strip().splitlines()[-1])
    assert report["success"] and report["rows"] == {"train": 42, "val": 12, "test": 18}
    (text_dataset / "test.csv").write_text((text_dataset / "test.csv").read_text() + "a lone rock on the shore,mineral\n")
    bad = cli("validate", str(tmp_path / "c.yaml"))
    assert bad.returncode == 1 and "test.csv line 20" in bad.stderr and "labels from the known set" in bad.stdout
    assert not (tmp_path / "mlruns").exists()  # nothing logged
