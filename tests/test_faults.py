"""Faults injected and survived (issue 14): a full disk under the feature cache and the checkpoints, the worker
killed during the train step on a work pool, the MLflow server stopped mid-run. Each test injects the real fault
(a small tmpfs, SIGKILL, a stopped server) and checks that nothing is lost and nothing is half-registered."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tlops.backbones import load_backbone
from tlops.cache import FeatureCache
from tlops.checkpoint import latest_checkpoint, read_checkpoint, save_checkpoint
from tlops.diskspace import DiskFull
from tlops.features import cached_features

KIB = 1024


@contextlib.contextmanager
def tmpfs(folder: Path, size_kib: int):
    """A real size-limited filesystem at `folder` (root only: CI and this machine run tests as root)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(folder: Path, leave_kib: int) -> Path:
    """Leave about `leave_kib` free on `folder`'s filesystem: one filler file, removed to free the space again."""
    import shutil

    filler = folder / "filler"
    free = shutil.disk_usage(folder).free
    filler.write_bytes(b"\0" * max(free - leave_kib * KIB, 0))
    return filler


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "filler")


def test_full_disk_under_the_cache_keeps_no_shard_and_the_next_run_recomputes(tiny_bert, tmp_path):
    texts = [f"sentence number {i} about the river and the market" for i in range(300)]  # ~40 KiB of shard
    with tmpfs(tmp_path / "cache", 256) as root:
        filler = _fill(root, leave_kib=12)
        with pytest.raises(DiskFull) as err:
            cached_features(load_backbone(f"hf:{tiny_bert}"), texts, FeatureCache(root))
        msg = str(err.value)
        assert str(root) in msg and "features.cache_dir" in msg and "Free space" in msg, msg
        leftovers = [f for f in _files(root) if f.endswith(".npz") or "/.tmp-" in f]
        assert not leftovers, f"a failed write left files behind: {leftovers}"

        filler.unlink()  # space freed: the next run recomputes every row, and then finds them all
        x1, s1 = cached_features(load_backbone(f"hf:{tiny_bert}"), texts, FeatureCache(root))
        assert (s1.hits, s1.misses, s1.corrupt_shards) == (0, len(texts), [])
        b = load_backbone(f"hf:{tiny_bert}")
        x2, s2 = cached_features(b, texts, FeatureCache(root))
        assert (s2.hits, s2.misses, b.calls) == (len(texts), 0, 0)
        np.testing.assert_array_equal(x1, x2)


def _weights(value: float, rows: int = 64) -> dict[str, dict[str, torch.Tensor]]:
    return {"model.safetensors": {"w": torch.full((rows, 64), value)}}  # 16 KiB at 64 rows


def test_full_disk_under_the_checkpoints_keeps_the_last_complete_one(tmp_path):
    with tmpfs(tmp_path / "work", 512) as root:
        ckpts = root / "checkpoints" / "run"
        save_checkpoint(ckpts, "best", _weights(1.0), meta={"epoch": 1})
        save_checkpoint(ckpts, "step-00000010", _weights(1.0), meta={"step": 10}, state={"opt": torch.zeros(64, 64)})
        filler = _fill(root, leave_kib=20)

        # where the disk fills: the manifest after the weights (replacing `best`), torch.save's trainer state,
        # safetensors' weights (each library reports it its own way)
        for name, rows, state in (("best", 64, None), ("step-00000020", 64, {"opt": torch.zeros(256, 64)}), ("step-00000030", 128, None)):
            with pytest.raises(DiskFull) as err:
                save_checkpoint(ckpts, name, _weights(2.0, rows), meta={"step": 20}, state=state)
            msg = str(err.value)
            assert str(ckpts) in msg and "execution.work_dir" in msg and "Free space" in msg, msg
        assert not [p.name for p in ckpts.iterdir() if p.name.startswith((".tmp-", ".old-"))], list(ckpts.iterdir())
        best = read_checkpoint(ckpts / "best")
        assert best is not None and best.meta == {"epoch": 1}, "the failed replace lost the previous best checkpoint"
        assert float(best.tensors("model.safetensors")["w"][0, 0]) == 1.0
        latest, skipped = latest_checkpoint(ckpts)
        assert latest is not None and latest.path.name == "step-00000010" and skipped == []  # what a resume picks

        filler.unlink()
        save_checkpoint(ckpts, "step-00000020", _weights(2.0), meta={"step": 20}, state={"opt": torch.zeros(256, 64)})
        assert latest_checkpoint(ckpts)[0].meta == {"step": 20}
