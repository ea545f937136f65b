"""Hugging Face image backbones (ViT, ConvNeXt, ResNet, ...) through AutoModel + AutoImageProcessor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from tlops.backbones.hf import WEIGHT_SUFFIXES, _weight_files, file_sha256, input_to_output_groups, resolve_folder
from tlops.errors import BackboneError, DataError


def is_image_folder(folder: Path) -> bool:
    f = folder / "preprocessor_config.json"
    if not f.is_file():
        return False
    cfg = json.loads(f.read_text())
    return "image_processor_type" in cfg or str(cfg.get("feature_extractor_type", "")).endswith(("ImageProcessor", "FeatureExtractor")) and "sampling_rate" not in cfg


class HFImageBackbone:
    modality = "image"

    def __init__(self, name: str, folder: Path | None = None, found_via: str = "", pooling: str = "mean"):
        self.name = name
        self.folder, self.found_via = (folder, found_via) if folder else resolve_folder(name)
        self.layers, self.pooling, self.max_length = [-1], pooling, None
        from transformers import AutoConfig, AutoImageProcessor

        self.config = AutoConfig.from_pretrained(self.folder)
        # the slow (PIL/numpy) processor: the fast one needs torchvision
        self.processor = AutoImageProcessor.from_pretrained(self.folder, use_fast=False)
        self.num_features = int(getattr(self.config, "hidden_size", None) or self.config.hidden_sizes[-1])
        self._weights = _weight_files(self.folder)
        if not self._weights:
            raise BackboneError(f"hf:{name}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {self.folder}")
        self._model = None
        self.calls = 0

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            from transformers import AutoModel

            self._model = AutoModel.from_pretrained(self.folder).eval()
        return self._model

    def identity(self) -> dict[str, Any]:
        return {"source": f"hf:{self.name}", "architecture": type(self.config).__name__,
                "weights_sha256": {f.name: file_sha256(f) for f in self._weights}, "layers": self.layers, "pooling": self.pooling,
                "preprocessing": json.loads((self.folder / "preprocessor_config.json").read_text())}

    def preprocess(self, items: Sequence[str]) -> torch.Tensor:
        from PIL import Image

        images = []
        for p in items:
            try:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            except Exception as e:
                raise DataError(f"image {p} could not be decoded ({e}); replace or remove that file") from None
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.model(pixel_values=batch)
        h = out.last_hidden_state
        if h.dim() == 4:  # CNNs: (B, C, H, W) -> spatial mean
            return h.mean(dim=(2, 3)).float()
        return (h[:, 0] if self.pooling == "cls" else h.mean(dim=1)).float()  # ViT-like: tokens

    def parameter_groups(self) -> list[list[torch.nn.Parameter]]:
        return input_to_output_groups(self.model)

    def export(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.folder / "config.json", out_dir / "config.json")
        shutil.copy2(self.folder / "preprocessor_config.json", out_dir / "preprocessor_config.json")
        if all(f.suffix == ".safetensors" for f in self._weights):
            for f in self._weights:
                shutil.copy2(f, out_dir / f.name)
        else:
            self.model.save_pretrained(out_dir, safe_serialization=True)
