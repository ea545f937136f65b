"""The core (`tlops/`) is plain Python: every module imports with Prefect and MLflow unimportable, and none
reaches into the orchestration layers (`flows/`, `tasks/`). Imports run one way: flows -> tasks -> tlops."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

BLOCKED = ("prefect", "mlflow", "flows", "tasks")

IMPORT_ALL = """
import importlib, pkgutil, sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` raises ImportError; importlib.util.find_spec(name) gives None
package = importlib.import_module({package!r})
failed = []
for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    try:
        importlib.import_module(m.name)
    except ImportError as e:
        failed.append(f"{{m.name}}: {{e}}")
print("\\n".join(failed) or "ok")
"""


def _import_all(package: str, cwd) -> list[str]:
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL.format(blocked=BLOCKED, package=package)], capture_output=True,
                         text=True, cwd=cwd, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()


def test_every_core_module_imports_without_prefect_mlflow_or_the_flows():
    lines = _import_all("tlops", REPO)
    assert lines[-1] == "ok", "core modules that need orchestration or tracking:\n" + "\n".join(lines)


def test_the_import_check_reports_a_module_that_needs_mlflow(tmp_path):
    (tmp_path / "fakecore").mkdir()
    (tmp_path / "fakecore" / "__init__.py").write_text("")
    (tmp_path / "fakecore" / "fine.py").write_text("import json\n")
    (tmp_path / "fakecore" / "tracked.py").write_text("import mlflow\n")
    lines = _import_all("fakecore", tmp_path)
    assert len(lines) == 1 and lines[0].startswith("fakecore.tracked:"), lines


def test_config_parsing_does_not_import_torch():
    """Strategy modules are imported to build the config schema; they keep torch out, so config errors stay fast."""
    code = ("import sys; from tlops.config import config_from_dict;"
            "config_from_dict({'data': {'path': 'd'}, 'backbone': {'name': 'hf:x'}, 'registry': {'model_name': 'm'},"
            " 'strategy': {'name': 'finetune'}}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.strip() == "False", out.stdout + out.stderr[-2000:]
