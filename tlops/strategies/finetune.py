"""Fine-tuning strategy: train the backbone together with a new head, composed from the primitives in
`finetune_parts` (which groups train, per-group LRs, L2-SP, schedule).

One plain loop for every modality: validation every epoch, early stopping, the best epoch kept, and an
atomic checkpoint (weights, optimizer, scheduler, RNG, data order) at every epoch end (and every N steps if
asked), from which a rerun after a crash continues and reaches the same result.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from tlops.checkpoint import latest_checkpoint, prune, read_checkpoint, save_checkpoint
from tlops.config import FinetuneConfig
from tlops.modules.heads import ProbeHead
from tlops.strategies.batching import augment, epoch_batches, generator, to_device
from tlops.strategies.finetune_parts import L2SP, discriminative_param_groups, gradual_top_n, set_trainable, warmup_then_decay

log = logging.getLogger(__name__)
# Fault injection for the crash-safety test: SIGKILL this process right after optimizer step N.
FAULT_ENV = "TLOPS_FAULT_SIGKILL_AT_STEP"
BACKBONE_FILE, HEAD_FILE = "backbone.safetensors", "head.safetensors"


@dataclass
class FinetuneResult:
    head: ProbeHead
    history: list[dict]
    best_epoch: int
    val_macro_f1: float
    stopped_early: bool
    resumed_from: dict | None
    device: str
    precision: str
    train_samples: int  # examples seen in training steps (all epochs, this process)
    train_seconds: float  # time in training steps (all epochs, this process), validation excluded
    skipped_checkpoints: list[str] = field(default_factory=list)


def resolve_device(cfg: FinetuneConfig) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype or None for fp32)."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("strategy.device is 'cuda' but no CUDA device is visible; use device: auto or cpu")
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return device, torch.bfloat16
    return device, None


class _Inputs:
    """Makes model-ready batches from dataset rows: text tokenised once (dynamic padding per batch),
    files decoded per batch so memory stays one batch deep."""

    def __init__(self, backbone, items: Sequence[str]):
        self.backbone, self.items = backbone, list(items)
        self.token_ids = backbone.tokenize(self.items) if backbone.modality == "text" else None

    @property
    def lengths(self) -> list[int] | None:
        return None if self.token_ids is None else [len(t) for t in self.token_ids]

    def batch(self, idx: Sequence[int]) -> Any:
        if self.token_ids is not None:
            return self.backbone.collate([self.token_ids[i] for i in idx])
        return self.backbone.preprocess([self.items[i] for i in idx])


def freeze_norm_stats(model: nn.Module, all_layers: bool) -> None:
    """BatchNorm layers keep their pretrained running statistics (eval mode): all of them, or those whose
    weights are frozen. Batch statistics of a small target set (e.g. 64 px grayscale clothes through an
    ImageNet CNN) are far from the pretrained ones; updating them wrecked Fashion-MNIST fine-tuning
    (val macro-F1 0.66 vs 0.86 with frozen statistics, bench/RESULTS.md)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (all_layers or not any(p.requires_grad for p in m.parameters(recurse=False))):
            m.eval()


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _autocast(device: torch.device, amp: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()


def evaluate_logits(backbone, head: nn.Module, inputs: _Inputs, batch_size: int, device: torch.device,
                    amp: torch.dtype | None) -> torch.Tensor:
    """(N, C) logits in eval mode; text in longest-first batches (least padding)."""
    n = len(inputs.items)
    lengths = inputs.lengths
    order = sorted(range(n), key=lambda i: -lengths[i]) if lengths else list(range(n))
    out = torch.empty((n, head.spec["n_classes"]))
    backbone.model.eval()
    head.eval()
    with torch.inference_mode(), _autocast(device, amp):
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            out[idx] = head(backbone.embed(to_device(inputs.batch(idx), device))).float().cpu()
    return out


def finetune(backbone, train_items: Sequence[str], y_train: np.ndarray, val_items: Sequence[str], y_val: np.ndarray,
             head: ProbeHead, cfg: FinetuneConfig, seed: int = 0, checkpoint_dir: Path | None = None,
             on_epoch: Callable[[dict], None] | None = None) -> FinetuneResult:
    """Fine-tune `backbone` + `head` (already initialised: random, or from a linear probe for LP-FT).
    Returns with the best epoch's weights loaded into both, on the CPU."""
    device, amp = resolve_device(cfg)
    torch.manual_seed(seed)
    random.seed(seed)
    model = backbone.model
    model.to(device)
    head.to(device)
    if cfg.compile:
        model.compile()  # in place: state_dict keys stay the same
    groups = backbone.parameter_groups()
    backbone_params = [p for g in groups for p in g]

    def top_n(epoch: int) -> int | None:
        if cfg.trainable == "all":
            return None
        return gradual_top_n(epoch, cfg.unfreeze_every, start=cfg.trainable) if cfg.unfreeze_every else cfg.trainable

    set_trainable(groups, top_n(0))
    opt = torch.optim.AdamW(discriminative_param_groups(
        groups, head, cfg.head_lr, cfg.backbone_lr, cfg.layer_decay, cfg.weight_decay,
        backbone_weight_decay=0.0 if cfg.l2sp > 0 else None),  # L2-SP replaces plain decay on the backbone
        fused=device.type in ("cpu", "cuda"))  # one fused kernel per step instead of a Python loop over tensors
    optimized = [p for g in opt.param_groups for p in g["params"]]  # every parameter, for clipping
    train, val = _Inputs(backbone, train_items), _Inputs(backbone, val_items)
    y_train_t = torch.as_tensor(y_train, dtype=torch.long)
    n_batches = math.ceil(len(train.items) / cfg.batch_size)
    steps_per_epoch = math.ceil(n_batches / cfg.grad_accum_steps)
    total_steps = cfg.epochs * steps_per_epoch
    sched = warmup_then_decay(opt, int(round(cfg.warmup_ratio * total_steps)), total_steps, cfg.schedule)
    l2sp = L2SP(backbone_params, cfg.l2sp) if cfg.l2sp > 0 else None
    loss_fn = nn.CrossEntropyLoss()
    time_axis = getattr(backbone, "time_axis", -1)

    progress = {"epoch": 0, "batch": 0, "global_step": 0, "history": [], "best_metric": -1.0, "best_epoch": -1,
                "since_best": 0, "epoch_loss": 0.0, "epoch_seen": 0}
    best_state: dict[str, dict[str, torch.Tensor]] | None = None
    resumed_from, skipped = None, []
    if checkpoint_dir is not None and cfg.resume:
        ckpt, skipped = latest_checkpoint(checkpoint_dir)
        if skipped:
            log.warning("skipped incomplete or damaged checkpoints %s in %s", skipped, checkpoint_dir)
        if ckpt is not None:
            progress = ckpt.meta["progress"]
            set_trainable(groups, top_n(progress["epoch"]))
            model.load_state_dict(ckpt.tensors(BACKBONE_FILE))
            head.load_state_dict(ckpt.tensors(HEAD_FILE))
            state = ckpt.state()
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"])
            best = read_checkpoint(Path(checkpoint_dir) / "best")
            if best is not None:
                best_state = {"backbone": best.tensors(BACKBONE_FILE), "head": best.tensors(HEAD_FILE)}
            resumed_from = {"checkpoint": ckpt.path.name, "epoch": progress["epoch"], "batch": progress["batch"],
                            "global_step": progress["global_step"]}
            log.info("resuming from %s (epoch %d, batch %d)", ckpt.path, progress["epoch"], progress["batch"])
            for row in progress["history"]:  # the new run gets the curves of the epochs it inherited
                if on_epoch:
                    on_epoch(row)

    def save(name: str) -> None:
        if checkpoint_dir is None:
            return
        save_checkpoint(checkpoint_dir, name, {BACKBONE_FILE: model.state_dict(), HEAD_FILE: head.state_dict()},
                        meta={"progress": progress},
                        state={"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state()})
        prune(checkpoint_dir)

    kill_at = int(os.environ.get(FAULT_ENV, "0") or 0)
    train_samples, train_seconds = 0, 0.0
    stopped_early = progress["since_best"] >= cfg.patience
    while progress["epoch"] < cfg.epochs and not stopped_early:
        epoch = progress["epoch"]
        set_trainable(groups, top_n(epoch))
        model.train()
        head.train()
        freeze_norm_stats(model, all_layers=cfg.norm_stats == "frozen")
        order = epoch_batches(len(train.items), cfg.batch_size, seed, epoch, train.lengths if cfg.bucket_by_length else None)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for b in range(progress["batch"], len(order)):
            idx = order[b]
            batch = train.batch(idx)
            if cfg.augment:
                batch = augment(batch, backbone.modality, generator(seed, epoch, b), flip=cfg.flip, time_axis=time_axis)
            with _autocast(device, amp):
                logits = head(backbone.embed(to_device(batch, device)))
                loss = loss_fn(logits.float(), y_train_t[idx].to(device))
            # each micro-batch's share of the accumulated step
            in_step = min(cfg.grad_accum_steps, len(order) - (b // cfg.grad_accum_steps) * cfg.grad_accum_steps)
            (loss / in_step).backward()
            progress["epoch_loss"] += float(loss.detach()) * len(idx)
            progress["epoch_seen"] += len(idx)
            train_samples += len(idx)
            if (b + 1) % cfg.grad_accum_steps == 0 or b + 1 == len(order):
                if l2sp is not None:
                    l2sp().backward()
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(optimized, cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                progress["global_step"] += 1
                progress["batch"] = b + 1
                if cfg.checkpoint_every_steps and progress["global_step"] % cfg.checkpoint_every_steps == 0 and b + 1 < len(order):
                    save(f"step-{progress['global_step']:09d}")
                if kill_at and progress["global_step"] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_train_s = time.perf_counter() - t0
        train_seconds += epoch_train_s
        logits = evaluate_logits(backbone, head, val, cfg.eval_batch_size, device, amp)
        pred = logits.argmax(1).numpy()
        row = {"epoch": epoch, "train_loss": progress["epoch_loss"] / max(1, progress["epoch_seen"]),
               "val_loss": float(nn.functional.cross_entropy(logits, torch.as_tensor(y_val, dtype=torch.long))),
               "val_macro_f1": float(f1_score(y_val, pred, average="macro")), "val_accuracy": float(accuracy_score(y_val, pred)),
               "lr_head": opt.param_groups[0]["lr"], "lr_backbone_top": opt.param_groups[-1]["lr"],
               "trainable_groups": sum(1 for g in groups if g and g[0].requires_grad), "epoch_train_seconds": epoch_train_s}
        progress["history"].append(row)
        if row["val_macro_f1"] > progress["best_metric"]:
            progress.update(best_metric=row["val_macro_f1"], best_epoch=epoch, since_best=0)
            best_state = {"backbone": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                          "head": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}}
            if checkpoint_dir is not None:
                save_checkpoint(checkpoint_dir, "best", {BACKBONE_FILE: best_state["backbone"], HEAD_FILE: best_state["head"]},
                                meta={"epoch": epoch, "val_macro_f1": row["val_macro_f1"]})
        else:
            progress["since_best"] += 1
        progress.update(epoch=epoch + 1, batch=0, epoch_loss=0.0, epoch_seen=0)
        save(f"step-{progress['global_step']:09d}")
        if on_epoch:
            on_epoch(row)
        stopped_early = progress["since_best"] >= cfg.patience and progress["epoch"] < cfg.epochs
        if stopped_early:
            log.info("early stop after epoch %d: no better val macro-F1 for %d epochs", epoch, cfg.patience)

    model.to("cpu")
    head.to("cpu")
    if best_state is not None:
        model.load_state_dict(best_state["backbone"])
        head.load_state_dict(best_state["head"])
    model.eval()
    head.eval()
    return FinetuneResult(head=head, history=copy.deepcopy(progress["history"]), best_epoch=progress["best_epoch"],
                          val_macro_f1=progress["best_metric"], stopped_early=stopped_early, resumed_from=resumed_from,
                          device=str(device), precision="bf16" if amp is not None else "fp32",
                          train_samples=train_samples, train_seconds=train_seconds, skipped_checkpoints=skipped)
