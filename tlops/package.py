"""The model package: backbone (safetensors + preprocessing files) + head (safetensors) + metadata.

This folder is what gets registered; `Predictor` turns it back into raw-input -> label predictions.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tlops.hashing import file_sha256
from tlops.modules.heads import ProbeHead

FORMAT_VERSION = 1
META_FILE = "tlops_model.json"


def save_package(out_dir: Path, backbone, head: ProbeHead, labels: list[str], extra: dict | None = None) -> Path:
    """Write atomically: build in a temp folder beside `out_dir`, then rename into place."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        backbone.export(tmp / "backbone")
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp / "head.safetensors"))
        meta = {
            "format": FORMAT_VERSION,
            "modality": backbone.modality,
            "backbone": {"layers": backbone.layers, "pooling": backbone.pooling, "max_length": backbone.max_length,
                         "identity": package_identity(backbone, tmp / "backbone")},
            "labels": list(labels),
            "head": head.spec,
            **(extra or {}),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def package_identity(backbone, exported: Path) -> dict:
    """The backbone identity as packaged. A fine-tuned backbone's weights are the exported files, so their
    sha256 replaces the pretrained one (kept as `fine_tuned_from`)."""
    identity = backbone.identity()
    if not backbone.fine_tuned:
        return identity
    weights = {f.name: file_sha256(f) for f in sorted(exported.glob("*.safetensors"))}
    return {**identity, "weights_sha256": weights, "fine_tuned_from": identity.get("weights_sha256")}


def package_manifest(package_dir: str | Path) -> dict[str, str]:
    """sha256 of every file of a package, by POSIX relative path: what an audit checks the registered copy against."""
    root = Path(package_dir)
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def manifest_digest(manifest: dict[str, str]) -> str:
    """One sha256 over a manifest (kept as a model version tag, so the manifest itself is checked too)."""
    import hashlib

    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


class Predictor:
    """Raw inputs -> labels, from a saved package; no cache, no tracking."""

    def __init__(self, package_dir: str | Path, batch_size: int = 64):
        from tlops.backbones import backbone_from_export

        root = Path(package_dir)
        self.meta = json.loads((root / META_FILE).read_text())
        self.backbone = backbone_from_export(root / "backbone", self.meta)
        spec = self.meta["head"]
        self.head = ProbeHead(spec["in_dim"], spec["n_classes"], kind=spec["kind"], hidden=spec["hidden"], dropout=spec["dropout"])
        self.head.load_state_dict(load_file(str(root / "head.safetensors")))
        self.head.eval()
        self.labels = self.meta["labels"]
        self.batch_size = batch_size

    def predict_proba(self, items: Sequence[str]) -> np.ndarray:
        from tlops.features import embed_all

        feats = embed_all(self.backbone, list(items), batch_size=self.batch_size)
        with torch.inference_mode():
            return torch.softmax(self.head(torch.from_numpy(feats)), dim=1).numpy()

    def predict(self, items: Sequence[str]) -> list[str]:
        if len(items) == 0:
            return []
        return [self.labels[i] for i in self.predict_proba(items).argmax(1)]


def as_items(model_input) -> list[str]:
    """Whatever a pyfunc or a server hands over (a list, a pandas Series or DataFrame, a numpy array, one
    string) as a list of raw inputs: a DataFrame's `text` or `path` column, else its first column."""
    import pandas as pd

    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        col = next((c for c in ("text", "path") if c in model_input.columns), model_input.columns[0])
        model_input = model_input[col]
    return [str(x) for x in list(model_input)]
