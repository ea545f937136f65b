"""What a run needs to be audited and reproduced: data md5 (DVC), git commit, package versions."""

from __future__ import annotations

import configparser
import hashlib
import os
import subprocess
from importlib import metadata
from pathlib import Path

from tlops.data.dataset import dataset_content_md5
from tlops.data.versions import dir_entries, dir_md5, store_version
from tlops.errors import DataError
from tlops.text_files import parse_yaml, read_utf8

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


def data_version(data_path: str | Path, store_in: str | Path | None = None) -> dict:
    """DVC md5 of the tracked data (and whether the workspace matches it), md5s of the dataset folder itself,
    and, with `store_in` (a DVC cache directory), that folder stored there as a DVC version an audit can
    restore. The DVC md5s are computed here instead of running `dvc status` (seconds of start-up per run);
    a test checks them against a real `dvc add`."""
    data_path = Path(data_path)
    entries = dir_entries(data_path)
    info: dict = {"path": str(data_path), "dataset_md5": dataset_content_md5(data_path), "version_md5": dir_md5(data_path, entries),
                  "version_store": None, "dvc_file": None, "dvc_md5": None, "workspace_md5": None, "dvc_status": "untracked"}
    if store_in is not None:
        info["version_store"] = str(Path(store_in).resolve())
        store_version(data_path, Path(store_in), entries)
    found = find_dvc_file(data_path)
    if found is None:
        return info
    dvc_file, tracked = found
    meta = parse_yaml(read_utf8(dvc_file, DataError), str(dvc_file), DataError,  # beside the user's data: read bounded
                      "fix it, or run `dvc add` on the data folder again")
    outs = (meta.get("outs") if isinstance(meta, dict) else None) or [{}]
    outs = outs if isinstance(outs, list) and isinstance(outs[0], dict) else [{}]
    workspace = dir_md5(tracked) if tracked.is_dir() else hashlib.md5(tracked.read_bytes()).hexdigest()
    info.update(dvc_file=str(dvc_file), dvc_md5=outs[0].get("md5"), workspace_md5=workspace,
                dvc_status="clean" if workspace == outs[0].get("md5") else "modified: data differs from the md5 in " + dvc_file.name)
    return info


def default_dvc_cache(repo_root: Path) -> Path | None:
    """This repository's DVC cache (what `dvc cache dir` answers: `cache.dir` of .dvc/config, overridden by
    .dvc/config.local, relative to .dvc; default .dvc/cache), or None outside a DVC repository. Read here
    rather than through `dvc.repo.Repo`, whose import costs ~0.6 s of every run (tests compare the two)."""
    dvc_dir = repo_root / ".dvc"
    if not dvc_dir.is_dir():
        return None
    cache = dvc_dir / "cache"
    for name in ("config", "config.local"):
        parser = configparser.ConfigParser()
        parser.read(dvc_dir / name)
        if parser.has_option("cache", "dir"):
            cache = dvc_dir / parser.get("cache", "dir").strip("'\"")
    return Path(os.path.abspath(cache))
