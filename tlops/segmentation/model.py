"""A semantic segmenter on a tlops image backbone: torchvision's LR-ASPP head (`LRASPPHead`, as in
`lraspp_mobilenet_v3_large`) on the backbone's multi-scale maps (`feature_maps`: the stride-8 map as its "low" input,
the stride-32 map as its "high" one), logits upsampled bilinearly to the image. Nothing of the head is written here.

Training (`fit`), on the shared training loop (`tlops.training.loop.fit`): cross-entropy per pixel (255 = ignore),
AdamW on the head (`head_lr`) and, when fine-tuned, the backbone's top `trainable` groups (`backbone_lr`); batch-norm
statistics frozen; a horizontal flip that moves the mask with the image; warm-up then cosine decay; the epoch with the
best val mIoU kept; a run's checkpoints resume as any loop's. A frozen backbone's maps are computed once (with the
flipped images'). Images are resized to `image_size` x `image_size` for the network and predictions
resized back (nearest) to each image's own size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tlops.errors import ConfigError
from tlops.training.objectives import Batch, LoopTask, Objective

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
                              "which a segmentation head needs; use packaged:efficientnet-lite0 or a convolutional timm:/torchvision: model (resnet*, efficientnet*, ...)")
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


class Segmenter:
    def __init__(self, backbone, classes: list[str], cfg: SegmenterConfig, net: SegmentationNet | None = None):
        self.backbone, self.classes, self.cfg = backbone, list(classes), cfg
        torch.manual_seed(cfg.seed)
        self.net = net if net is not None else SegmentationNet(backbone, len(classes), cfg.inter_channels)
        self.fine_tuned = False

    def loop_options(self):
        """The loop's options for this segmenter's `SegmenterConfig` (`tlops.training.loop.maps_head_loop_options`)."""
        from tlops.training.loop import maps_head_loop_options

        return maps_head_loop_options(self.cfg)

    def fit(self, train: list[tuple[str, str]], val: list[tuple[str, str]], log: Callable[[dict], None] | None = None, opts=None,
            checkpoint_dir=None, callbacks=()) -> list[dict]:
        """Train on the shared training loop (`tlops.training.loop.fit`: the epoch with the best val mIoU kept, checkpoints
        and resume in `checkpoint_dir`, early stop, device and precision as for any task). `opts`: the loop's options (a
        run's `FinetuneConfig`, or `LoopOptions`; None: `loop_options()` of this segmenter's config); the backbone trains
        when `opts.trainable` is "all" or N > 0 (its top N groups), else it stays frozen and its maps of every train image
        (and of its mirror image) are computed once. Returns the loop's per-epoch rows (epoch from 0, train_loss,
        val_miou, val_pixel_accuracy, seconds); `loop` keeps the loop's result."""
        from tlops.training.callbacks import epoch_rows
        from tlops.training.loop import Net
        from tlops.training.loop import fit as loop_fit
        from tlops.training.parts import MapsBackbone, l2sp_regularisers, tunes_backbone

        opts = opts if opts is not None else self.loop_options()
        torch.manual_seed(self.cfg.seed)
        for p in self.backbone.model.parameters():
            p.requires_grad_(False)
        tuned = tunes_backbone(opts)
        self.fine_tuned = tuned
        data = SegmentationData(train, self.cfg.image_size)
        if not tuned:
            self.backbone.model.eval()
            with torch.inference_mode():
                data.maps = {f: [torch.cat(parts) for parts in zip(*[self._maps_of(data.xs[i:i + 32].flip(-1) if f else data.xs[i:i + 32])
                                                                     for i in range(0, len(data), 32)])] for f in (False, True)}
        regularisers = l2sp_regularisers(self.backbone, getattr(opts, "l2sp", 0)) if tuned else {}
        try:
            self.loop = loop_fit(Net(MapsBackbone(self.backbone, tuned), self.net.head), SegmentationObjective(self.net, regularisers),
                                 data, SegmentationData(val, self.cfg.image_size, load=False), opts, seed=self.cfg.seed,
                                 task=SegmentationTask(self, val), checkpoint_dir=checkpoint_dir,
                                 callbacks=[*callbacks, *epoch_rows(log)])
        finally:
            self.net.to("cpu")
            for p in self.backbone.model.parameters():
                p.requires_grad_(False)
            self.net.eval()
        return [{**row, "seconds": row["epoch_train_seconds"]} for row in self.loop.state.history]

    def _maps_of(self, x):
        return [m.clone() for m in self.backbone.feature_maps(x)]

    @torch.inference_mode()
    def _predict_resized(self, paths: list[str], batch_size: int = 16) -> list[np.ndarray]:
        """Masks at image_size x image_size (how val is scored in training)."""
        self.net.eval()
        device = next(self.net.parameters()).device
        out = []
        for i in range(0, len(paths), batch_size):
            x = torch.stack([load_image(p, self.cfg.image_size)[0] for p in paths[i:i + batch_size]])
            out += list(self.net(x.to(device)).argmax(1).cpu().numpy().astype(np.uint8))
        return out

    @torch.inference_mode()
    def predict_paths(self, paths: list[str], batch_size: int = 16) -> list[np.ndarray]:
        """Per image, its (H, W) uint8 class-index mask at the image's own size (logits resized bilinearly)."""
        self.net.eval()
        device = next(self.net.parameters()).device
        out = []
        for i in range(0, len(paths), batch_size):
            loaded = [load_image(p, self.cfg.image_size) for p in paths[i:i + batch_size]]
            logits = self.net(torch.stack([x for x, _ in loaded]).to(device)).cpu()
            for lg, (_, own) in zip(logits, loaded):
                out.append(F.interpolate(lg[None], size=own, mode="bilinear", align_corners=False)[0].argmax(0).numpy().astype(np.uint8))
        return out


class SegmentationData:
    """One split for the training loop: images and masks at `size` x `size`, batches with each pair mirrored together
    when the batch's generator says so; a frozen backbone's `maps` of every image and of its mirror ({False: plain,
    True: flipped}: per level (N, C, h, w)) go with the batch."""

    def __init__(self, pairs: list[tuple[str, str]], size: int, load: bool = True):
        self.pairs = list(pairs)
        loaded = [load_pair(a, b, size) for a, b in pairs] if load and pairs else []
        self.xs = torch.stack([p[0] for p in loaded]) if loaded else None
        self.ys = torch.stack([p[1] for p in loaded]) if loaded else None
        self.targets = np.arange(len(pairs))
        self.lengths = None
        self.maps: dict | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def order(self, seed: int, epoch: int, batch_size: int, bucket_by_length: bool) -> list[list[int]]:
        from tlops.training.batching import epoch_batches

        return epoch_batches(len(self), batch_size, seed, epoch)

    def batch(self, idx, g: torch.Generator | None = None, flip: bool = True) -> Batch:
        idx = torch.as_tensor(list(idx))
        flips = (torch.rand(len(idx), generator=g) < 0.5) if g is not None and flip else torch.zeros(len(idx), dtype=torch.bool)
        x, y = self.xs[idx].clone(), self.ys[idx].clone()
        x[flips], y[flips] = x[flips].flip(-1), y[flips].flip(-1)
        maps = None
        if self.maps is not None:
            maps = [torch.where(flips.view(-1, 1, 1, 1), self.maps[True][k][idx], self.maps[False][k][idx]) for k in range(len(self.maps[False]))]
        return Batch({"x": x, "maps": maps}, y)


class SegmentationObjective(Objective):
    """Per-pixel cross-entropy (255 ignored) of the segmenter's logits, plus regularisers (L2-SP)."""

    def __init__(self, net: SegmentationNet, regularisers: dict[str, nn.Module] | None = None):
        super().__init__()
        self._net = (net,)  # not a submodule: its parts are the loop's backbone and head
        self.regularisers = nn.ModuleDict(regularisers or {})

    def forward(self, net, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        seg = self._net[0]
        device = batch.targets.device
        maps = batch.inputs["maps"]
        seg.cached = [m.to(device) for m in maps] if maps is not None else None
        try:
            terms = {"task": F.cross_entropy(seg(batch.inputs["x"].to(device)).float(), batch.targets, ignore_index=IGNORE)}
        finally:
            seg.cached = None
        for name, reg in self.regularisers.items():
            terms[name] = reg()
        return terms


class SegmentationTask(LoopTask):
    """The epoch's validation: mIoU and pixel accuracy of the val masks at `image_size` x `image_size`; `val_miou` selects
    (higher is better)."""

    selection_metric = "val_miou"
    maximize = True

    def __init__(self, segmenter: Segmenter, val: list[tuple[str, str]]):
        self.segmenter, self.val = segmenter, list(val)
        self.truth = [load_pair(a, b, segmenter.cfg.image_size)[1].numpy() for a, b in self.val]

    def validate(self, net, data, evaluation) -> dict[str, float]:
        from tlops.segmentation.metrics import segmentation_scores

        self.segmenter.net.to(evaluation.device)  # a frozen backbone too (the loop moves only what it trains)
        pred = self.segmenter._predict_resized([a for a, _ in self.val], batch_size=evaluation.batch_size)
        s = segmentation_scores(self.truth, pred, len(self.segmenter.classes))
        return {"val_miou": s["miou"], "val_pixel_accuracy": s["pixel_accuracy"]}


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
