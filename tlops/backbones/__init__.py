"""Backbones by name: `load_backbone("hf:<hub id or folder>", ...)`, and back from a model package.

Each backbone module registers its kind in `tlops.backbones.registry`; importing them all here makes the
table complete. (Their heavy dependencies, transformers / timm / torchvision / onnx, load lazily.)
"""

from __future__ import annotations

import json
from pathlib import Path

# each registers its kinds; this order is the order error messages list the name forms in
from tlops.backbones import hf_kind, vision_zoo, efficientnet_lite, speech_embedding, crepe, onnx_model  # noqa: F401, I001
from tlops.backbones.base import SPEC_FILE, Backbone, set_precision
from tlops.backbones.registry import LoadOptions, find_kind, get_kind, is_kind, list_kinds, name_forms, register_backbone
from tlops.errors import BackboneError


def load_backbone(name: str, layers: list[int] | None = None, pooling: str = "mean", max_length: int = 128,
                  image_size: int = 96, clip_seconds: float = 1.0, precision: str = "fp32") -> Backbone:
    """`hf:<hub id or folder>`, `timm:<model>[@weights]`, `torchvision:<model>[@weights]`, `packaged:<name>`, `onnx:<file>`.
    Each kind takes the options that apply to it. Unknown names fail with the valid forms. `precision`: the math
    feature extraction runs in, the same for every kind (`set_precision`)."""
    kind, rest = find_kind(name)
    backbone = kind.load(rest, LoadOptions(layers=layers, pooling=pooling, max_length=max_length, image_size=image_size,
                                           clip_seconds=clip_seconds))
    set_precision(backbone, precision)
    return backbone


def backbone_from_export(folder: Path, meta: dict) -> Backbone:
    """Rebuild the backbone a model package holds (written by `Backbone.export`), offline. backbone.json's
    `kind` picks the rebuilder; packages written before Hugging Face exports had one are HF folders whose
    options are in the package meta."""
    folder = Path(folder)
    spec_file = folder / SPEC_FILE
    spec = json.loads(spec_file.read_text()) if spec_file.is_file() else {"kind": "hf"}
    if not is_kind(spec.get("kind", "")):
        raise BackboneError(f"{spec_file}: unknown backbone kind {spec.get('kind')!r}; valid: {', '.join(list_kinds())}")
    backbone = get_kind(spec["kind"]).from_export(folder, spec, meta)
    set_precision(backbone, spec.get("precision", "fp32"))  # the precision its features were trained on
    return backbone


__all__ = ["Backbone", "LoadOptions", "backbone_from_export", "is_kind", "list_kinds", "load_backbone", "name_forms",
           "register_backbone"]
