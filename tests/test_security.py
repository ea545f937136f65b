"""Security rules that need no server: the MLflow pin excludes the advisories, model folders that
would run remote code or unpickle a checkpoint are refused, a tampered package is refused before
MLflow loads (runs) it."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# MLflow servers below this have unauthenticated file-read / path-traversal advisories (CVE-2026-2614 < 3.10.0)
MLFLOW_FLOOR = Version("3.10.0")


def test_mlflow_pin_excludes_the_advisories_and_the_installed_one_is_above_it():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    req = next(Requirement(d) for d in deps if Requirement(d).name == "mlflow")
    below = Version(f"{MLFLOW_FLOOR.major}.{MLFLOW_FLOOR.minor - 1}.99")
    assert not req.specifier.contains(below), f"pyproject admits vulnerable mlflow {below}: {req}"
    assert req.specifier.contains(MLFLOW_FLOOR), f"pyproject excludes the fixed mlflow {MLFLOW_FLOOR}: {req}"
    installed = Version(version("mlflow"))
    assert installed >= MLFLOW_FLOOR, f"installed mlflow {installed} < {MLFLOW_FLOOR}: pip install -U 'mlflow>={MLFLOW_FLOOR}'"
