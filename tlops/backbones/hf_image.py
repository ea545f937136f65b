"""Hugging Face image backbones (ViT, ConvNeXt, ResNet, ...) through AutoModel + AutoImageProcessor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from tlops.backbones.base import ImageFiles
from tlops.backbones.hf import SAFE, HFBackbone
from tlops.errors import DataError


def is_image_folder(folder: Path) -> bool:
    f = folder / "preprocessor_config.json"
    if not f.is_file():
        return False
    cfg = json.loads(f.read_text())
    if "sampling_rate" in cfg:  # an audio feature extractor
        return False
    return "image_processor_type" in cfg or str(cfg.get("feature_extractor_type", "")).endswith(("ImageProcessor", "FeatureExtractor"))


class HFImageBackbone(ImageFiles, HFBackbone):
    def __init__(self, name: str, folder: Path | None = None, found_via: str = "", pooling: str = "mean"):
        super().__init__(name, folder, found_via)
        self.layers, self.pooling, self.max_length = [-1], pooling, None
        from transformers import AutoImageProcessor

        # the slow (PIL/numpy) processor: the fast one needs torchvision
        self.processor = AutoImageProcessor.from_pretrained(self.folder, use_fast=False, **SAFE)
        self.num_features = int(getattr(self.config, "hidden_size", None) or self.config.hidden_sizes[-1])

    def identity(self) -> dict[str, Any]:
        return {"source": f"hf:{self.name}", "architecture": type(self.config).__name__,
                "weights_sha256": self.weights_sha256(), "layers": self.layers, "pooling": self.pooling,
                "preprocessing": json.loads((self.folder / "preprocessor_config.json").read_text()), **self.compute_identity()}

    def collate(self, paths: Sequence[str]) -> torch.Tensor:
        """Decode to RGB, then the model's image processor."""
        from PIL import Image

        images = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            except Exception as e:
                raise DataError(f"image {p} could not be decoded ({e}); replace or remove that file") from None
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = self.model(pixel_values=batch).last_hidden_state
        if h.dim() == 4:  # CNNs: (B, C, H, W) -> spatial mean
            return h.mean(dim=(2, 3)).float()
        return (h[:, 0] if self.pooling == "cls" else h.mean(dim=1)).float()  # ViT-like: tokens

    def export_preprocessing(self, out_dir: Path) -> None:
        shutil.copy2(self.folder / "preprocessor_config.json", out_dir / "preprocessor_config.json")
