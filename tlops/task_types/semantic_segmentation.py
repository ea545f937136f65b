"""Semantic segmentation: a class per pixel.

Data: dataset.yaml `task: semantic_segmentation` (`modality: image`, `labels:` the class names in index order) and per
split a `path,mask` CSV (`train.csv`, optional `val.csv` (else carved from train by image), `test.csv`), masks as
8-bit index PNGs (pixel = class index, 255 = ignore), read and checked by `tlops.segmentation.files`: every problem
(file and line; a missing, undecodable or multi-channel file, a mask of another size than its image or with values
that are no class index, an image in two splits, a bad labels list) becomes a failed check of the validation report.

Features: nothing is cached (feature level `pixel`); the segmenter reads the backbone's multi-scale maps itself
(`tlops.segmentation.model`: torchvision's LR-ASPP head on the stride-8 and stride-32 maps).

Training: `linear_probe` (`probe_trainer`, `head: mlp`): the backbone frozen, the LR-ASPP head trained (AdamW `lr`,
`epochs`, `batch_size`, `weight_decay`); `finetune` (`finetune_trainer`): the backbone's top `trainable` groups too at
`backbone_lr`, the head at `head_lr`. Both on the shared training loop (`tlops.training.loop.fit`): per-pixel
cross-entropy (255 ignored), flips that move the mask with the image, the epoch with the best val mIoU kept and logged as
the run's best_epoch, checkpoints a rerun resumes from; finetune takes the run's loop settings. The package holds the backbone's export and `segmentation/head.safetensors`.

Metrics: mIoU (selects on val, the default gate metric), pixel accuracy, IoU per class. Predict: image paths -> per image
{"size": [height, width], "labels": class names in index order, "runs": [[class index, run length], ...] (the mask
run-length encoded row by row, top-left first), "pixels": {class name: pixel count}}; `tlops predict --out DIR` blends
each mask into its image (`tlops.segmentation.draw`). Plots of a run: IoU per class, the first test images with their
true and predicted masks blended in.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tlops.task_types.base import TaskType, train_csv_header
from tlops.task_types.registry import register_task_type

NAME = "semantic_segmentation"
LEVEL = "pixel"
META_KEY = NAME
HEAD_FILE = "segmentation/head.safetensors"
SPLITS = ("train", "val", "test")


def _segmentation_dataset_class():
    from tlops.data.dataset import Dataset

    @dataclass
    class SegmentationDataset(Dataset):
        classes: list = field(default_factory=list)
        problems: list = field(default_factory=list)

        @property
        def labels(self) -> list[str]:
            return list(self.classes)

        def y(self, split: str) -> np.ndarray:
            return np.arange(len(self.splits[split]), dtype=np.int64)

        def inputs(self, split: str) -> list[str]:
            return [str(Path(self.root) / p) for p in self.splits[split]["path"]]

        def pairs(self, split: str) -> list[tuple[str, str]]:
            df = self.splits[split]
            return [(str(Path(self.root) / p), str(Path(self.root) / m)) for p, m in zip(df["path"], df["mask"])]

    return SegmentationDataset


def _frame(rows, source: str):
    import pandas as pd

    df = pd.DataFrame({"path": [r.path for r in rows], "mask": [r.mask for r in rows], "line": [r.line for r in rows]})
    df.attrs["source"] = source
    return df


def encode_runs(mask: np.ndarray) -> list[list[int]]:
    """[[value, length], ...] of a mask read row by row (top-left first)."""
    flat = np.asarray(mask).reshape(-1)
    if flat.size == 0:
        return []
    change = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [flat.size]])
    return [[int(flat[s]), int(e - s)] for s, e in zip(starts, ends)]


def decode_runs(runs: list, size: list[int]) -> np.ndarray:
    """The (height, width) mask of `encode_runs`' output."""
    return np.concatenate([np.full(n, v, np.uint8) for v, n in runs]).reshape(size) if runs else np.zeros(size, np.uint8)


class _Segmenting:
    def __init__(self, predictor):
        from safetensors.torch import load_file

        from tlops.segmentation.model import SegmenterConfig, load_segmenter

        spec = predictor.meta.get(META_KEY) or {}
        cfg = SegmenterConfig(**spec.get("config", {}))
        state = load_file(str(Path(predictor.root) / HEAD_FILE))
        self.segmenter = load_segmenter(predictor.backbone, list(predictor.labels), cfg, state)
        predictor.backbone.model.eval()

    def masks(self, paths: list[str]) -> list[np.ndarray]:
        return self.segmenter.predict_paths(paths)

    def predict(self, paths: list[str]) -> list[dict]:
        names = self.segmenter.classes
        out = []
        for m in self.masks(paths):
            counts = np.bincount(m.reshape(-1), minlength=len(names))
            out.append({"size": [int(m.shape[0]), int(m.shape[1])], "labels": list(names), "runs": encode_runs(m),
                        "pixels": {names[i]: int(c) for i, c in enumerate(counts) if c}})
        return out


def _segmenter(predictor) -> _Segmenting:
    if getattr(predictor, "_segmentation", None) is None:
        predictor._segmentation = _Segmenting(predictor)
    return predictor._segmentation


class PathMasks(list):
    """Predicted masks in the images' order, with the images' paths (`paths`, for the report's pictures); to the metrics a
    plain list of masks."""

    def __init__(self, masks, paths):
        super().__init__(masks)
        self.paths = list(paths)


def _truth_masks(ds, split) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for _, m in ds.pairs(split):
        with Image.open(m) as im:
            out.append(np.asarray(im, dtype=np.uint8).copy())
    return out


@register_task_type
class SemanticSegmentation(TaskType):
    name = NAME
    gate_metrics = ("miou", "pixel_accuracy")
    default_gate_metric = "miou"
    higher_is_better = {"miou": True, "pixel_accuracy": True}
    heads = ("mlp",)  # linear_probe's "head": the LR-ASPP head on the frozen backbone (trained by AdamW, like the MLP head)
    selection_metric = "miou"
    val_metric_names = ("miou", "pixel_accuracy")
    few_shot_plot = "miou_vs_shots.png"
    class_probabilities = False
    feature_level = LEVEL
    embeds_in_features_step = False  # the trainers read the backbone's multi-scale maps themselves
    starter_prefix = "segmentation"  # `tlops init` starters: image_segmentation_linear_probe, image_segmentation_finetune

    default_starter = "linear_probe"

    def recognise(self, root):
        """A folder whose train.csv has a `mask` column beside `path` holds images with index masks."""
        header = train_csv_header(root) or []
        return "image" if "mask" in header and "path" in header else None

    def init_summary(self, ds):
        """Images per split (pixels are counted by validation, not here)."""
        from collections import Counter

        counts = {s: Counter({"images": len(df)}) for s, df in ds.splits.items()}
        return counts, f"images with index masks of {len(ds.labels)} classes ({', '.join(ds.labels)})"

    def read_dataset(self, root, meta, modality, name, seed, val_fraction):
        from tlops.errors import DataError
        from tlops.segmentation.files import SPLIT_FILES, check_segmentation_splits

        root = Path(root)
        if modality != "image":
            raise DataError(f"{root / 'dataset.yaml'}: task semantic_segmentation needs `modality: image`, not {modality!r}")
        splits, labels, carved, problems = check_segmentation_splits(root, meta, seed=seed, val_fraction=val_fraction)
        sources = {s: str(root / SPLIT_FILES["train" if (s == "val" and carved) else s]) for s in SPLITS}
        frames = {s: _frame(splits.get(s, []), sources[s]) for s in SPLITS}
        return _segmentation_dataset_class()(root=root, modality=modality, name=name, splits=frames, val_carved=carved, meta=meta,
                                             classes=list(labels), problems=list(problems))

    def feature_meta(self, ds) -> dict:
        return {"level": LEVEL}

    def reader_checks(self, ds) -> list:
        import re

        from tlops.records import Check
        from tlops.segmentation.files import SPLIT_FILES

        files = {str(Path(ds.root) / f): s for s, f in SPLIT_FILES.items()} | {str(Path(ds.root) / "dataset.yaml"): "train"}
        checks = []
        for p in getattr(ds, "problems", []):
            file = next((f for f in sorted(files, key=len, reverse=True) if p.startswith(f)), str(ds.root))
            rest = p[len(file):] if p.startswith(file) else p
            where, _, what = rest.partition(": ")
            rule, _, fix = what.partition("; ")
            line = re.fullmatch(r"\s*line (\d+)", where)
            checks.append(Check(split=files.get(file, "train"), file=file, rule=f"segmentation file: {rule}"[:300],
                                expectation="tlops_segmentation_reader", success=False, unexpected_count=1,
                                rows=[int(line.group(1))] if line else [], values=[], observed=None, fix=fix or "see the rule"))
        return checks

    def validation_rules(self, ds, cfg, frame_of) -> list:
        import great_expectations.expectations as gxe

        from tlops.validation import Rule

        if getattr(ds, "problems", None):
            return []
        return [Rule(split, "rows", gxe.ExpectTableRowCountToBeBetween(min_value=1), "at least one image",
                     f"add rows to {Path(ds.splits[split].attrs['source']).name}") for split in SPLITS]

    def validation_frame(self, ds, split, kind):
        import pandas as pd

        df = ds.splits[split]
        return pd.DataFrame({"path": list(df["path"]), "line": list(df["line"])})

    def validation_where(self, ds, split, kind, frame, idx):
        return ds.splits[split].attrs.get("source", f"{split}.csv"), [int(frame["line"].iloc[i]) for i in idx]

    def feature_identity(self, identity: dict) -> dict:
        return {**identity, "level": LEVEL}

    def predicts(self, labels):
        return f"a class per pixel ({', '.join(labels)})"

    def outputs(self, labels):
        return len(labels)

    def loop_task(self, y, opts=None):
        from tlops.errors import ConfigError

        raise ConfigError("semantic segmentation trains through its own trainers (linear_probe, finetune); the shared loop's "
                          "item-level tasks do not apply")

    def _fit(self, ctx, scfg, mode: str, opts=None):
        """Train a Segmenter on the run's train split on the shared loop (val mIoU selects; `opts`: the loop's options,
        None: the segmenter's own for its config); (segmenter, history rows, val metrics, seconds, the loop's summary)."""
        from tlops.progress import note
        from tlops.segmentation.model import Segmenter
        from tlops.strategies.context import NOT_IN_FINGERPRINT, loop_summary, run_checkpoint_dir

        ds = ctx.dataset()
        seg = Segmenter(ctx.backbone(), ds.labels, scfg)
        if opts is None:
            opts = seg.loop_options()
            opts.resume = True  # a rerun continues from the run's checkpoints, as any loop run does
        ckpt_dir = run_checkpoint_dir(ctx, {**ctx.cfg.strategy.model_dump(exclude=NOT_IN_FINGERPRINT), "segmentation": asdict(scfg)},
                                      [_data_digest(ds)])
        t0 = time.perf_counter()
        seg.fit(ds.pairs("train"), ds.pairs("val"), opts=opts, checkpoint_dir=ckpt_dir, callbacks=ctx.callbacks,
                log=lambda r: note(f"{mode} epoch {r['epoch'] + 1}: loss {r['train_loss']:.3f}, val mIoU {r['val_miou']:.3f}"))
        seconds = time.perf_counter() - t0
        r = seg.loop
        rows = r.state.history
        best = rows[r.state.best_epoch] if r.state.best_epoch >= 0 else rows[-1]
        return seg, rows, self.val_metrics(best), seconds, loop_summary(r, ckpt_dir)

    def _package(self, ctx, seg, rows, val_metrics, seconds, loop):
        from tlops.package import save_own_head_package
        from tlops.records import PackageResult
        from tlops.segmentation.model import head_state

        s = ctx.cfg.strategy
        summary = {**loop.model_dump(include={"best_epoch", "epochs_run", "stopped_early", "device", "precision"}),
                   **{f"val_{k}": v for k, v in val_metrics.items() if not math.isnan(v)}}
        package = save_own_head_package(ctx.out_dir / "package", seg.backbone, seg.classes, head_state(seg), HEAD_FILE,
                                        extra={"strategy": s.model_dump(), "seed": ctx.cfg.seed, **self.package_meta(ctx.features),
                                               META_KEY: {"config": asdict(seg.cfg), "level": LEVEL},
                                               "fine_tune" if seg.fine_tuned else "probe": summary})
        return PackageResult(strategy=s.name, package=str(package), history=rows, val_metrics=val_metrics, seconds=seconds, loop=loop)

    def probe_trainer(self, ctx):
        from tlops.segmentation.model import SegmenterConfig
        from tlops.task_types.object_detection import _refuse

        s, b = ctx.cfg.strategy, ctx.cfg.backbone
        _refuse(s, {"head": "mlp"}, "its head is the LR-ASPP head", NAME)
        scfg = SegmenterConfig(image_size=b.image_size, epochs=s.epochs, batch_size=s.batch_size, head_lr=s.lr,
                               weight_decay=s.weight_decay, trainable=0, seed=ctx.cfg.seed)
        return self._package(ctx, *self._fit(ctx, scfg, "frozen"))

    def finetune_trainer(self, ctx):
        """finetune: the backbone's top `trainable` groups with the LR-ASPP head (`Segmenter.fit`) on the shared loop with
        the run's finetune settings (epochs, LRs, layer decay, schedule, gradual unfreezing, clipping, patience, L2-SP,
        device, precision, checkpoints)."""
        from tlops.segmentation.model import SegmenterConfig
        from tlops.task_types.object_detection import UNSUPPORTED_FINETUNE, _refuse

        s, b = ctx.cfg.strategy, ctx.cfg.backbone
        _refuse(s, UNSUPPORTED_FINETUNE, "it trains the LR-ASPP head and the backbone's top `trainable` groups", NAME)
        scfg = SegmenterConfig(image_size=b.image_size, epochs=s.epochs, batch_size=s.batch_size, head_lr=s.head_lr,
                               backbone_lr=s.backbone_lr, weight_decay=s.weight_decay, trainable=s.trainable, warmup=s.warmup_ratio,
                               flip=s.augment and s.flip, seed=ctx.cfg.seed)
        return self._package(ctx, *self._fit(ctx, scfg, "finetune", s.model_copy()))

    def dataset_truth(self, ds, split):
        return _truth_masks(ds, split)

    def truth(self, y, labels):
        raise NotImplementedError("semantic segmentation's truth is the dataset's masks (dataset_truth)")

    def _masks(self, package_dir, ds, split):
        from tlops.package import Predictor

        paths = ds.inputs(split)
        return PathMasks(_segmenter(Predictor(package_dir)).masks(paths), paths)

    def test_outputs(self, features, result, dataset):
        ds = dataset()
        return self.dataset_truth(ds, "test"), self._masks(result.package, ds, "test")

    def metrics(self, y_true, y_pred, labels):
        from tlops.segmentation.metrics import segmentation_scores

        s = segmentation_scores(y_true, y_pred, len(labels))
        return {"miou": s["miou"], "pixel_accuracy": s["pixel_accuracy"]}

    def report_and_plots(self, y_true, y_pred, labels, out_dir):
        from tlops.segmentation.metrics import segmentation_scores

        s = segmentation_scores(y_true, y_pred, len(labels))
        report = {"overall": {"miou": s["miou"], "pixel_accuracy": s["pixel_accuracy"], "images": len(y_true)},
                  "iou_per_class": {labels[c]: v for c, v in s["per_class"].items()}}
        plots = [_iou_png(report["iou_per_class"], s["miou"], Path(out_dir) / "iou_per_class.png")]
        if getattr(y_pred, "paths", None):  # the first test images with their true and predicted masks blended in
            from tlops.segmentation.draw import overlay_sheet

            plots.append(overlay_sheet(y_pred.paths[:6], list(y_pred[:6]), list(y_true[:6]), list(labels), Path(out_dir) / "test_predictions.png"))
        return report, "segmentation_report.json", plots

    def card_results(self, report: dict) -> dict | None:
        """The model card's results section: IoU per class, the first test images with their true and predicted masks, and
        how to predict (run-length encoded masks) and draw them."""
        per, overall = report.get("iou_per_class"), report.get("overall", {})
        if per is None:
            return None
        return {"title": "Per-class results (test)", "header": ["class", "IoU"], "rows": [[name, v] for name, v in per.items()],
                "note": f"{overall.get('images', '?')} test images, pixel accuracy {overall.get('pixel_accuracy', float('nan')):.3f}; "
                        "predict returns each mask run-length encoded ({size, labels, runs, pixels}); the first test images with "
                        "their true and predicted masks below",
                "pictures": ["test_predictions"],
                "usage": ["tlops predict {ref} image.png --json", "tlops predict {ref} --csv images.csv --out masks/"]}

    def score_package(self, meta, fetch, features, dataset):
        return self.dataset_truth(dataset, "test"), self._masks(fetch(""), dataset, "test"), "champion package on the test images"

    def package_meta(self, features) -> dict:
        return {"task": NAME}

    def predict(self, predictor, items) -> list[dict]:
        """Per image path: {"size": [h, w], "labels": names, "runs": [[class index, length], ...] row by row, "pixels":
        {name: count}} (`decode_runs(runs, size)` gives the mask back)."""
        return _segmenter(predictor).predict(list(items))

    def write_overlays(self, items, predictions, labels, out_dir) -> list[Path]:
        """`tlops predict --out DIR`: each input image with its predicted mask blended in (a colour per class, "background"
        undrawn) as DIR/<NNN>-<file stem>.png, in input order (`tlops.segmentation.draw`)."""
        from tlops.detection.draw import overlay_name, save_png
        from tlops.segmentation.draw import draw_mask

        return [save_png(draw_mask(x, decode_runs(p["runs"], p["size"]), p["labels"]), Path(out_dir) / overlay_name(i, x))
                for i, (x, p) in enumerate(zip(items, predictions))]


def _data_digest(ds) -> np.ndarray:
    """The train and val image and mask paths as bytes (a checkpoint folder is this data's only)."""
    import json

    return np.frombuffer(json.dumps({s: ds.pairs(s) for s in ("train", "val")}).encode(), dtype=np.uint8)


def _iou_png(per: dict, overall: float, path: Path) -> Path:
    from tlops.evaluate import _plt

    plt = _plt()
    names = list(per) or ["(none)"]
    iou = [0.0 if math.isnan(per[n]) else per[n] for n in per] or [0.0]
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(names) + 2), 3.5))
    ax.bar(names, iou, color="#4c72b0")
    if not math.isnan(overall):
        ax.axhline(overall, color="#c44e52", ls="--", label=f"mIoU {overall:.3f}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("IoU (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
