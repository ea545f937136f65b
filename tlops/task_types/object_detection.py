"""Object detection: boxes with a class and a score per image.

Data: dataset.yaml `task: object_detection` (`modality: image`) and per split a COCO JSON file (`train.json`,
optional `val.json` (else carved from train by image), `test.json`), read and checked by `tlops.detection.files`:
every problem of every file (the JSON line and column of a syntax error; the image or annotation id and its JSON
path of a bad record: missing or undecodable files, sizes that differ from the JSON, boxes outside their image or
without area, unknown images and categories; an image file in two splits; categories that differ between files)
becomes a failed check of the validation report, with its fix. GX then checks each split has images, and that every
category has at least `validation.min_per_class` objects in train.

Features: nothing is cached (feature level `image`: one empty row per image); the detector reads the backbone's
multi-scale maps itself (`tlops.detection.model`: torchvision FCOS + FPN on the backbone's `feature_maps`).

Training: `linear_probe` (`probe_trainer`, `head: mlp`): the backbone frozen, FPN and FCOS head trained (AdamW at
`lr`, `epochs`, `batch_size`, `weight_decay`); the frozen maps are computed once. `finetune` (`finetune_trainer`):
the backbone's top `trainable` groups ("all" or N) train too at `backbone_lr`, FPN and head at `head_lr`; its
batch-norm statistics stay frozen. Both on the shared training loop (`tlops.training.loop.fit`): horizontal flips that
move the boxes (`strategy.flip` for finetune), warm-up then cosine decay, the epoch with the best val mAP kept and logged
as the run's best_epoch, checkpoints a rerun resumes from; finetune takes the run's loop settings (layer decay, gradual
unfreezing, L2-SP, clipping, patience, device, precision). The package holds the backbone's export (fine-tuned
or not) and `detection/head.safetensors` (FPN + FCOS head), with the detector's settings under `object_detection`.

Metrics: COCO mAP@[.5:.95] (`map`, selects on val and the default gate metric), mAP@.5 (`map_50`), mAP@.75, mAR@100 and
AP per category (torchmetrics MeanAveragePrecision). Predict: image paths -> per image {"boxes": [[x, y, w, h], ...],
"labels": [...], "scores": [...]} in the image's pixels, detections scoring at least the package's score threshold
(0.3) or the request's pyfunc param `score_threshold` (`tlops predict --score-threshold`), best first; `tlops predict
--out DIR` draws them on each image (`tlops.detection.draw`). Plots of a run: AP per category, precision-recall per
category, the first test images with their predicted boxes.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tlops.task_types.base import TaskType
from tlops.task_types.registry import register_task_type

NAME = "object_detection"
LEVEL = "image"
META_KEY = NAME
HEAD_FILE = "detection/head.safetensors"
SPLITS = ("train", "val", "test")
PREDICT_THRESHOLD = 0.3  # detections predict returns: score at least this


def _detection_dataset_class():
    from tlops.data.dataset import Dataset

    @dataclass
    class DetectionDataset(Dataset):
        """A COCO detection dataset as the pipeline sees it: one row per image (`image_id`, `path` (relative),
        `boxes` (COCO xywh), `labels` (category indices)); `labels` of the dataset are the category names."""

        categories: list = field(default_factory=list)  # (id, name) by id
        problems: list = field(default_factory=list)

        @property
        def labels(self) -> list[str]:
            return [name for _, name in self.categories]

        def y(self, split: str) -> np.ndarray:
            return np.arange(len(self.splits[split]), dtype=np.int64)

        def inputs(self, split: str) -> list[str]:
            return [str(Path(self.root) / p) for p in self.splits[split]["path"]]

        def samples(self, split: str):
            from tlops.detection.model import Sample

            df = self.splits[split]
            return [Sample(str(Path(self.root) / p), list(b), list(l)) for p, b, l in zip(df["path"], df["boxes"], df["labels"])]

        def truth(self, split: str) -> list[dict]:
            df = self.splits[split]
            return [{"boxes": [list(map(float, b)) for b in bs], "labels": [int(x) for x in ls]} for bs, ls in zip(df["boxes"], df["labels"])]

    return DetectionDataset


def _frame(images, categories, source: str):
    import pandas as pd

    index = {cid: i for i, (cid, _) in enumerate(categories)}
    df = pd.DataFrame({"image_id": [im.id for im in images], "path": [im.file_name for im in images],
                       "boxes": [list(im.boxes) for im in images], "labels": [[index[c] for c in im.categories] for im in images]})
    df.attrs["source"] = source
    return df


class _Detecting:
    """A package's backbone + detection head as a `Detector`."""

    def __init__(self, predictor):
        from safetensors.torch import load_file

        from tlops.detection.model import DetectorConfig, load_detector

        spec = predictor.meta.get(META_KEY) or {}
        cfg = DetectorConfig(**spec.get("config", {}))
        root = Path(predictor.meta["_root"]) if "_root" in predictor.meta else None
        state = load_file(str((root or Path(predictor.root)) / HEAD_FILE))
        self.detector = load_detector(predictor.backbone, list(predictor.labels), cfg, state)
        predictor.backbone.model.eval()
        self.threshold = float(spec.get("score_threshold", PREDICT_THRESHOLD))

    def predict(self, paths: list[str], threshold: float | None = None) -> list[dict]:
        labels = self.detector.classes
        out = []
        for d in self.detector.predict_paths(paths, score_threshold=self.threshold if threshold is None else threshold):
            order = np.argsort(-d["scores"], kind="stable")
            out.append({"boxes": [[round(float(v), 1) for v in d["boxes"][i]] for i in order],
                        "labels": [labels[int(d["labels"][i])] for i in order],
                        "scores": [round(float(d["scores"][i]), 4) for i in order]})
        return out


@register_task_type
class ObjectDetection(TaskType):
    name = NAME
    gate_metrics = ("map", "map_50", "map_75")
    default_gate_metric = "map"
    higher_is_better = {"map": True, "map_50": True, "map_75": True}
    heads = ("mlp",)  # linear_probe's "head": the FPN + FCOS head on the frozen backbone (trained by AdamW, like the MLP head)
    selection_metric = "map"
    val_metric_names = ("map", "map_50")
    few_shot_plot = "map_vs_shots.png"
    class_probabilities = False
    feature_level = LEVEL
    embeds_in_features_step = False  # the trainers read the backbone's multi-scale maps themselves
    starter_prefix = "detection"  # `tlops init` starters: image_detection_linear_probe, image_detection_finetune

    default_starter = "linear_probe"

    def recognise(self, root):
        """A folder whose train.json is COCO's shape (top-level `images`, `annotations` and `categories` lists) holds images
        to detect objects in."""
        f = Path(root) / "train.json"
        if not f.is_file():
            return None
        import json

        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        return "image" if isinstance(doc, dict) and all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")) else None

    def init_summary(self, ds):
        """Objects per category per split."""
        from collections import Counter

        counts = {s: Counter(ds.labels[i] for ls in df["labels"] for i in ls) for s, df in ds.splits.items()}
        return counts, f"objects of {len(ds.labels)} categories ({', '.join(ds.labels)}) in {len(ds.splits['train'])} training images (COCO JSON)"

    # ---- data ------------------------------------------------------------------------------------------------

    def read_dataset(self, root, meta, modality, name, seed, val_fraction):
        """The folder's COCO JSON splits (`tlops.detection.files.check_coco_splits`); the reader's problems are kept for
        validation, not raised, so `tlops validate` and `tlops run` report each as a failed check."""
        from tlops.detection.files import SPLIT_FILES, check_coco_splits
        from tlops.errors import DataError

        root = Path(root)
        if modality != "image":
            raise DataError(f"{root / 'dataset.yaml'}: task object_detection needs `modality: image`, not {modality!r}")
        splits, categories, carved, problems = check_coco_splits(root, seed=seed, val_fraction=val_fraction)
        sources = {s: str(root / SPLIT_FILES["train" if (s == "val" and carved) else s]) for s in SPLITS}
        frames = {s: _frame(splits.get(s, []), categories, sources[s]) for s in SPLITS}
        return _detection_dataset_class()(root=root, modality=modality, name=name, splits=frames, val_carved=carved, meta=meta,
                                          categories=list(categories), problems=list(problems))

    def feature_meta(self, ds) -> dict:
        return {"level": LEVEL}

    # ---- validation ------------------------------------------------------------------------------------------

    def reader_checks(self, ds) -> list:
        """The reader's problems as failed checks, one per problem: the file, the record (JSON line of a syntax error,
        else the image / annotation id and its JSON path, in the rule) and the fix."""
        import re

        from tlops.detection.files import SPLIT_FILES
        from tlops.records import Check

        files = {str(Path(ds.root) / f): s for s, f in SPLIT_FILES.items()}
        checks = []
        for p in getattr(ds, "problems", []):
            file = next((f for f in sorted(files, key=len, reverse=True) if p.startswith(f)), str(ds.root))
            rest = p[len(file):] if p.startswith(file) else p
            where, _, what = rest.partition(": ")
            rule, _, fix = what.partition("; ")
            line = re.fullmatch(r"\s*line (\d+) column \d+", where)
            record = "" if line or not where.strip() else f" {where.strip()}"
            checks.append(Check(split=files.get(file, "train"), file=file, rule=f"COCO file{record}: {rule}"[:300],
                                expectation="tlops_coco_reader", success=False, unexpected_count=1,
                                rows=[int(line.group(1))] if line else [], values=[], observed=None, fix=fix or "see the rule"))
        return checks

    def validation_rules(self, ds, cfg, frame_of) -> list:
        """GX rules: each split has images; every category has at least `validation.min_per_class` objects in train."""
        import great_expectations.expectations as gxe

        from tlops.validation import Rule

        if getattr(ds, "problems", None):
            return []  # the reader's checks already failed
        rules = [Rule(split, "rows", gxe.ExpectTableRowCountToBeBetween(min_value=1), "at least one image",
                      f"add images to {Path(ds.splits[split].attrs['source']).name}") for split in SPLITS]
        rules.append(Rule("train", "class_counts", gxe.ExpectColumnValuesToBeBetween(column="count", min_value=cfg.min_per_class),
                          f"every category has at least {cfg.min_per_class} objects in train",
                          "annotate more objects of those categories, drop them, or lower validation.min_per_class"))
        return rules

    def validation_frame(self, ds, split, kind):
        import pandas as pd

        df = ds.splits[split]
        if kind == "class_counts":
            counts = {name: 0 for name in ds.labels}
            for ls in df["labels"]:
                for i in ls:
                    counts[ds.labels[i]] += 1
            return pd.DataFrame({"label": list(counts), "count": list(counts.values())})
        return pd.DataFrame({"image_id": list(df["image_id"]), "path": list(df["path"])})

    def validation_where(self, ds, split, kind, frame, idx):
        where = [str(frame["label"].iloc[i]) for i in idx] if kind == "class_counts" else [f"image id {frame['image_id'].iloc[i]}" for i in idx]
        return ds.splits[split].attrs.get("source", f"{split}.json"), where

    # ---- features --------------------------------------------------------------------------------------------

    def feature_identity(self, identity: dict) -> dict:
        return {**identity, "level": LEVEL}

    # ---- training --------------------------------------------------------------------------------------------

    def predicts(self, labels):
        return f"boxes of objects ({', '.join(labels)}) with a class and a score per box"

    def outputs(self, labels):
        return len(labels)

    def loop_task(self, y, opts=None):
        from tlops.errors import ConfigError

        raise ConfigError("object detection trains through its own trainers (linear_probe, finetune); the shared loop's item-level "
                          "tasks do not apply")

    def _fit(self, ctx, dcfg, mode: str, opts=None):
        """Train a Detector on the run's train split on the shared loop (val mAP selects; `opts`: the loop's options,
        None: the detector's own for its config); (detector, history rows, val metrics, seconds, the loop's summary)."""
        from tlops.detection.model import Detector
        from tlops.progress import note
        from tlops.strategies.context import NOT_IN_FINGERPRINT, loop_summary, run_checkpoint_dir

        ds = ctx.dataset()
        det = Detector(ctx.backbone(), ds.labels, dcfg)
        if opts is None:
            opts = det.loop_options()
            opts.resume = True  # a rerun continues from the run's checkpoints, as any loop run does
        ckpt_dir = run_checkpoint_dir(ctx, {**ctx.cfg.strategy.model_dump(exclude=NOT_IN_FINGERPRINT), "detection": asdict(dcfg)},
                                      [_data_digest(ds)])
        t0 = time.perf_counter()
        det.fit(ds.samples("train"), ds.samples("val"), opts=opts, checkpoint_dir=ckpt_dir, callbacks=ctx.callbacks,
                log=lambda r: note(f"{mode} epoch {r['epoch'] + 1}: loss {r['train_loss']:.3f}, val mAP {r['val_map']:.3f}"))
        seconds = time.perf_counter() - t0
        r = det.loop
        rows = r.state.history
        best = rows[r.state.best_epoch] if r.state.best_epoch >= 0 else rows[-1]
        return det, rows, self.val_metrics(best), seconds, loop_summary(r, ckpt_dir)

    def _package(self, ctx, det, rows, val_metrics, seconds, loop):
        from tlops.detection.model import head_state
        from tlops.package import save_own_head_package
        from tlops.records import PackageResult

        s = ctx.cfg.strategy
        summary = {**loop.model_dump(include={"best_epoch", "epochs_run", "stopped_early", "device", "precision"}),
                   **{f"val_{k}": v for k, v in val_metrics.items() if not math.isnan(v)}}
        package = save_own_head_package(ctx.out_dir / "package", det.backbone, det.classes, head_state(det), HEAD_FILE,
                                        extra={"strategy": s.model_dump(), "seed": ctx.cfg.seed, **self.package_meta(ctx.features),
                                               META_KEY: {"config": asdict(det.cfg), "score_threshold": PREDICT_THRESHOLD, "level": LEVEL},
                                               "fine_tune" if det.fine_tuned else "probe": summary})
        return PackageResult(strategy=s.name, package=str(package), history=rows, val_metrics=val_metrics, seconds=seconds, loop=loop)

    def probe_trainer(self, ctx):
        """linear_probe: the backbone frozen, FPN + FCOS head trained (`Detector.fit` with trainable 0)."""
        from tlops.detection.model import DetectorConfig

        s, b = ctx.cfg.strategy, ctx.cfg.backbone
        _refuse(s, {"head": "mlp"}, "its head is the FPN + FCOS head")
        dcfg = DetectorConfig(image_size=b.image_size, epochs=s.epochs, batch_size=s.batch_size, head_lr=s.lr,
                              weight_decay=s.weight_decay, trainable=0, seed=ctx.cfg.seed)
        return self._package(ctx, *self._fit(ctx, dcfg, "frozen"))

    def finetune_trainer(self, ctx):
        """finetune: the backbone's top `trainable` groups with the FPN + FCOS head (`Detector.fit`) on the shared loop with
        the run's finetune settings (epochs, LRs, layer decay, schedule, gradual unfreezing, clipping, patience, L2-SP,
        device, precision, checkpoints)."""
        from tlops.detection.model import DetectorConfig

        s, b = ctx.cfg.strategy, ctx.cfg.backbone
        _refuse(s, UNSUPPORTED_FINETUNE, "it trains the FPN + FCOS head and the backbone's top `trainable` groups")
        dcfg = DetectorConfig(image_size=b.image_size, epochs=s.epochs, batch_size=s.batch_size, head_lr=s.head_lr,
                              backbone_lr=s.backbone_lr, weight_decay=s.weight_decay, trainable=s.trainable, warmup=s.warmup_ratio,
                              flip=s.augment and s.flip, seed=ctx.cfg.seed)
        return self._package(ctx, *self._fit(ctx, dcfg, "finetune", s.model_copy()))

    # ---- evaluation --------------------------------------------------------------------------------------------

    def dataset_truth(self, ds, split):
        return ds.truth(split)

    def truth(self, y, labels):
        raise NotImplementedError("object detection's truth is the dataset's boxes (dataset_truth)")

    def _raw_predictions(self, package_dir, ds, split: str) -> list[dict]:
        """The package's detections on a split at score 0 (all candidates, as mAP wants), category indices."""
        from tlops.package import Predictor

        predictor = Predictor(package_dir)
        detector = _detector(predictor)
        paths = ds.inputs(split)  # kept beside each image's detections for the report's pictures (the metrics ignore it)
        return [{"boxes": d["boxes"].tolist(), "labels": d["labels"].tolist(), "scores": d["scores"].tolist(), "path": path}
                for d, path in zip(detector.detector.predict_paths(paths, score_threshold=0.0), paths)]

    def test_outputs(self, features, result, dataset):
        """(true boxes per test image, the package's detections per test image)."""
        ds = dataset()
        return self.dataset_truth(ds, "test"), self._raw_predictions(result.package, ds, "test")

    def scores(self, y_true, y_pred, n_classes=None):
        from tlops.detection.metrics import detection_scores

        return detection_scores(y_true, y_pred, n_classes)

    def metrics(self, y_true, y_pred, labels):
        s = self.scores(y_true, y_pred, len(labels) if labels else None)
        return {k: s[k] for k in ("map", "map_50", "map_75", "mar_100")}

    def report_and_plots(self, y_true, y_pred, labels, out_dir):
        s = self.scores(y_true, y_pred, len(labels))
        objects = [0] * len(labels)
        for t in y_true:
            for c in t["labels"]:
                objects[int(c)] += 1
        report = {"overall": {k: s[k] for k in ("map", "map_50", "map_75", "mar_100")} | {"images": len(y_true), "objects": sum(objects)},
                  "per_category": {labels[c]: {"ap": v, "objects": objects[c]} for c, v in s["per_class"].items()}}
        out_dir = Path(out_dir)
        plots = [_per_class_png(report["per_category"], s["map"], out_dir / "ap_per_category.png"),
                 _pr_png(s["pr_50"], labels, out_dir / "precision_recall_iou50.png")]
        if y_pred and all("path" in p for p in y_pred[:1]):
            plots.append(_boxes_png(y_true[:6], y_pred[:6], labels, out_dir / "test_predictions.png"))
        return report, "detection_report.json", plots

    def card_results(self, report: dict) -> dict | None:
        """The model card's results section: AP per category with its objects in test, the predicted boxes on the first
        test images, and how to predict with a score threshold and draw the boxes."""
        per, overall = report.get("per_category"), report.get("overall", {})
        if per is None:
            return None
        return {"title": "Per-category results (test)", "header": ["category", "AP@[.5:.95]", "objects (test)"],
                "rows": [[name, v["ap"], v["objects"]] for name, v in per.items()],
                "note": f"{overall.get('images', '?')} test images, {overall.get('objects', '?')} objects; predicted boxes (score >= "
                        f"{PREDICT_THRESHOLD}, in colour) and true boxes (dashed white) on the first test images below",
                "pictures": ["test_predictions", "precision_recall_iou50"],
                "usage": ["tlops predict {ref} image.png --json", "tlops predict {ref} --csv images.csv --score-threshold 0.5 --out boxes/"]}

    # ---- package and predict -----------------------------------------------------------------------------------

    def score_package(self, meta, fetch, features, dataset):
        """The champion package's detections on the test images (its own backbone and head)."""
        return self.dataset_truth(dataset, "test"), self._raw_predictions(fetch(""), dataset, "test"), "champion package on the test images"

    def package_meta(self, features) -> dict:
        return {"task": NAME}

    def predict(self, predictor, items) -> list[dict]:
        """Per image path: {"boxes": [[x, y, w, h], ...] (pixels of the image), "labels": [...], "scores": [...]}, best first,
        the detections scoring at least the package's score threshold (0.3)."""
        return _detector(predictor).predict(list(items))

    # the pyfunc's `score_threshold` param: the detections it returns score at least this (MLflow passes the signature's
    # default, the package's threshold, when a request names none)
    pyfunc_params = (("score_threshold", "double", PREDICT_THRESHOLD),)

    def predict_with(self, predictor, items, params):
        """`predict` at the request's `score_threshold` (0..1: 0 returns every candidate the detector keeps)."""
        if params.get("score_threshold") is None:
            return None
        from tlops.errors import DataError

        t = params["score_threshold"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:
            raise DataError(f"score_threshold param is {t!r}; give a number from 0 to 1 (the package's own is {PREDICT_THRESHOLD})")
        return _detector(predictor).predict(list(items), threshold=float(t))

    def write_overlays(self, items, predictions, labels, out_dir) -> list[Path]:
        """`tlops predict --out DIR`: each input image with its predicted boxes drawn (class and score above each box) as
        DIR/<NNN>-<file stem>.png, in input order (`tlops.detection.draw`)."""
        from tlops.detection.draw import draw_detections, overlay_name, save_png

        return [save_png(draw_detections(x, p, list(labels)), Path(out_dir) / overlay_name(i, x)) for i, (x, p) in enumerate(zip(items, predictions))]


def _detector(predictor) -> _Detecting:
    if getattr(predictor, "_detection", None) is None:
        predictor._detection = _Detecting(predictor)
    return predictor._detection


UNSUPPORTED_FINETUNE = {"head": "linear", "lp_ft": False}  # the rest of finetune's settings are the shared loop's


def _data_digest(ds) -> np.ndarray:
    """The train and val images' paths, boxes and labels as bytes (a checkpoint folder is this data's only)."""
    import json

    rows = {s: [[p, b, l] for p, b, l in zip(ds.splits[s]["path"], ds.splits[s]["boxes"], ds.splits[s]["labels"])] for s in ("train", "val")}
    return np.frombuffer(json.dumps(rows, default=float).encode(), dtype=np.uint8)


def _refuse(s, unsupported: dict, what: str, task: str = NAME) -> None:
    from tlops.errors import ConfigError

    odd = {k: getattr(s, k) for k, v in unsupported.items() if getattr(s, k, v) != v}
    if odd:
        raise ConfigError(f"{s.name} on {task} data does not apply {', '.join(f'strategy.{k}: {v}' for k, v in odd.items())} "
                          f"({what}); remove them or set {', '.join(f'{k}: {unsupported[k]}' for k in odd)}")


def _per_class_png(per: dict, overall: float, path: Path) -> Path:
    from tlops.evaluate import _plt

    plt = _plt()
    names = list(per) or ["(none)"]
    ap = [0.0 if math.isnan(per[n]["ap"]) else per[n]["ap"] for n in per] or [0.0]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 3.5))
    ax.bar(names, ap, color="#4c72b0")
    for i, n in enumerate(per):
        ax.text(i, ap[i] + 0.01, f"{ap[i]:.2f}\n({per[n]['objects']})", ha="center", fontsize=8)
    if not math.isnan(overall):
        ax.axhline(overall, color="#c44e52", ls="--", label=f"mAP@[.5:.95] {overall:.3f}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("AP@[.5:.95] (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pr_png(pr: dict, labels, path: Path) -> Path:
    """Precision against recall at IoU 0.5 per category (COCOeval's interpolated curves)."""
    from tlops.evaluate import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for c, (recall, precision) in sorted(pr.items()):
        ax.plot(recall, precision, label=str(labels[c]) if c < len(labels) else str(c))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (IoU 0.5)")
    if pr:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _boxes_png(truth: list, predicted: list, labels, path: Path, threshold: float = PREDICT_THRESHOLD) -> Path:
    """The first test images with their predicted boxes (score >= the predict threshold; class and score) in colour and the
    true boxes dashed in white."""
    from PIL import Image

    from tlops.evaluate import _plt

    plt = _plt()
    n = max(1, len(predicted))
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False)
    for ax, t, p in zip(axes[0], truth, predicted):
        with Image.open(p["path"]) as im:
            ax.imshow(im.convert("RGB"))
        for x, y, w, h in t["boxes"]:
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, edgecolor="white", lw=1, ls="--"))
        for (x, y, w, h), score, c in zip(p["boxes"], p["scores"], p["labels"]):
            if score >= threshold:
                colour = plt.cm.tab10(int(c) % 10)
                ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, edgecolor=colour, lw=1.5))
                ax.text(x, y - 1, f"{labels[int(c)]} {score:.2f}", color=colour, fontsize=6, va="bottom")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
