"""The backbone contract every modality implements."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import torch


class Backbone(Protocol):
    modality: str  # "text" | "image" | "audio"
    num_features: int  # D of embed()'s (B, D) output

    def identity(self) -> dict[str, Any]:
        """Everything that changes the features: source, weights sha256, layers/pooling, preprocessing."""

    def preprocess(self, items: Sequence[str]) -> Any:
        """Raw inputs (strings or file paths) -> one model-ready batch."""

    def embed(self, batch: Any) -> torch.Tensor:
        """A preprocessed batch -> (B, D) float32 features."""

    def parameter_groups(self) -> list[list[torch.nn.Parameter]]:
        """Trainable parameters grouped from input side to output side (freezing, discriminative LR)."""

    def export(self, out_dir: Path) -> None:
        """Write weights (safetensors) and preprocessing files so `from_export` rebuilds it offline."""
