"""An object detector on a tlops image backbone: torchvision's FCOS with a feature pyramid (torchvision.ops
FeaturePyramidNetwork) over the backbone's multi-scale maps (`feature_maps`: strides 8, 16, 32). Nothing of the
detector is written here: the body is the backbone's own blocks, neck and head are torchvision's.

Training (`fit`), on the shared training loop (`tlops.training.loop.fit`): AdamW on the FPN and FCOS head
(`head_lr`, as the loop's head), and on the backbone at `backbone_lr` when it is fine-tuned (`trainable`: "all", a
number of top parameter groups, or 0 = frozen: the linear-probe analogue, whose maps are computed once). The
backbone's batch-norm statistics stay frozen (batches of a few images). Augmentation: a horizontal flip that moves
the boxes with the image (`flip`). The epoch with the best val mAP is kept; a run's checkpoints resume as any loop's. Boxes enter and leave as COCO
[x, y, w, h] in the image's own pixels; torchvision's transform resizes each image so its short side is
`image_size` (the long side at most twice that) and maps boxes back.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from tlops.errors import ConfigError
from tlops.training.objectives import Batch, LoopTask, Objective


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
                          "detector needs; use packaged:efficientnet-lite0 or a convolutional timm:/torchvision: model (resnet*, efficientnet*, ...)")
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


class DetectionHead(nn.Module):
    """The detector's own layers, FPN and FCOS head, as one module: what the training loop trains at the head's rate and
    checkpoints as the head. The FCOS model they belong to is kept beside them (not a submodule: its backbone is the
    loop's to train, freeze and checkpoint)."""

    def __init__(self, fcos: nn.Module):
        super().__init__()
        self.fpn, self.head = fcos.backbone.fpn, fcos.head
        self._fcos = (fcos,)

    @property
    def detector(self) -> nn.Module:
        return self._fcos[0]


class DetectionData:
    """One split for the training loop: the decoded images, their boxes (xyxy) and labels (1..K), batches with each image
    mirrored (with its boxes) when the batch's generator says so; a frozen backbone's `maps` of each image and of its
    mirror ([plain, flipped][image][level]) go with the batch."""

    def __init__(self, samples: list[Sample], load: bool = True):
        self.samples = list(samples)
        self.images = [load_rgb(s.path) for s in samples] if load else []
        self.boxes = [xywh_to_xyxy(s.boxes) for s in samples]
        self.labels = [torch.as_tensor(np.asarray(s.labels, dtype=np.int64) + 1) for s in samples]
        self.targets = np.arange(len(samples))
        self.lengths = None
        self.maps: list | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def order(self, seed: int, epoch: int, batch_size: int, bucket_by_length: bool) -> list[list[int]]:
        from tlops.training.batching import epoch_batches

        return epoch_batches(len(self), batch_size, seed, epoch)

    def batch(self, idx, g: torch.Generator | None = None, flip: bool = True) -> Batch:
        images, targets, flips = [], [], []
        for j in idx:
            x, b = self.images[j], self.boxes[j]
            flipped = bool(g is not None and flip and torch.rand((), generator=g).item() < 0.5)
            if flipped:
                x, b = hflip(x, b)
            images.append(x)
            targets.append({"boxes": b, "labels": self.labels[j]})
            flips.append(flipped)
        maps = None
        if self.maps is not None:
            maps = [torch.stack([self.maps[f][j][k] for j, f in zip(idx, flips)]) for k in range(len(self.maps[0][0]))]
        return Batch({"images": images, "targets": targets, "maps": maps}, torch.as_tensor(list(idx)))


class DetectionObjective(Objective):
    """FCOS's own loss terms of a batch (classification, bbox_regression, bbox_ctrness: torchvision's), each logged by the
    loop, plus regularisers (L2-SP)."""

    def __init__(self, regularisers: dict[str, nn.Module] | None = None):
        super().__init__()
        self.regularisers = nn.ModuleDict(regularisers or {})

    def forward(self, net, batch, step: int) -> dict[str, torch.Tensor]:
        fcos = net.head.detector
        fcos.training = fcos.transform.training = True  # its loss path; the backbone's and head's modes are the loop's
        device = next(net.head.parameters()).device
        x = batch.inputs
        images = [im.to(device) for im in x["images"]]
        targets = [{k: v.to(device) for k, v in t.items()} for t in x["targets"]]
        body = fcos.backbone.body
        body.cached = [m.to(device) for m in x["maps"]] if x["maps"] is not None else None
        try:
            terms = dict(fcos(images, targets))
        finally:
            body.cached = None
        for name, reg in self.regularisers.items():
            terms[name] = reg()
        return terms


class DetectionTask(LoopTask):
    """The epoch's validation: COCO mAP@[.5:.95] and mAP@.5 of every candidate (score >= 0) on the val images;
    `val_map` selects (higher is better)."""

    selection_metric = "val_map"
    maximize = True

    def __init__(self, detector: Detector, val: list[Sample]):
        self.detector, self.val = detector, list(val)
        self.images = [load_rgb(s.path) for s in self.val]

    def validate(self, net, data, evaluation) -> dict[str, float]:
        from tlops.detection.metrics import detection_scores

        if not self.val:
            return {"val_map": float("nan"), "val_map_50": float("nan")}
        self.detector.net.to(evaluation.device)  # a frozen backbone too (the loop moves only what it trains)
        pred = self.detector.predict_images(self.images, score_threshold=0.0, batch_size=evaluation.batch_size)  # fp32
        s = detection_scores([_truth(v) for v in self.val], pred, len(self.detector.classes))
        return {"val_map": s["map"], "val_map_50": s["map_50"]}


class Detector:
    """The backbone + FPN + FCOS head, trained and applied on image files."""

    def __init__(self, backbone, classes: list[str], cfg: DetectorConfig, net: nn.Module | None = None):
        self.backbone, self.classes, self.cfg = backbone, list(classes), cfg
        self.net = net if net is not None else build_detector(backbone, len(classes), cfg)
        self.fine_tuned = False

    # ---- training ----

    def loop_options(self):
        """The loop's options for this detector's `DetectorConfig` (`tlops.training.loop.maps_head_loop_options`)."""
        from tlops.training.loop import maps_head_loop_options

        return maps_head_loop_options(self.cfg)

    def fit(self, train: list[Sample], val: list[Sample], log: Callable[[dict], None] | None = None, opts=None,
            checkpoint_dir=None, callbacks=()) -> list[dict]:
        """Train on the shared training loop (`tlops.training.loop.fit`: the epoch with the best val mAP kept, checkpoints
        and resume in `checkpoint_dir`, early stop, device and precision as for any task). `opts`: the loop's options (a
        run's `FinetuneConfig`, or `LoopOptions`; None: `loop_options()` of this detector's config); the backbone trains
        when `opts.trainable` is "all" or N > 0 (its top N groups), else it stays frozen and its maps of every train image
        (and of its mirror image) are computed once. Returns the loop's per-epoch rows (epoch from 0, train_loss and
        its terms, val_map, val_map_50, seconds); `loop` keeps the loop's result."""
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
        head = DetectionHead(self.net)
        for p in head.parameters():
            p.requires_grad_(True)
        data = DetectionData(train)
        if not tuned:
            data.maps = self._frozen_maps(data.images, data.boxes, flip=bool(opts.augment and opts.flip))
        task = DetectionTask(self, val)
        regularisers = l2sp_regularisers(self.backbone, getattr(opts, "l2sp", 0)) if tuned else {}
        try:
            self.loop = loop_fit(Net(MapsBackbone(self.backbone, tuned), head), DetectionObjective(regularisers), data,
                                 DetectionData(val, load=False), opts, seed=self.cfg.seed, task=task, checkpoint_dir=checkpoint_dir,
                                 callbacks=[*callbacks, *epoch_rows(log)])
        finally:
            self.net.to("cpu")
            for p in self.backbone.model.parameters():
                p.requires_grad_(False)
            self.net.eval()
        return [{**row, "seconds": row["epoch_train_seconds"]} for row in self.loop.state.history]

    @torch.inference_mode()
    def _frozen_maps(self, images, boxes, flip: bool = True) -> list | None:
        """A frozen backbone's maps of every train image and of its mirror image ([plain, flipped][image][level]), as the
        detector's own transform sizes them; None (computed per step) when the images differ in size (batches would pad
        them to other sizes than one image alone)."""
        if len({tuple(x.shape) for x in images}) != 1:
            return None
        self.backbone.model.eval()
        out = []
        for flipped in (False, True) if flip else (False,):
            rows = []
            for i in range(0, len(images), 32):
                xs = [hflip(x, b)[0] if flipped else x for x, b in zip(images[i:i + 32], boxes[i:i + 32])]
                batch, _ = self.net.transform(xs)
                maps = self.backbone.feature_maps(batch.tensors)
                rows += [[m[k].clone() for m in maps] for k in range(len(xs))]
            out.append(rows)
        return out if flip else out * 2

    # ---- inference ----

    @torch.inference_mode()
    def predict_paths(self, paths: list[str], score_threshold: float = 0.3, batch_size: int = 16) -> list[dict]:
        """Per image: {"boxes": (N, 4) COCO xywh, "scores": (N,), "labels": (N,) category indices 0..K-1} (numpy), the
        detections scoring at least `score_threshold`."""
        return self.predict_images([load_rgb(p) for p in paths], score_threshold, batch_size)

    @torch.inference_mode()
    def predict_images(self, images: list[torch.Tensor], score_threshold: float = 0.3, batch_size: int = 16) -> list[dict]:
        """`predict_paths` of decoded images ((3, H, W) in [0, 1]), on the device the detector's weights are on."""
        self.net.eval()
        device = next(self.net.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            dets = self.net([x.to(device) for x in images[i:i + batch_size]])
            for d in dets:
                d = {k: v.cpu() for k, v in d.items()}
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
