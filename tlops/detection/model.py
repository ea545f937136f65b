"""An object detector on a tlops image backbone: torchvision's FCOS with a feature pyramid (torchvision.ops
FeaturePyramidNetwork) over the backbone's multi-scale maps (`feature_maps`: strides 8, 16, 32). Nothing of the
detector is written here: the body is the backbone's own blocks, neck and head are torchvision's.

Training (`fit`): AdamW on the FPN and FCOS head (`head_lr`), and on the backbone at `backbone_lr` when it is
fine-tuned (`trainable`: "all", a number of top parameter groups, or 0 = frozen: the linear-probe analogue). The
backbone's batch-norm statistics stay frozen (batches of a few images). Augmentation: a horizontal flip that moves
the boxes with the image (`flip`). The epoch with the best val mAP is kept. Boxes enter and leave as COCO
[x, y, w, h] in the image's own pixels; torchvision's transform resizes each image so its short side is
`image_size` (the long side at most twice that) and maps boxes back.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from tlops.errors import ConfigError


@dataclass
class DetectorConfig:
    image_size: int = 128
    fpn_channels: int = 64  # a multiple of 32 (the FCOS head's group norm)
    epochs: int = 8
    batch_size: int = 8
    head_lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 1e-4
    trainable: str | int = 0  # 0: frozen backbone; "all"; N: the backbone's top N parameter groups
    warmup: float = 0.1  # share of the steps warming up linearly, then cosine decay
    flip: bool = True
    seed: int = 0
    score_thresh: float = 0.05  # candidates kept for mAP (predict filters with its own threshold)
    detections_per_img: int = 50


class _Body(nn.Module):
    """The backbone's maps as the FPN's ordered input; the backbone's torch model is a submodule (its parameters are
    the detector's), the tlops backbone object only lends its `feature_maps`."""

    def __init__(self, backbone):
        super().__init__()
        self.net = backbone.model
        self._maps = backbone.feature_maps
        self.cached: list[torch.Tensor] | None = None  # a frozen backbone's maps of the batch, computed once before training

    def forward(self, x):
        maps = self.cached if self.cached is not None else self._maps(x)
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


class _BodyWithFPN(nn.Module):
    def __init__(self, backbone, out_channels: int):
        from torchvision.ops import FeaturePyramidNetwork

        super().__init__()
        self.body = _Body(backbone)
        self.fpn = FeaturePyramidNetwork(list(backbone.feature_channels), out_channels)
        self.out_channels = out_channels

    def forward(self, x):
        return self.fpn(self.body(x))


def build_detector(backbone, n_classes: int, cfg: DetectorConfig) -> nn.Module:
    """torchvision FCOS over the backbone's FPN; class ids 1..n_classes (0 is never a target)."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if not hasattr(backbone, "feature_maps"):
        raise ConfigError(f"backbone {getattr(backbone, 'source', backbone)} has no multi-scale feature maps (feature_maps), which a "
                          "detector needs; use packaged:efficientnet-lite0")
    torch.manual_seed(cfg.seed)
    body = _BodyWithFPN(backbone, cfg.fpn_channels)
    strides = tuple(backbone.feature_strides)
    anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))  # FCOS: one point per cell, size = stride
    return FCOS(body, num_classes=n_classes + 1, min_size=cfg.image_size, max_size=2 * cfg.image_size, image_mean=[0.0] * 3,
                image_std=[1.0] * 3, anchor_generator=anchors, score_thresh=cfg.score_thresh, detections_per_img=cfg.detections_per_img)


def load_rgb(path) -> torch.Tensor:
    """(3, H, W) float in [0, 1] at the file's own size; a file that does not decode is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    from tlops.errors import DataError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"image {path} could not be decoded ({e}); replace or remove that file") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def xywh_to_xyxy(boxes) -> torch.Tensor:
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)


def hflip(image: torch.Tensor, boxes_xyxy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image mirrored left-right and its boxes with it (x -> W - x)."""
    w = image.shape[-1]
    b = boxes_xyxy.clone()
    b[:, 0], b[:, 2] = w - boxes_xyxy[:, 2], w - boxes_xyxy[:, 0]
    return image.flip(-1), b


@dataclass
class Sample:
    """One image with its objects: boxes COCO [x, y, w, h] and category indices 0..K-1."""

    path: str
    boxes: list = field(default_factory=list)
    labels: list = field(default_factory=list)


def _bn_eval(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _trainable_backbone(backbone, trainable) -> list[nn.Parameter]:
    groups = backbone.parameter_groups()
    if trainable in (0, "0", None, "none"):
        return []
    if trainable == "all":
        return [p for g in groups for p in g]
    n = int(trainable)
    return [p for g in groups[-n:] for p in g]


class Detector:
    """The backbone + FPN + FCOS head, trained and applied on image files."""

    def __init__(self, backbone, classes: list[str], cfg: DetectorConfig, net: nn.Module | None = None):
        self.backbone, self.classes, self.cfg = backbone, list(classes), cfg
        self.net = net if net is not None else build_detector(backbone, len(classes), cfg)
        self.fine_tuned = False

    # ---- training ----

    def fit(self, train: list[Sample], val: list[Sample], log: Callable[[dict], None] | None = None) -> list[dict]:
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        net = self.net
        for p in self.backbone.model.parameters():
            p.requires_grad_(False)
        tuned = _trainable_backbone(self.backbone, cfg.trainable)
        for p in tuned:
            p.requires_grad_(True)
        self.fine_tuned = bool(tuned)
        backbone_ids = {id(p) for p in self.backbone.model.parameters()}
        head = [p for p in net.parameters() if id(p) not in backbone_ids]
        groups = [{"params": head, "lr": cfg.head_lr}] + ([{"params": tuned, "lr": cfg.backbone_lr}] if tuned else [])
        opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        images = [load_rgb(s.path) for s in train]
        targets = [{"boxes": xywh_to_xyxy(s.boxes), "labels": torch.as_tensor(np.asarray(s.labels, dtype=np.int64) + 1)} for s in train]
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total = max(1, cfg.epochs * steps_per_epoch)
        warm = max(1, int(cfg.warmup * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
        cache = self._frozen_maps(images, targets) if not tuned else None
        body = net.backbone.body
        history, best, best_state = [], -1.0, None
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            _bn_eval(self.backbone.model)
            if not tuned:
                self.backbone.model.eval()  # frozen: no drop-connect either
            t0, losses = time.perf_counter(), []
            order = torch.randperm(len(train), generator=g).tolist()
            for i in range(0, len(order), cfg.batch_size):
                batch_x, batch_t, flips = [], [], []
                for j in order[i:i + cfg.batch_size]:
                    x, t = images[j], targets[j]
                    flipped = bool(cfg.flip and torch.rand((), generator=g).item() < 0.5)
                    if flipped:
                        x, b = hflip(x, t["boxes"])
                        t = {"boxes": b, "labels": t["labels"]}
                    batch_x.append(x)
                    batch_t.append(t)
                    flips.append(flipped)
                if cache is not None:  # the frozen backbone's maps of these very images (flipped ones: of the flipped image)
                    js = order[i:i + cfg.batch_size]
                    body.cached = [torch.stack([cache[f][j][k] for j, f in zip(js, flips)]) for k in range(len(cache[0][0]))]
                try:
                    loss_terms = net(batch_x, batch_t)
                finally:
                    body.cached = None
                loss = sum(loss_terms.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for grp in groups for p in grp["params"]], 10.0)
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
            seconds = time.perf_counter() - t0
            from tlops.detection.metrics import detection_scores

            scores = detection_scores([_truth(s) for s in val], self.predict_paths([s.path for s in val], score_threshold=0.0),
                                      len(self.classes)) if val else {"map": float("nan"), "map_50": float("nan")}
            row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_map": scores["map"], "val_map_50": scores["map_50"],
                   "seconds": seconds}
            history.append(row)
            if log:
                log(row)
            if scores["map"] > best:
                best = scores["map"]
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if best_state is not None:
            net.load_state_dict(best_state)
        for p in self.backbone.model.parameters():
            p.requires_grad_(False)
        net.eval()
        return history

    @torch.inference_mode()
    def _frozen_maps(self, images, targets) -> list | None:
        """A frozen backbone's maps of every train image and of its mirror image ([plain, flipped][image][level]), as the
        detector's own transform sizes them; None (computed per step) when the images differ in size (batches would pad
        them to other sizes than one image alone)."""
        if len({tuple(x.shape) for x in images}) != 1:
            return None
        self.backbone.model.eval()
        out = []
        for flipped in (False, True) if self.cfg.flip else (False,):
            rows = []
            for i in range(0, len(images), 32):
                xs = [hflip(x, t["boxes"])[0] if flipped else x for x, t in zip(images[i:i + 32], targets[i:i + 32])]
                batch, _ = self.net.transform(xs)
                maps = self.backbone.feature_maps(batch.tensors)
                rows += [[m[k].clone() for m in maps] for k in range(len(xs))]
            out.append(rows)
        return out if self.cfg.flip else out * 2

    # ---- inference ----

    @torch.inference_mode()
    def predict_paths(self, paths: list[str], score_threshold: float = 0.3, batch_size: int = 16) -> list[dict]:
        """Per image: {"boxes": (N, 4) COCO xywh, "scores": (N,), "labels": (N,) category indices 0..K-1} (numpy), the
        detections scoring at least `score_threshold`."""
        self.net.eval()
        out = []
        for i in range(0, len(paths), batch_size):
            dets = self.net([load_rgb(p) for p in paths[i:i + batch_size]])
            for d in dets:
                keep = d["scores"] >= score_threshold
                out.append({"boxes": xyxy_to_xywh(d["boxes"][keep]).numpy(), "scores": d["scores"][keep].numpy(),
                            "labels": (d["labels"][keep] - 1).clamp(min=0).numpy()})
        return out


def _truth(s: Sample) -> dict:
    return {"boxes": np.asarray(s.boxes, dtype=np.float32).reshape(-1, 4), "labels": np.asarray(s.labels, dtype=np.int64)}


def head_state(detector: Detector) -> dict[str, torch.Tensor]:
    """The detector's weights that are not the backbone's (FPN and FCOS head): what a package stores beside the
    backbone's export."""
    return {k: v.contiguous() for k, v in detector.net.state_dict().items() if not k.startswith("backbone.body.net.")}


def load_detector(backbone, classes: list[str], cfg: DetectorConfig, state: dict[str, torch.Tensor]) -> Detector:
    det = Detector(backbone, classes, cfg)
    missing, unexpected = det.net.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("backbone.body.net.")] + list(unexpected)
    if bad:
        raise ValueError(f"the detection head's weights do not fit this detector: {bad[:5]}")
    det.net.eval()
    return det
