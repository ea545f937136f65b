"""A semantic segmenter on a tlops image backbone: torchvision's LR-ASPP head (`LRASPPHead`, as in
`lraspp_mobilenet_v3_large`) on the backbone's multi-scale maps (`feature_maps`: the stride-8 map as its "low" input,
the stride-32 map as its "high" one), logits upsampled bilinearly to the image. Nothing of the head is written here.

Training (`fit`): cross-entropy per pixel (255 = ignore), AdamW on the head (`head_lr`) and, when fine-tuned, the
backbone's top `trainable` groups (`backbone_lr`); batch-norm statistics frozen; a horizontal flip that moves the mask
with the image; warm-up then cosine decay; the epoch with the best val mIoU kept. A frozen backbone's maps are computed
once (with the flipped images'). Images are resized to `image_size` x `image_size` for the network and predictions
resized back (nearest) to each image's own size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tlops.errors import ConfigError

IGNORE = 255


@dataclass
class SegmenterConfig:
    image_size: int = 128
    inter_channels: int = 64
    epochs: int = 8
    batch_size: int = 8
    head_lr: float = 3e-3
    backbone_lr: float = 3e-4
    weight_decay: float = 1e-4
    trainable: str | int = 0
    warmup: float = 0.1
    flip: bool = True
    seed: int = 0


class SegmentationNet(nn.Module):
    def __init__(self, backbone, n_classes: int, inter_channels: int):
        from torchvision.models.segmentation.lraspp import LRASPPHead

        super().__init__()
        if not hasattr(backbone, "feature_maps"):
            raise ConfigError(f"backbone {getattr(backbone, 'source', backbone)} has no multi-scale feature maps (feature_maps), "
                              "which a segmentation head needs; use packaged:efficientnet-lite0")
        self.net = backbone.model  # a submodule: its parameters are the segmenter's
        self._maps = backbone.feature_maps
        ch = backbone.feature_channels
        self.head = LRASPPHead(ch[0], ch[-1], n_classes, inter_channels)
        self.cached: list | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.cached if self.cached is not None else self._maps(x)
        out = self.head({"low": maps[0], "high": maps[-1]})
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def load_pair(image_path, mask_path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, size, size) float image in [0, 1], (size, size) int64 mask (nearest)."""
    from PIL import Image

    with Image.open(image_path) as im:
        x = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    with Image.open(mask_path) as m:
        y = np.asarray(m.resize((size, size), Image.NEAREST), dtype=np.int64)
    return torch.from_numpy(x).permute(2, 0, 1).contiguous(), torch.from_numpy(y.copy())


def load_image(path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    from tlops.errors import DataError

    try:
        with Image.open(path) as im:
            own = (im.height, im.width)
            x = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"image {path} could not be decoded ({e}); replace or remove that file") from None
    return torch.from_numpy(x).permute(2, 0, 1).contiguous(), own


def hflip_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image and its mask mirrored left-right together."""
    return x.flip(-1), y.flip(-1)


def _bn_eval(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class Segmenter:
    def __init__(self, backbone, classes: list[str], cfg: SegmenterConfig, net: SegmentationNet | None = None):
        self.backbone, self.classes, self.cfg = backbone, list(classes), cfg
        torch.manual_seed(cfg.seed)
        self.net = net if net is not None else SegmentationNet(backbone, len(classes), cfg.inter_channels)
        self.fine_tuned = False

    def fit(self, train: list[tuple[str, str]], val: list[tuple[str, str]], log: Callable[[dict], None] | None = None) -> list[dict]:
        from tlops.segmentation.metrics import segmentation_scores

        cfg, net = self.cfg, self.net
        g = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        for p in self.backbone.model.parameters():
            p.requires_grad_(False)
        groups_all = self.backbone.parameter_groups()
        tuned = [] if cfg.trainable in (0, "0", None) else [p for grp in (groups_all if cfg.trainable == "all" else groups_all[-int(cfg.trainable):])
                                                             for p in grp]
        for p in tuned:
            p.requires_grad_(True)
        self.fine_tuned = bool(tuned)
        groups = [{"params": list(net.head.parameters()), "lr": cfg.head_lr}] + ([{"params": tuned, "lr": cfg.backbone_lr}] if tuned else [])
        opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        pairs = [load_pair(a, b, cfg.image_size) for a, b in train]
        xs = torch.stack([p[0] for p in pairs])
        ys = torch.stack([p[1] for p in pairs])
        cache = None
        if not tuned:
            self.backbone.model.eval()
            with torch.inference_mode():
                cache = {f: [torch.cat(parts) for parts in zip(*[self._maps_of(xs[i:i + 32].flip(-1) if f else xs[i:i + 32])
                                                                 for i in range(0, len(xs), 32)])] for f in (False, True)}
        steps = max(1, cfg.epochs * math.ceil(len(train) / cfg.batch_size))
        warm = max(1, int(cfg.warmup * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
        history, best, best_state = [], -1.0, None
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            _bn_eval(self.backbone.model)
            if not tuned:
                self.backbone.model.eval()
            t0, losses = time.perf_counter(), []
            order = torch.randperm(len(train), generator=g)
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                flips = (torch.rand(len(idx), generator=g) < 0.5) if cfg.flip else torch.zeros(len(idx), dtype=torch.bool)
                x, y = xs[idx].clone(), ys[idx].clone()
                x[flips], y[flips] = x[flips].flip(-1), y[flips].flip(-1)
                if cache is not None:
                    net.cached = [torch.where(flips.view(-1, 1, 1, 1), cache[True][k][idx], cache[False][k][idx]) for k in range(len(cache[False]))]
                try:
                    loss = F.cross_entropy(net(x), y, ignore_index=IGNORE)
                finally:
                    net.cached = None
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for grp in groups for p in grp["params"]], 10.0)
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
            seconds = time.perf_counter() - t0
            truth = [load_pair(a, b, cfg.image_size)[1].numpy() for a, b in val]
            pred = [p for p in self._predict_resized([a for a, _ in val])]
            s = segmentation_scores(truth, pred, len(self.classes))
            row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_miou": s["miou"], "val_pixel_accuracy": s["pixel_accuracy"],
                   "seconds": seconds}
            history.append(row)
            if log:
                log(row)
            if s["miou"] > best:
                best = s["miou"]
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if best_state is not None:
            net.load_state_dict(best_state)
        for p in self.backbone.model.parameters():
            p.requires_grad_(False)
        net.eval()
        return history

    def _maps_of(self, x):
        return [m.clone() for m in self.backbone.feature_maps(x)]

    @torch.inference_mode()
    def _predict_resized(self, paths: list[str], batch_size: int = 16) -> list[np.ndarray]:
        """Masks at image_size x image_size (how val is scored in training)."""
        self.net.eval()
        out = []
        for i in range(0, len(paths), batch_size):
            x = torch.stack([load_image(p, self.cfg.image_size)[0] for p in paths[i:i + batch_size]])
            out += list(self.net(x).argmax(1).numpy().astype(np.uint8))
        return out

    @torch.inference_mode()
    def predict_paths(self, paths: list[str], batch_size: int = 16) -> list[np.ndarray]:
        """Per image, its (H, W) uint8 class-index mask at the image's own size (logits resized bilinearly)."""
        self.net.eval()
        out = []
        for i in range(0, len(paths), batch_size):
            loaded = [load_image(p, self.cfg.image_size) for p in paths[i:i + batch_size]]
            logits = self.net(torch.stack([x for x, _ in loaded]))
            for lg, (_, own) in zip(logits, loaded):
                out.append(F.interpolate(lg[None], size=own, mode="bilinear", align_corners=False)[0].argmax(0).numpy().astype(np.uint8))
        return out


def head_state(seg: Segmenter) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in seg.net.state_dict().items() if not k.startswith("net.")}


def load_segmenter(backbone, classes: list[str], cfg: SegmenterConfig, state: dict) -> Segmenter:
    seg = Segmenter(backbone, classes, cfg)
    missing, unexpected = seg.net.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("net.")] + list(unexpected)
    if bad:
        raise ValueError(f"the segmentation head's weights do not fit this segmenter: {bad[:5]}")
    seg.net.eval()
    return seg
