"""The `hf:<hub id or model folder>` backbone kind: the folder's preprocessor config says which modality the model
takes (hf_image.py, hf_audio.py; text otherwise, hf.py), and this module picks that class. Kept apart from hf.py,
which the image and audio backbones build on, so no backbone module imports one that imports it back."""

from __future__ import annotations

import json
from pathlib import Path

from tlops.backbones.hf import AUDIO_FILE, HFBackbone, HFTextBackbone, resolve_folder
from tlops.backbones.hf_audio import HFAudioBackbone, is_audio_folder
from tlops.backbones.hf_image import HFImageBackbone, is_image_folder
from tlops.backbones.registry import LoadOptions, register_backbone


def hf_backbone(name: str, opts: LoadOptions, folder: Path | None = None, found_via: str = "") -> HFBackbone:
    """The Hugging Face backbone for the modality the model folder's preprocessor config names."""
    if folder is None:
        folder, found_via = resolve_folder(name)
    if is_audio_folder(folder):
        return HFAudioBackbone(name, folder=folder, found_via=found_via, clip_seconds=opts.clip_seconds)
    if is_image_folder(folder):
        return HFImageBackbone(name, folder=folder, found_via=found_via, pooling=opts.pooling)
    return HFTextBackbone(name, layers=opts.layers or [-1], pooling=opts.pooling, max_length=opts.max_length,
                          folder=folder, found_via=found_via)


def _from_export(folder: Path, spec: dict, meta: dict) -> HFBackbone:
    """An exported folder is a Hugging Face model folder. Packages written before HF exports had a backbone.json
    keep the options in the package meta, and an audio clip length in tlops_audio.json."""
    options = spec if "pooling" in spec else meta["backbone"]
    clip = spec.get("clip_seconds")
    if clip is None and (folder / AUDIO_FILE).is_file():
        clip = json.loads((folder / AUDIO_FILE).read_text())["clip_seconds"]
    opts = LoadOptions(layers=options["layers"], pooling=options["pooling"], max_length=options["max_length"],
                       clip_seconds=1.0 if clip is None else clip)
    return hf_backbone(str(folder), opts)


@register_backbone("hf", "hf:<hub id or model folder>", from_export=_from_export)
def _load(rest: str, opts: LoadOptions) -> HFBackbone:
    return hf_backbone(rest, opts)
