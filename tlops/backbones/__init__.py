"""Backbone registry: `load_backbone("hf:<hub id or folder>", ...)`. Unknown prefixes fail with the valid list."""

from __future__ import annotations

from tlops.backbones.base import Backbone
from tlops.errors import BackboneError

PREFIXES = ("hf",)


def load_backbone(name: str, layers: list[int] | None = None, pooling: str = "mean", max_length: int = 128) -> Backbone:
    prefix, _, rest = name.partition(":")
    if not rest or prefix not in PREFIXES:
        raise BackboneError(
            f"unknown backbone name {name!r}; valid forms: " + ", ".join(f"'{p}:<...>'" for p in PREFIXES)
            + " (e.g. hf:sentence-transformers/all-MiniLM-L6-v2 or hf:/path/to/model_folder)"
        )
    if prefix == "hf":
        from tlops.backbones.hf import HFTextBackbone

        return HFTextBackbone(rest, layers=layers or [-1], pooling=pooling, max_length=max_length)
    raise AssertionError("unreachable")


__all__ = ["Backbone", "load_backbone", "PREFIXES"]
