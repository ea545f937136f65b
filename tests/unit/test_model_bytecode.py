"""A registered model loaded directly by MLflow (`mlflow.pyfunc.load_model`, `mlflow models serve` on a local store)
runs its code in place, and Python writes `__pycache__/*.pyc` into the store (found by
tests/system/test_pasted_commands.py: every later `tlops predict`/`serve` then refused the model, 'the model's code
files differ'). tlops drops that bytecode from its checked copy: the recorded digest still matches, only the checked
sources run, and a changed source is still refused."""

from __future__ import annotations

import shutil
from pathlib import Path

from tlops.package import code_manifest, drop_bytecode, manifest_digest


def _model(root: Path) -> Path:
    (root / "code" / "tlops").mkdir(parents=True)
    (root / "artifacts").mkdir()
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "code" / "tlops" / "errors.py").write_text("class TlopsError(Exception): ...\n")
    (root / "artifacts" / "head.safetensors").write_bytes(b"\0" * 8)
    return root


def test_bytecode_written_by_a_direct_load_is_dropped_and_the_digest_still_matches(tmp_path):
    model = _model(tmp_path / "store")
    recorded = manifest_digest(code_manifest(model))  # as registration tags it (tlops.code_sha256)
    for pyc in ("__pycache__/pyfunc_model.cpython-311.pyc", "code/tlops/__pycache__/errors.cpython-311.pyc"):
        (model / pyc).parent.mkdir(parents=True, exist_ok=True)
        (model / pyc).write_bytes(b"planted or compiled")
    assert manifest_digest(code_manifest(model)) != recorded  # what made every later check refuse the model
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert drop_bytecode(copy) == ["__pycache__/pyfunc_model.cpython-311.pyc", "code/tlops/__pycache__/errors.cpython-311.pyc"]
    assert manifest_digest(code_manifest(copy)) == recorded and not list(copy.rglob("*.pyc"))
    assert drop_bytecode(copy) == []
    (copy / "code" / "tlops" / "errors.py").write_text("import os; os.system('x')\n")  # a changed source is still caught
    assert manifest_digest(code_manifest(copy)) != recorded


def _top_level_imports(module: str) -> set[str]:
    """The modules `module` imports when it is imported (module level, TYPE_CHECKING blocks left out), transitively
    through tlops's own modules."""
    import ast
    import importlib.util

    seen, todo, found = set(), [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # `from tlops.x import Name`: a name, not a module
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        tree = ast.parse(Path(spec.origin).read_text())
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for sub in ast.walk(node) if isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Try)) else ():
                names = [a.name for a in sub.names] if isinstance(sub, ast.Import) else \
                    [sub.module] if isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0 else []
                for n in names:
                    found.add(n)
                    if n.startswith("tlops"):
                        todo += [n, *(f"{n}.{a.name}" for a in getattr(sub, "names", []) if isinstance(sub, ast.ImportFrom))]
    return found


def test_the_verification_path_of_tlops_package_imports_no_torch():
    """`tlops predict`, `serve` and `audit` check a package's files with tlops.package's manifests before loading it:
    importing tlops.package no longer imports torch (2.5 s of `import tasks.audit`'s 5.3 s, -X importtime); writing
    or loading a package imports it where it needs it."""
    imported = _top_level_imports("tlops.package")
    assert "tlops.hashing" in imported and "numpy" in imported  # the walk sees its imports
    assert not {m for m in imported if m.split(".")[0] in ("torch", "safetensors", "transformers")} and "tlops.modules.heads" not in imported
