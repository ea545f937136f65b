"""What a run needs to be audited and reproduced: data md5 (DVC), git commit, package versions."""

from __future__ import annotations

import subprocess
import sys
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


def data_version(data_path: str | Path) -> dict:
    """DVC md5 of the tracked data (and whether the workspace matches it) + md5 of the dataset folder itself."""
    data_path = Path(data_path)
    info: dict = {"path": str(data_path), "dataset_md5": dataset_content_md5(data_path), "dvc_file": None,
                  "dvc_md5": None, "dvc_status": "untracked"}
    found = find_dvc_file(data_path)
    if found is None:
        return info
    dvc_file, tracked = found
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
    info.update(dvc_file=str(dvc_file), dvc_md5=outs[0].get("md5"))
    st = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", dvc_file.name], cwd=dvc_file.parent, capture_output=True, text=True, timeout=300)
    if st.returncode == 0:
        import json

        changes = json.loads(st.stdout or "{}")
        info["dvc_status"] = "clean" if not changes else json.dumps(changes)
    else:
        info["dvc_status"] = f"unknown: {st.stderr.strip()[:200]}"
    return info
