"""The backbone contract every kind implements, and the per-modality parts the kinds share.

Callers (feature extraction, the cache, fine-tuning, packaging) use only what `Backbone` lists; nothing
branches on `modality`: how items are encoded, batched, hashed for the cache and augmented is the
backbone's business. tests/unit/test_backbone_contract.py checks every registered kind against it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch

from tlops.backbones.augment import augment_audio, augment_image
from tlops.errors import BackboneError

SPEC_FILE = "backbone.json"  # in every export: {"kind": ..., what that kind's from_export needs}
PRECISIONS = ("fp32", "bf16")  # feature extraction's math (backbone.precision)

log = logging.getLogger(__name__)


class Backbone(Protocol):
    kind: str  # registry kind id ("hf", "timm", "torchvision", "efficientnet-lite0", "speech-embedding"); backbone.json's "kind"
    modality: str  # "text" | "image" | "audio"
    num_features: int  # D of embed()'s (B, D) output
    found_via: str  # where the weights came from ("local folder", "hugging face cache", "pip package ...")
    calls: int  # embed() calls so far; a fully cached run leaves it at 0
    fine_tuned: bool  # set by fine-tuning: export() then writes the trained weights and the package identity hashes them
    layers: list[int]  # hidden states pooled and concatenated (text); [-1] elsewhere
    pooling: str  # "mean" | "cls"
    max_length: int | None  # token limit (text); None elsewhere
    precision: str  # "fp32" | "bf16": the math `embed_all` runs `embed` in (set_precision); part of identity() when bf16

    @property
    def model(self) -> torch.nn.Module:
        """The trainable torch module, loaded on first use (a fully cached run never loads weights)."""

    @property
    def loaded(self) -> bool:
        """Whether `model` has been loaded yet."""

    def identity(self) -> dict[str, Any]:
        """Everything that changes the features: source, weights sha256, layers/pooling, preprocessing (JSON-able)."""

    def encode(self, items: Sequence[str]) -> list:
        """Cheap per-item encoding kept in memory for a whole split: token ids (text) or the file paths
        (image/audio: decoding happens in `collate`, so memory stays one batch deep)."""

    def lengths(self, encoded: list) -> list[int] | None:
        """Per-item lengths for length-sorted / bucketed batches (text); None when every item has the same size."""

    def collate(self, encoded: Sequence) -> Any:
        """Encoded items -> one model-ready batch (text: padded to the longest; files: decoded and preprocessed)."""

    def preprocess(self, items: Sequence[str]) -> Any:
        """Raw inputs (strings or file paths) -> one model-ready batch: `collate(encode(items))`."""

    def content(self, item: str) -> bytes:
        """What the feature cache hashes for an item: the text's UTF-8 bytes, or the file's bytes."""

    def augment(self, batch: Any, g: torch.Generator, flip: bool = True) -> Any:
        """Training-time augmentation of a collated batch; every random draw from `g`."""

    def embed(self, batch: Any) -> torch.Tensor:
        """A collated batch -> (B, num_features) float32 features."""

    def token_states(self, batch: Any) -> torch.Tensor:
        """Unpooled features (token-level tasks): a collated batch -> (B, T, num_features) float32, one row per
        position of the model's input, from the same `layers` that `embed` pools (text: position t is sub-word
        token t of `batch["input_ids"]`; rows where `attention_mask` is 0 are padding). Kinds without per-position
        features raise BackboneError (the BaseBackbone default)."""

    def frame_states(self, batch: Any) -> torch.Tensor:
        """Unpooled features of an audio backbone (frame-level tasks: speech recognition): a collated batch ->
        (B, T, num_features) float32, the frames that `embed` mean-pools (so `embed(b) == frame_states(b).mean(1)`), frame t
        covering the audio from `t * frame_hop` seconds for `frame_window` seconds (both attributes of a kind that has
        frames). Kinds without frames raise BackboneError (the BaseBackbone default)."""

    def parameter_groups(self) -> list[list[torch.nn.Parameter]]:
        """Every trainable parameter of `model` exactly once, grouped from input side to output side
        (freezing, discriminative LR)."""

    def export(self, out_dir: Path) -> None:
        """Write weights (safetensors), preprocessing files and backbone.json so `backbone_from_export` rebuilds it offline."""


class BaseBackbone:
    """Defaults every kind shares: the lazily loaded model, the embed() counter, preprocess = collate(encode())."""

    kind: str
    modality: str
    num_features: int
    found_via: str = ""
    calls: int = 0
    fine_tuned: bool = False
    _model: torch.nn.Module | None = None
    precision: str = "fp32"  # set by `set_precision` (load_backbone, backbone_from_export)
    precisions: tuple[str, ...] = PRECISIONS  # what this kind can run in (an ONNX Runtime graph: fp32 only)
    # The compute path's version: a kind bumps it when its forward's numerics change with the same weights (a fused or
    # reordered computation), so the feature cache keeps rows computed the old way apart from new ones.
    compute_version: int = 0

    def compute_identity(self) -> dict[str, Any]:
        """How the features are computed, for every kind's identity(): the compute-path version once the kind has bumped
        it, the precision when it is not fp32. Both are left out at their defaults, so caches written before they
        existed still hit."""
        out: dict[str, Any] = {}
        if self.compute_version:
            out["compute_version"] = self.compute_version
        if self.precision != "fp32":
            out["precision"] = self.precision
        return out

    _derived: tuple[tuple, torch.nn.Module] | None = None

    def derived_model(self, build) -> torch.nn.Module:
        """`build(model)` (e.g. a copy with BatchNorm folded into the convolutions), kept and rebuilt whenever a weight or
        statistic of the model changed since (an optimizer step or load_state_dict bumps the tensor's version counter;
        a swapped tensor or model has another id): fine-tuning's per-epoch validation sees the current weights. Built
        outside inference_mode, without autograd."""
        m = self.model
        key = (id(m), *((id(t), -1 if t.is_inference() else t._version) for t in (*m.parameters(), *m.buffers())))
        if self._derived is None or self._derived[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                self._derived = (key, build(m))
        return self._derived[1]

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            with torch.inference_mode(False):  # first use may be inside embed_all: weights must be normal, trainable tensors
                self._model = self._load_model()
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def preprocess(self, items: Sequence[str]) -> Any:
        return self.collate(self.encode(items))

    def token_states(self, batch: Any) -> torch.Tensor:
        raise BackboneError(f"the {self.kind!r} {self.modality} backbone gives no per-token features, so it cannot serve "
                            "a token-level task (token classification); use a Hugging Face text backbone (hf:<hub id or "
                            "model folder>)")

    def frame_states(self, batch: Any) -> torch.Tensor:
        raise BackboneError(f"the {self.kind!r} {self.modality} backbone gives no per-frame features, so it cannot serve a "
                            "frame-level task (speech recognition); use packaged:speech-embedding or a Hugging Face "
                            "wav2vec2/HuBERT folder (hf:<model folder>)")

    def write_spec(self, out_dir: Path, **fields: Any) -> None:
        """backbone.json: the kind and what its `from_export` needs, and the precision when not fp32 (read back by
        `backbone_from_export`, so predict and serve embed the way training did)."""
        extra = {"precision": self.precision} if self.precision != "fp32" else {}
        (out_dir / SPEC_FILE).write_text(json.dumps({"kind": self.kind, **fields, **extra}))


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 math natively: AVX-512 BF16 dot products or AMX tiles. Without them oneDNN emulates
    bf16, slower than fp32."""
    return any(bool(getattr(torch.cpu, f, lambda: False)()) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def set_precision(backbone: Backbone, precision: str) -> str:
    """Set the math `embed_all` runs `backbone.embed` in (tlops.features.autocast); returns the precision set. bf16 on
    a CPU without native bf16 falls back to fp32 with one warning, so the features (and the identity, and an export)
    say what was computed."""
    if precision not in PRECISIONS:
        raise BackboneError(f"backbone precision {precision!r} is not one of {', '.join(PRECISIONS)}; set backbone.precision "
                            "to fp32 (default) or bf16")
    offered = getattr(backbone, "precisions", PRECISIONS)
    if precision not in offered:
        raise BackboneError(f"the {backbone.kind!r} backbone runs only in {', '.join(offered)} (its graph runs as exported; "
                            f"torch autocast does not reach it), not {precision}; set backbone.precision: fp32")
    if precision == "bf16" and not cpu_has_bf16():
        log.warning("backbone.precision bf16: this CPU has no native bf16 math (AVX-512 BF16 or AMX), so features are "
                    "computed in fp32 (emulated bf16 is slower than fp32)")
        precision = "fp32"
    backbone.precision = precision
    return precision


class TextItems:
    """Items are strings: tokenised once per split (`tokenize`, unpadded), padded per batch in `collate`."""

    modality = "text"

    def encode(self, items: Sequence[str]) -> list:
        return self.tokenize(items)

    def lengths(self, encoded: list) -> list[int] | None:
        return [len(x) for x in encoded]

    def content(self, item: str) -> bytes:
        return item.encode("utf-8")  # text is its own content

    def augment(self, batch: Any, g: torch.Generator, flip: bool = True) -> Any:
        return batch


class FileItems:
    """Items are file paths, decoded batch by batch in `collate`; all items of a batch come out the same size."""

    def encode(self, items: Sequence[str]) -> list:
        return list(items)

    def lengths(self, encoded: list) -> list[int] | None:
        return None

    def content(self, item: str) -> bytes:
        return Path(item).read_bytes()  # the file's bytes, so a renamed file still hits the cache


class ImageFiles(FileItems):
    """Image files; augmentation: random resized crop + horizontal flip on the preprocessed tensor."""

    modality = "image"

    def augment(self, batch: Any, g: torch.Generator, flip: bool = True) -> Any:
        return augment_image(batch, g, flip=flip)


class AudioFiles(FileItems):
    """Audio files; augmentation: a random time shift along `time_axis` of the preprocessed input."""

    modality = "audio"
    time_axis = -1  # axis of time in the collated tensor (raw HF `input_values` always shift along the last one)

    def augment(self, batch: Any, g: torch.Generator, flip: bool = True) -> Any:
        return augment_audio(batch, g, time_axis=self.time_axis)
