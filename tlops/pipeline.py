"""The training pipeline as plain functions: validate -> features -> train -> evaluate -> package.

Each step takes the config and paths, writes its outputs under a work folder, and returns a small
JSON-able record; Prefect tasks wrap these one-to-one and `run_core` chains them without any
orchestration or tracking (the baseline of the overhead benchmark).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tlops.backbones import load_backbone
from tlops.cache import FeatureCache
from tlops.config import FinetuneConfig, LinearProbeConfig, RunConfig
from tlops.data import Dataset, load_dataset
from tlops.evaluate import classification_metrics, confusion_png, curves_png, per_class_report
from tlops.features import cached_features, stats_dict
from tlops.modules.heads import ProbeHead
from tlops.package import Predictor, save_package
from tlops.strategies.linear_probe import finetune_scaler, fit_logreg, fit_mlp, train_probe
from tlops.validation import raise_for_report, validate_dataset

SPLITS = ("train", "val", "test")


def open_dataset(cfg: RunConfig) -> Dataset:
    return load_dataset(cfg.data.path, seed=cfg.seed, val_fraction=cfg.data.val_fraction)


def backbone_of(cfg: RunConfig):
    b = cfg.backbone
    return load_backbone(b.name, layers=b.layers, pooling=b.pooling, max_length=b.max_length, image_size=b.image_size,
                         clip_seconds=b.clip_seconds)


def validate_step(cfg: RunConfig) -> dict:
    """Report of all validation rules; raises ValidationFailed (carrying the report) if any fails."""
    report = validate_dataset(open_dataset(cfg), cfg.validation)
    raise_for_report(report)
    return report


def features_step(cfg: RunConfig, out_dir: Path, progress: bool = False) -> dict:
    ds = open_dataset(cfg)
    backbone = backbone_of(cfg)
    if backbone.modality != ds.modality:
        from tlops.errors import DataError

        raise DataError(f"{cfg.data.path} holds {ds.modality} data but backbone {cfg.backbone.name} takes {backbone.modality}; pick a {ds.modality} backbone")
    cache = FeatureCache(cfg.features.cache_dir)
    labels = ds.labels
    out_dir.mkdir(parents=True, exist_ok=True)
    totals = {"hits": 0, "misses": 0, "corrupt_shards": 0, "backbone_calls": 0}
    t0 = time.perf_counter()
    identity = backbone.identity()  # once: the same for every split
    for split in SPLITS:
        x, stats = cached_features(backbone, ds.inputs(split), cache, batch_size=cfg.backbone.batch_size, progress=progress,
                                   identity=identity)
        y = ds.label_ids(split)
        np.savez(out_dir / f"{split}.npz", x=x, y=y)
        for k, v in stats_dict(stats).items():
            totals[k] += v
    totals["backbone_calls"] = backbone.calls
    record = {"dir": str(out_dir), "labels": labels, "num_features": backbone.num_features,
              "identity": identity, "found_via": backbone.found_via, "cache": totals,
              "seconds": time.perf_counter() - t0}
    (out_dir / "features.json").write_text(json.dumps(record, indent=1))
    return record


def _load_split(features_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(features_dir) / f"{split}.npz") as z:
        return z["x"], z["y"]


def train_step(cfg: RunConfig, features_dir: Path, out_dir: Path, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train with the configured strategy; returns a JSON-able record (with `package` for fine-tuning)."""
    if isinstance(cfg.strategy, FinetuneConfig):
        return finetune_step(cfg, features_dir, out_dir, on_epoch=on_epoch)
    return probe_step(cfg, features_dir, out_dir)


def probe_step(cfg: RunConfig, features_dir: Path, out_dir: Path) -> dict:
    """Fit the head on cached features; writes head.safetensors + head.json. No backbone needed."""
    torch.manual_seed(cfg.seed)
    labels = json.loads((Path(features_dir) / "features.json").read_text())["labels"]
    x, y = _load_split(features_dir, "train")
    xv, yv = _load_split(features_dir, "val")
    t0 = time.perf_counter()
    result = train_probe(x, y, xv, yv, len(labels), cfg.strategy, seed=cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in result.head.state_dict().items()}, str(out_dir / "head.safetensors"))
    record = {"kind": "probe", "head_path": str(out_dir / "head.safetensors"), "spec": result.head.spec, "history": result.history,
              "val_macro_f1": result.val_macro_f1, "seconds": time.perf_counter() - t0}
    (out_dir / "head.json").write_text(json.dumps(record, indent=1))
    return record


def initial_head(cfg: RunConfig, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int) -> ProbeHead:
    """The fine-tuning head before training: for LP-FT a probe fitted on the frozen (cached) features,
    otherwise a fresh head; both standardise with the pretrained train features' mean/std (std floored)."""
    s = cfg.strategy
    scaler = finetune_scaler(x)
    torch.manual_seed(cfg.seed)
    if s.lp_ft:
        if s.head == "linear":
            return fit_logreg(x, y, xv, yv, n_classes, LinearProbeConfig(), seed=cfg.seed, scaler=scaler).head
        probe = LinearProbeConfig(head="mlp", hidden=s.hidden, dropout=s.dropout)
        return fit_mlp(x, y, xv, yv, n_classes, probe, seed=cfg.seed, scaler=scaler).head
    head = ProbeHead(x.shape[1], n_classes, kind=s.head, hidden=s.hidden, dropout=s.dropout)
    head.set_scaler(*scaler)
    return head


def checkpoint_dir_of(cfg: RunConfig, identity: dict, arrays: list[np.ndarray]) -> Path:
    """Same strategy, seed, backbone, data and pretrained features -> same folder, so a rerun resumes.
    Options that do not change the training trajectory are left out (a rerun may change them)."""
    h = hashlib.sha256()
    keep_out = {"resume", "device", "compile", "checkpoint_every_steps", "eval_batch_size"}
    h.update(json.dumps({"strategy": cfg.strategy.model_dump(exclude=keep_out), "seed": cfg.seed,
                         "backbone": cfg.backbone.model_dump(exclude={"batch_size"}), "data": cfg.data.model_dump(),
                         "identity": identity}, sort_keys=True).encode())
    for a in arrays:
        h.update(a.tobytes())
    return Path(cfg.execution.work_dir) / "checkpoints" / h.hexdigest()[:20]


def finetune_step(cfg: RunConfig, features_dir: Path, out_dir: Path, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune the backbone + head on raw inputs; writes the best epoch as a full model package."""
    from tlops.strategies.finetune import finetune

    ds = open_dataset(cfg)
    feats = json.loads((Path(features_dir) / "features.json").read_text())
    labels = feats["labels"]
    x, y = _load_split(features_dir, "train")  # labels as indices come from the features step too
    xv, yv = _load_split(features_dir, "val")
    head = initial_head(cfg, x, y, xv, yv, len(labels))
    backbone = backbone_of(cfg)
    ckpt_dir = checkpoint_dir_of(cfg, feats["identity"], [x, y, xv, yv])
    t0 = time.perf_counter()
    result = finetune(backbone, ds.inputs("train"), y, ds.inputs("val"), yv, head, cfg.strategy, seed=cfg.seed,
                      checkpoint_dir=ckpt_dir, on_epoch=on_epoch)
    seconds = time.perf_counter() - t0
    backbone.fine_tuned = True  # export writes the trained weights, and the package identity hashes them
    summary = {"best_epoch": result.best_epoch, "val_macro_f1": result.val_macro_f1, "epochs_run": len(result.history),
               "stopped_early": result.stopped_early, "device": result.device, "precision": result.precision}
    package = save_package(Path(out_dir) / "package", backbone, result.head, labels,
                           extra={"strategy": cfg.strategy.model_dump(), "seed": cfg.seed, "fine_tune": summary})
    record = {"kind": "finetune", "package": str(package), "spec": result.head.spec, "history": result.history,
              "val_macro_f1": result.val_macro_f1, "seconds": seconds, "checkpoint_dir": str(ckpt_dir),
              "resumed_from": result.resumed_from, "skipped_checkpoints": result.skipped_checkpoints,
              "train_samples_per_s": result.train_samples / result.train_seconds if result.train_seconds else None,
              "history_logged": on_epoch is not None, **summary}
    (Path(out_dir) / "head.json").write_text(json.dumps(record, indent=1))
    return record


def load_head(head_record: dict) -> ProbeHead:
    s = head_record["spec"]
    head = ProbeHead(s["in_dim"], s["n_classes"], kind=s["kind"], hidden=s["hidden"], dropout=s["dropout"])
    head.load_state_dict(load_file(head_record["head_path"]))
    return head.eval()


def evaluate_step(cfg: RunConfig, features_dir: Path, head_record: dict, out_dir: Path) -> dict:
    labels = json.loads((Path(features_dir) / "features.json").read_text())["labels"]
    _, y = _load_split(features_dir, "test")
    y_true = [labels[i] for i in y]
    if "package" in head_record:  # fine-tuned: the cached features are the pretrained backbone's, so run the model
        y_pred = Predictor(head_record["package"]).predict(open_dataset(cfg).inputs("test"))
    else:
        head = load_head(head_record)
        x, _ = _load_split(features_dir, "test")
        with torch.inference_mode():
            y_pred = [labels[i] for i in head(torch.from_numpy(x)).argmax(1).numpy()]
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(y_true, y_pred, labels)
    report = per_class_report(y_true, y_pred, labels)
    cm = confusion_png(y_true, y_pred, labels, out_dir / "confusion_matrix.png")
    curves = curves_png(head_record["history"], out_dir / "learning_curves.png")
    (out_dir / "classification_report.json").write_text(json.dumps(report, indent=1))
    return {"metrics": metrics, "report_path": str(out_dir / "classification_report.json"),
            "plots": [str(p) for p in (cm, curves) if p is not None], "n_test": len(y_true)}


def package_step(cfg: RunConfig, features_dir: Path, head_record: dict, out_dir: Path) -> str:
    if "package" in head_record:  # the fine-tuning step already wrote it (best epoch, trained backbone)
        return head_record["package"]
    labels = json.loads((Path(features_dir) / "features.json").read_text())["labels"]
    return str(save_package(out_dir, backbone_of(cfg), load_head(head_record), labels,
                            extra={"strategy": cfg.strategy.model_dump(), "seed": cfg.seed}))


def run_core(cfg: RunConfig, work_dir: Path, progress: bool = False) -> dict:
    """The whole pipeline without Prefect or MLflow: the plain baseline."""
    work_dir = Path(work_dir)
    validate_step(cfg)
    feats = features_step(cfg, work_dir / "features", progress=progress)
    head = train_step(cfg, work_dir / "features", work_dir / "train")
    ev = evaluate_step(cfg, work_dir / "features", head, work_dir / "eval")
    pkg = package_step(cfg, work_dir / "features", head, work_dir / "package")
    if head.get("checkpoint_dir"):  # done: a rerun of this config starts fresh
        shutil.rmtree(head["checkpoint_dir"], ignore_errors=True)
    return {"features": feats, "train": head, "evaluate": ev, "package": pkg}
