"""timm and torchvision image backbones, with their own pretrained-weight loading.

Names: `timm:<model>` (timm's pretrained weights, from the Hugging Face hub) and
`torchvision:<model>` (the model's DEFAULT weights enum). Append `@<local weights file>` to load a
checkpoint from disk instead (safetensors or a torch state dict), e.g. offline or for fine-tuned weights.
The classifier is dropped: features are the pooled pre-logits, (B, num_features).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from tlops.backbones.base import BaseBackbone, ImageFiles
from tlops.backbones.registry import LoadOptions, register_backbone
from tlops.errors import BackboneError, DataError
from tlops.hashing import file_sha256

WEIGHTS_FILE = "model.safetensors"


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackboneError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _drop_classifier(model: nn.Module) -> int:
    """Replace the last Linear layer with Identity; return its input width (the feature size)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise BackboneError(f"{type(model).__name__}: no Linear classifier found to remove")
    parent = model.get_submodule(last.rsplit(".", 1)[0]) if "." in last else model
    width = parent.get_submodule(last.rsplit(".", 1)[-1]).in_features
    setattr(parent, last.rsplit(".", 1)[-1], nn.Identity())
    return width


def _state_sha256(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class ZooImageBackbone(ImageFiles, BaseBackbone):
    """One class for both zoos (kinds "timm" and "torchvision"): they differ only in how the model and its
    transform are built. The model is built at once (its feature width and transform come from it)."""

    def __init__(self, zoo: str, spec: str, image_size: int | None = None, headless: bool = False):
        """`headless`: the weights file was written by `export` (classifier already removed)."""
        self.zoo = self.kind = zoo
        self.model_name, _, weights = spec.partition("@")
        self.weights = Path(weights) if weights else None
        self.headless = headless
        self.image_size = image_size
        self.layers, self.pooling, self.max_length = [-1], "mean", None
        self.found_via = "local file" if self.weights else f"{zoo} pretrained weights"
        self.calls = 0
        self._model = self._build()
        self.num_features = _drop_classifier(self._model)
        if self.headless:
            self._model.load_state_dict(_load_state(self.weights))
        self._model.eval()
        self.transform = self._transform()

    def _build(self) -> nn.Module:
        try:
            if self.zoo == "timm":
                import timm

                if self.model_name not in timm.list_models():
                    raise BackboneError(f"timm:{self.model_name}: unknown model; see timm.list_models()")
                model = timm.create_model(self.model_name, pretrained=self.weights is None)
            else:
                import torchvision.models as tvm

                if self.model_name not in tvm.list_models():
                    raise BackboneError(f"torchvision:{self.model_name}: unknown model; valid: {', '.join(tvm.list_models()[:8])}, ...")
                model = tvm.get_model(self.model_name, weights=None if self.weights else "DEFAULT")
        except BackboneError:
            raise
        except Exception as e:  # hub unreachable, no cached weights
            raise BackboneError(
                f"{self.zoo}:{self.model_name}: pretrained weights could not be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                f"Offline, give a local checkpoint: {self.zoo}:{self.model_name}@/path/to/weights.safetensors") from None
        if self.weights is not None and not self.headless:
            model.load_state_dict(_load_state(self.weights))
        return model

    def _transform(self):
        if self.zoo == "timm":
            import timm.data

            over = {"input_size": (3, self.image_size, self.image_size)} if self.image_size else {}
            return timm.data.create_transform(**timm.data.resolve_data_config(over, model=self._model))
        from torchvision.transforms._presets import ImageClassification

        size = self.image_size or 224
        return ImageClassification(crop_size=size, resize_size=int(size * 256 / 224))  # torchvision's standard eval preset

    def identity(self) -> dict[str, Any]:
        weights = {self.weights.name: file_sha256(self.weights)} if self.weights else {"state_dict": _state_sha256(self._model)}
        return {"source": f"{self.zoo}:{self.model_name}", "architecture": self.model_name, "weights_sha256": weights,
                "layers": self.layers, "pooling": self.pooling, "preprocessing": {"transform": repr(self.transform)}}

    def collate(self, paths: Sequence[str]) -> torch.Tensor:
        """Decode to RGB, then the zoo's eval transform."""
        from PIL import Image

        out = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    out.append(self.transform(im.convert("RGB")))
            except (OSError, ValueError) as e:
                raise DataError(f"image {p} could not be decoded ({e}); replace or remove that file") from None
        return torch.stack(out)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self._model(batch).flatten(1).float()

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """Top-level children in definition order (stem, stages, head) that hold parameters."""
        return [ps for ps in (list(c.parameters()) for c in self._model.children()) if ps]

    def export(self, out_dir: Path) -> None:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self._model.state_dict().items()}, str(out_dir / WEIGHTS_FILE))
        self.write_spec(out_dir, model=self.model_name, image_size=self.image_size)


def _from_export(folder: Path, spec: dict, meta: dict) -> ZooImageBackbone:
    return ZooImageBackbone(spec["kind"], f"{spec['model']}@{folder / WEIGHTS_FILE}", image_size=spec["image_size"], headless=True)


def _loader(zoo: str):
    def load(rest: str, opts: LoadOptions) -> ZooImageBackbone:
        return ZooImageBackbone(zoo, rest, image_size=opts.image_size)

    return load


for _zoo in ("timm", "torchvision"):
    register_backbone(_zoo, f"{_zoo}:<model>[@weights file]", from_export=_from_export)(_loader(_zoo))
