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


DATA_CHECK_PATH = """
import sys
from flows.cli import app
from flows.commands.run import check_data_first as _check_data_first
from flows.console import quiet_third_party
from tlops.config import load_config
good, bad = sys.argv[1:3]
cfg = load_config(good, [])
quiet_third_party()
assert _check_data_first(cfg, good)["report"]["success"]  # what `tlops run` does before Prefect and MLflow
try:
    app(["validate", bad])  # `tlops validate` on a dataset with an empty text
except SystemExit as e:
    assert e.code == 1, e.code
print(sorted(m for m in ("torch", "sklearn", "transformers", "prefect", "mlflow") if m in sys.modules))
"""


def test_the_data_check_path_imports_neither_torch_nor_sklearn(tmp_path):
    """Data errors come before the heavy imports (issue 13, fail fast): `tlops run`'s check ahead of Prefect and
    `tlops validate` load the config, open the dataset and run the GX rules without torch, scikit-learn,
    transformers, Prefect or MLflow."""
    import yaml

    from tests.helpers import make_text_dataset, tiny_config

    good = make_text_dataset(tmp_path / "good")
    bad = make_text_dataset(tmp_path / "bad")
    rows = (bad / "train.csv").read_text().splitlines()
    rows[3] = ",animal"  # an empty text on line 4
    (bad / "train.csv").write_text("\n".join(rows) + "\n")
    for name, data in (("good", good), ("bad", bad)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path, data, tmp_path / "no-backbone-needed")))
    out = subprocess.run([sys.executable, "-c", DATA_CHECK_PATH, str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "non-empty text" in out.stdout + out.stderr  # the bad dataset was checked and refused
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:]
