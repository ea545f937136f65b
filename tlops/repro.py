"""What a run needs to be audited and reproduced: data md5 (DVC), git commit, package versions."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

import yaml

from tlops.data.dataset import dataset_content_md5

PACKAGES = ("tlops", "torch", "transformers", "safetensors", "scikit-learn", "numpy", "pandas",
            "great_expectations", "prefect", "mlflow", "dvc", "pydantic")


def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def git_commit(cwd: str | Path = ".") -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
    return {"commit": head.stdout.strip(), "dirty": dirty}


def find_dvc_file(data_path: Path) -> tuple[Path, Path] | None:
    """The `.dvc` file tracking `data_path` or one of its parents, and the tracked folder."""
    p = data_path.resolve()
    for d in [p, *p.parents]:
        f = d.parent / f"{d.name}.dvc"
        if f.is_file():
            return f, d
    return None


def dvc_dir_md5(folder: Path) -> str:
    """The md5 DVC 3 gives a tracked folder (`<md5>.dir`): md5 of the sorted JSON list of its files' md5s.

    Computed here instead of running `dvc status` (seconds of start-up per run); a test checks it
    against a real `dvc add`.
    """
    entries = [{"md5": hashlib.md5(p.read_bytes()).hexdigest(), "relpath": p.relative_to(folder).as_posix()}
               for p in folder.rglob("*") if p.is_file()]
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def data_version(data_path: str | Path) -> dict:
    """DVC md5 of the tracked data (and whether the workspace matches it) + md5 of the dataset folder itself."""
    data_path = Path(data_path)
    info: dict = {"path": str(data_path), "dataset_md5": dataset_content_md5(data_path), "dvc_file": None,
                  "dvc_md5": None, "workspace_md5": None, "dvc_status": "untracked"}
    found = find_dvc_file(data_path)
    if found is None:
        return info
    dvc_file, tracked = found
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
    workspace = dvc_dir_md5(tracked) if tracked.is_dir() else hashlib.md5(tracked.read_bytes()).hexdigest()
    info.update(dvc_file=str(dvc_file), dvc_md5=outs[0].get("md5"), workspace_md5=workspace,
                dvc_status="clean" if workspace == outs[0].get("md5") else "modified: data differs from the md5 in " + dvc_file.name)
    return info
