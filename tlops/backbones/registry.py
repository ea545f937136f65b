"""The table of backbone kinds, filled by each backbone module registering itself (timm's `@register_model`).

A kind says which names it accepts (`hf:<...>` any name after the prefix, `packaged:efficientnet-lite0`
exactly that one), how to load one from a name, and how to rebuild one from an exported folder (the
`kind` in that folder's backbone.json picks the entry). `tlops.backbones` imports every backbone
module, so the table is complete once that package is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tlops.backbones.base import Backbone
from tlops.errors import BackboneError

WILDCARD = "<...>"
EXAMPLES = " (e.g. hf:sentence-transformers/all-MiniLM-L6-v2 or hf:/path/to/model_folder)"


@dataclass(frozen=True)
class LoadOptions:
    """The options `load_backbone` passes on; each kind reads those that apply to it."""

    layers: list[int] | None = None  # hidden states to pool (text); None: the last
    pooling: str = "mean"
    max_length: int = 128  # token limit (text)
    image_size: int = 96  # input side (packaged and zoo image models)
    clip_seconds: float = 1.0  # clip length (audio)


Loader = Callable[[str, LoadOptions], Backbone]  # (name after the prefix, options) -> backbone
Rebuilder = Callable[[Path, dict, dict], Backbone]  # (exported folder, its backbone.json, package meta) -> backbone


@dataclass(frozen=True)
class BackboneKind:
    kind: str  # id written to backbone.json
    prefix: str  # "hf", "timm", "torchvision", "packaged"
    name: str | None  # the one name after the prefix it accepts; None: any (`prefix:<...>`)
    load: Loader
    from_export: Rebuilder

    @property
    def form(self) -> str:
        return f"{self.prefix}:{self.name or WILDCARD}"


_KINDS: dict[str, BackboneKind] = {}


def register_backbone(kind: str, name: str, from_export: Rebuilder) -> Callable[[Loader], Loader]:
    """Decorator for a kind's loader. `name` is the form it accepts: `prefix:<...>` (anything after the
    prefix, given to the loader) or `prefix:exact-name`."""
    prefix, _, rest = name.partition(":")
    if not prefix or not rest:
        raise ValueError(f"backbone kind {kind!r}: name form {name!r} must look like 'prefix:<...>' or 'prefix:name'")

    def add(load: Loader) -> Loader:
        entry = BackboneKind(kind, prefix, None if rest.startswith("<") else rest, load, from_export)
        if kind in _KINDS:
            raise ValueError(f"backbone kind {kind!r} registered twice ({_KINDS[kind].form} and {entry.form})")
        clash = [k.kind for k in _KINDS.values() if k.prefix == prefix and (k.name is None or entry.name is None or k.name == entry.name)]
        if clash:
            raise ValueError(f"backbone kind {kind!r}: name form {entry.form} overlaps kind {clash[0]!r}")
        _KINDS[kind] = entry
        return load

    return add


def list_kinds() -> list[str]:
    """Registered kind ids, in registration order."""
    return list(_KINDS)


def is_kind(kind: str) -> bool:
    return kind in _KINDS


def name_forms() -> list[str]:
    """The name forms `load_backbone` accepts, e.g. ['hf:<...>', ..., 'packaged:speech-embedding']."""
    return [k.form for k in _KINDS.values()]


def get_kind(kind: str) -> BackboneKind:
    try:
        return _KINDS[kind]
    except KeyError:
        raise BackboneError(f"unknown backbone kind {kind!r}; valid: {', '.join(_KINDS)}") from None


def find_kind(name: str) -> tuple[BackboneKind, str]:
    """(the kind that accepts `name`, the part after its prefix). Fails with the valid forms."""
    prefix, _, rest = name.partition(":")
    entries = [k for k in _KINDS.values() if k.prefix == prefix]
    if not rest or not entries:
        raise BackboneError(f"unknown backbone name {name!r}; valid forms: " + ", ".join(f"'{f}'" for f in name_forms()) + EXAMPLES)
    for k in entries:
        if k.name is None or k.name == rest:
            return k, rest
    raise BackboneError(f"unknown {prefix} backbone {name!r}; valid: " + ", ".join(k.form for k in entries))
