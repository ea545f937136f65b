"""Backbone registry: `load_backbone("hf:<hub id or folder>", ...)`. Unknown prefixes fail with the valid list."""

from __future__ import annotations

import json
from pathlib import Path

from tlops.backbones.base import Backbone
from tlops.errors import BackboneError

PREFIXES = ("hf", "timm", "torchvision", "packaged")
PACKAGED = ("efficientnet-lite0", "speech-embedding")


def load_backbone(name: str, layers: list[int] | None = None, pooling: str = "mean", max_length: int = 128,
                  image_size: int = 96, clip_seconds: float = 1.0) -> Backbone:
    prefix, _, rest = name.partition(":")
    if not rest or prefix not in PREFIXES:
        raise BackboneError(
            f"unknown backbone name {name!r}; valid forms: " + ", ".join(f"'{p}:<...>'" for p in PREFIXES)
            + " (e.g. hf:sentence-transformers/all-MiniLM-L6-v2 or hf:/path/to/model_folder)"
        )
    if prefix == "hf":
        from tlops.backbones.hf import HFTextBackbone, resolve_folder
        from tlops.backbones.hf_audio import HFAudioBackbone, is_audio_folder
        from tlops.backbones.hf_image import HFImageBackbone, is_image_folder

        folder, found_via = resolve_folder(rest)
        # the folder's preprocessor config says what modality the model takes
        if is_audio_folder(folder):
            return HFAudioBackbone(rest, folder=folder, found_via=found_via, clip_seconds=clip_seconds)
        if is_image_folder(folder):
            return HFImageBackbone(rest, folder=folder, found_via=found_via, pooling=pooling)
        return HFTextBackbone(rest, layers=layers or [-1], pooling=pooling, max_length=max_length, folder=folder, found_via=found_via)
    if prefix in ("timm", "torchvision"):
        from tlops.backbones.vision_zoo import ZooImageBackbone

        return ZooImageBackbone(prefix, rest, image_size=image_size)
    if rest == "efficientnet-lite0":
        from tlops.backbones.efficientnet_lite import EfficientNetLiteBackbone

        return EfficientNetLiteBackbone(image_size=image_size)
    if rest == "speech-embedding":
        from tlops.backbones.speech_embedding import SpeechEmbeddingBackbone

        return SpeechEmbeddingBackbone(clip_seconds=clip_seconds)
    raise BackboneError(f"unknown packaged backbone {name!r}; valid: " + ", ".join(f"packaged:{p}" for p in PACKAGED))


def backbone_from_export(folder: Path, meta: dict) -> Backbone:
    """Rebuild the backbone a model package holds (written by `Backbone.export`), offline."""
    kind_file = folder / "backbone.json"
    if kind_file.is_file():
        kind = json.loads(kind_file.read_text())
        if kind["kind"] == "efficientnet-lite0":
            from tlops.backbones.efficientnet_lite import WEIGHTS_FILE, EfficientNetLiteBackbone

            return EfficientNetLiteBackbone(weights=folder / WEIGHTS_FILE, image_size=kind["image_size"], source=f"package:{folder}")
        if kind["kind"] in ("timm", "torchvision"):
            from tlops.backbones.vision_zoo import WEIGHTS_FILE as ZOO_WEIGHTS
            from tlops.backbones.vision_zoo import ZooImageBackbone

            return ZooImageBackbone(kind["kind"], f"{kind['model']}@{folder / ZOO_WEIGHTS}", image_size=kind["image_size"], headless=True)
        if kind["kind"] == "speech-embedding":
            from tlops.backbones.speech_embedding import SpeechEmbeddingBackbone

            return SpeechEmbeddingBackbone(clip_seconds=kind["clip_seconds"], onnx_path=folder / "speech-embedding.onnx",
                                           cnn_weights=folder / "cnn.safetensors", source=f"package:{folder}")
        raise BackboneError(f"{kind_file}: unknown backbone kind {kind['kind']!r}")
    from tlops.backbones.hf import HFTextBackbone
    from tlops.backbones.hf_audio import HFAudioBackbone, is_audio_folder
    from tlops.backbones.hf_image import HFImageBackbone, is_image_folder

    b = meta["backbone"]
    if is_audio_folder(folder):
        clip = json.loads((folder / "tlops_audio.json").read_text())["clip_seconds"]
        return HFAudioBackbone(str(folder), clip_seconds=clip)
    if is_image_folder(folder):
        return HFImageBackbone(str(folder), pooling=b["pooling"])
    return HFTextBackbone(str(folder), layers=b["layers"], pooling=b["pooling"], max_length=b["max_length"])


__all__ = ["Backbone", "load_backbone", "PREFIXES"]
