"""Crash-safe training checkpoints.

Each checkpoint is a folder built under a temporary name, every file flushed to disk, then renamed
into place in one step; its manifest (written last) lists every file's sha256. A folder whose manifest
is missing or whose files do not match it (a half-written or damaged checkpoint) is never picked: the
loader falls back to the newest complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tlops.diskspace import space_for
from tlops.errors import interruption_behind
from tlops.hashing import sha256_file

MANIFEST = "manifest.json"
STATE_FILE = "trainer_state.pt"  # optimizer, scheduler, RNG: plain tensors/containers, loaded with weights_only


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]

    def tensors(self, file: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.path / file))

    def state(self) -> dict[str, Any]:
        return torch.load(self.path / STATE_FILE, weights_only=True, map_location="cpu")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(root: Path, name: str, tensors: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any],
                    state: dict[str, Any] | None = None) -> Path:
    """Write `root/name` atomically: safetensors files, optional trainer state, then the manifest; rename last.
    A full disk raises DiskFull (naming the folder and the setting that moves it) with nothing kept under `name`
    but the previous complete checkpoint of that name, if any."""
    root = Path(root)
    with space_for(root, f"training checkpoint {name!r}", "execution.work_dir"):
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
        try:
            for file, sd in tensors.items():
                # own copies: safetensors refuses tensors that share storage (tied weights)
                save_file({k: v.detach().cpu().clone().contiguous() for k, v in sd.items()}, str(tmp / file))
            if state is not None:
                with open(tmp / STATE_FILE, "wb") as f:  # our file object: a full disk stays visible as the OSError behind torch's error
                    torch.save(state, f)
            files = sorted(p.name for p in tmp.iterdir())
            for f in files:
                _fsync(tmp / f)
            manifest = {"name": name, "meta": meta, "files": {f: sha256_file(tmp / f) for f in files}}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            _fsync(tmp / MANIFEST)
            final = root / name
            if final.exists():  # replacing (e.g. `best`): move the old one aside first, then drop it
                old = Path(tempfile.mkdtemp(dir=root, prefix=".old-"))
                final.rename(old / name)
                try:
                    tmp.rename(final)
                except BaseException:
                    (old / name).rename(final)  # put the previous one back: never lose `best` to a failed replace
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(final)
            _fsync(root)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            stopped = interruption_behind(e)
            if stopped is not None and stopped is not e:
                raise stopped from None  # stopped from outside, not failed: callers close the run as KILLED
            raise
    return final


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at `path` if it is complete and every file matches its manifest; else None."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        for f, digest in manifest["files"].items():
            if sha256_file(path / f) != digest:
                return None
    except (OSError, ValueError, KeyError):
        return None
    return Checkpoint(path, manifest["meta"])


def latest_checkpoint(root: Path, prefix: str = "step-") -> tuple[Checkpoint | None, list[str]]:
    """(newest complete checkpoint named `prefix*`, names of the incomplete ones skipped on the way)."""
    root = Path(root)
    if not root.is_dir():
        return None, []
    skipped = []
    for path in sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)), reverse=True):
        ckpt = read_checkpoint(path)
        if ckpt is not None:
            return ckpt, skipped
        skipped.append(path.name)
    return None, skipped


def prune(root: Path, keep: int = 2, prefix: str = "step-") -> None:
    """Keep the newest `keep` complete checkpoints (verified); remove older ones, damaged ones (never picked
    anyway) and leftover temp folders."""
    root = Path(root)
    kept = 0
    for p in sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)), reverse=True):
        if kept < keep and read_checkpoint(p) is not None:
            kept += 1
        else:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.iterdir():
        if p.name.startswith((".tmp-", ".old-")):
            shutil.rmtree(p, ignore_errors=True)
