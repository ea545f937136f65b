"""One plain training loop for every modality and every objective that trains the backbone.

It asks the objective for named loss terms, sums them and logs each per epoch; validates every epoch
with the task's metrics; stops early; keeps the best epoch; and writes an atomic checkpoint (weights,
optimizer, scheduler, RNG, and `LoopState`, which holds the data order) at every epoch end (and every N
steps if asked), from which a rerun after a crash continues and reaches the same result. What varies
between strategies comes in as arguments: the objective, the data, the options, the callbacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from tlops.checkpoint import latest_checkpoint, prune, read_checkpoint, save_checkpoint
from tlops.progress import loop_callbacks
from tlops.training import distributed
from tlops.training.batching import epoch_batches, generator, rank_slice, to_device
from tlops.training.callbacks import Callback
from tlops.training.objectives import Batch, ClassificationTask, LoopTask, Objective
from tlops.training.parts import discriminative_param_groups, gradual_top_n, set_trainable, warmup_then_decay

log = logging.getLogger(__name__)
BACKBONE_FILE, HEAD_FILE, OBJECTIVE_FILE = "backbone.safetensors", "head.safetensors", "objective.safetensors"
CHECKPOINT_FORMAT = 2  # part of the checkpoint folder's fingerprint: a format change never resumes an old folder


LOSS_FLUSH_STEPS = 50  # on a GPU: optimizer steps between reads of the running loss (see _Training.loss_sums)


def loss_flush_steps(device: torch.device) -> int:
    return 1 if device.type == "cpu" else LOSS_FLUSH_STEPS

@dataclass
class LoopState:
    """Where training is. Also exactly what a checkpoint stores besides tensors: resuming restores it."""

    epoch: int = 0
    batch: int = 0  # next batch of `epoch` (batch order is a pure function of seed and epoch)
    global_step: int = 0  # optimizer steps so far; schedules derive from it
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float = -math.inf  # the best selection score, oriented so that higher is better (`task.oriented`)
    best_epoch: int = -1
    since_best: int = 0
    epoch_losses: dict[str, float] = field(default_factory=dict)  # sum over this epoch's rows of each loss term
    epoch_seen: int = 0
    epoch_monitors: dict[str, float] = field(default_factory=dict)  # same for the objective's monitors (logged, not optimised)


@dataclass
class LoopOptions:
    """The loop's options, for a caller with no strategy config (a library `fit` of a task's model); the `finetune`
    strategy's `FinetuneConfig` holds the same keys with the same defaults, and is what a run passes."""

    epochs: int = 5
    batch_size: int = 32
    grad_accum_steps: int = 1
    head_lr: float = 1e-3
    backbone_lr: float = 5e-5  # the top backbone group's
    layer_decay: float = 1.0
    weight_decay: float = 0.01
    l2sp: float = 0.0
    schedule: str = "cosine"  # after the warm-up: cosine, linear or constant
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    patience: int = 3
    trainable: int | str = "all"
    unfreeze_every: int = 0
    bucket_by_length: bool = True
    augment: bool = True
    flip: bool = True
    norm_stats: str = "frozen"
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    checkpoint_every_steps: int = 0
    resume: bool = True
    eval_batch_size: int = 64


def maps_head_loop_options(c):
    """The loop's options of a head on the backbone's feature maps (detection, segmentation) from its config `c`: AdamW
    at `head_lr` (and `backbone_lr` for the tuned groups), warm-up then cosine decay, gradients clipped at norm 10,
    flips when `flip`, no early stop (patience = epochs)."""
    return LoopOptions(epochs=c.epochs, batch_size=c.batch_size, head_lr=c.head_lr, backbone_lr=c.backbone_lr, weight_decay=c.weight_decay,
                       trainable=c.trainable, warmup_ratio=c.warmup, schedule="cosine", max_grad_norm=10.0, patience=max(1, c.epochs),
                       augment=c.flip, flip=c.flip, eval_batch_size=16, resume=False)


@dataclass
class LoopResult:
    state: LoopState
    stopped_early: bool
    resumed_from: dict | None
    device: str
    precision: str
    train_samples: int  # examples seen in training steps (all processes of a DDP run together)
    train_seconds: float  # time in training steps (this process; rank 0 under DDP), validation excluded
    skipped_checkpoints: list[str] = field(default_factory=list)


class Net:
    """Backbone + head as one callable: model-ready inputs -> head outputs."""

    def __init__(self, backbone, head: nn.Module):
        self.backbone, self.head = backbone, head

    def features(self, inputs: Any) -> torch.Tensor:
        return self.backbone.embed(inputs)

    def __call__(self, inputs: Any) -> torch.Tensor:
        return self.head(self.features(inputs))


class TokenNet(Net):
    """Backbone + head per token: model-ready inputs -> (B, T, C) head outputs on the backbone's `token_states` (a tag
    per sub-word, a start/end logit per position). Its task validates by decoding them (`LoopTask.validate`)."""

    def features(self, inputs: Any) -> torch.Tensor:
        return self.backbone.token_states(inputs)


class LabelledData:
    """Rows of one split as model-ready batches: items encoded once (text: token ids), collated per batch
    (files decoded per batch, so memory stays one batch deep), augmented by the backbone when asked."""

    def __init__(self, backbone, items: Sequence[str], targets: np.ndarray):
        self.backbone = backbone
        self.encoded = backbone.encode(list(items))
        self.lengths = backbone.lengths(self.encoded)
        self.targets = targets
        t = torch.as_tensor(targets)  # class indices as int64 (cross-entropy); regression targets stay floats
        self._targets_t = t if t.is_floating_point() else t.long()

    def __len__(self) -> int:
        return len(self.encoded)

    def order(self, seed: int, epoch: int, batch_size: int, bucket_by_length: bool) -> list[list[int]]:
        return epoch_batches(len(self), batch_size, seed, epoch, self.lengths if bucket_by_length else None)

    def inputs(self, idx: Sequence[int]) -> Any:
        return self.backbone.collate([self.encoded[i] for i in idx])

    def batch(self, idx: Sequence[int], g: torch.Generator | None = None, flip: bool = True) -> Batch:
        inputs = self.inputs(idx)
        if g is not None:
            inputs = self.backbone.augment(inputs, g, flip=flip)
        return Batch(inputs, self._targets_t[idx])


def resolve_device(device: str, precision: str) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype or None for fp32)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("strategy.device is 'cuda' but no CUDA device is visible; use device: auto or cpu")
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    if precision == "bf16" or (precision == "auto" and dev.type == "cuda" and torch.cuda.is_bf16_supported()):
        return dev, torch.bfloat16
    return dev, None


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


def evaluate_outputs(net: Net, data: LabelledData, batch_size: int, device: torch.device, amp: torch.dtype | None) -> torch.Tensor:
    """(N, C) head outputs in eval mode, on the CPU; length-sorted batches (least padding) when items vary in length."""
    return evaluate_net(net, data, batch_size, device, amp)[1]


def evaluate_net(net: Net, data: LabelledData, batch_size: int, device: torch.device,
                 amp: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """((N, D) backbone features, (N, C) head outputs) in eval mode, on the CPU."""
    n = len(data)
    order = sorted(range(n), key=lambda i: -data.lengths[i]) if data.lengths else list(range(n))
    feats: torch.Tensor | None = None
    out: torch.Tensor | None = None
    net.backbone.model.eval()
    net.head.eval()
    with torch.inference_mode(), _autocast(device, amp):
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            f = net.features(to_device(data.inputs(idx), device))
            y = net.head(f).float().cpu()
            if out is None:
                feats, out = torch.empty((n, f.shape[1])), torch.empty((n, y.shape[1]))
            feats[idx], out[idx] = f.float().cpu(), y
    if out is None:
        return torch.empty((0, 0)), torch.empty((0, 0))
    return feats, out


@dataclass
class Evaluation:
    """What a task's `validate` runs the net with: the loop's device, autocast precision and eval batch size."""

    net: Net
    batch_size: int
    device: torch.device
    amp: torch.dtype | None

    def outputs(self, data: LabelledData) -> torch.Tensor:
        """(N, C) head outputs of every row of `data` in eval mode, on the CPU."""
        return evaluate_outputs(self.net, data, self.batch_size, self.device, self.amp)

    def autocast(self):
        return _autocast(self.device, self.amp)

    def eval(self) -> None:
        self.net.backbone.model.eval()
        self.net.head.eval()


def checkpoint_dir_for(work_dir: str | Path, parts: dict[str, Any], arrays: Sequence[np.ndarray]) -> Path:
    """Same parts (strategy options, seed, backbone, data, ...) and arrays -> same folder, so a rerun resumes."""
    h = hashlib.sha256(json.dumps({**parts, "checkpoint_format": CHECKPOINT_FORMAT}, sort_keys=True).encode())
    for a in arrays:
        h.update(a.tobytes())
    return Path(work_dir) / "checkpoints" / h.hexdigest()[:20]


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class _Training:
    """The parts of one `fit` call that live across epochs: modules on the device, which groups train,
    optimizer, schedule, and checkpoint writing/reading."""

    def __init__(self, net: Net, objective: Objective, n_train: int, opts, checkpoint_dir: Path | None):
        self.net, self.objective, self.opts, self.checkpoint_dir = net, objective, opts, checkpoint_dir
        self.device, self.amp = resolve_device(opts.device, opts.precision)
        # loss sums since the last flush, kept on the device: reading a CUDA loss every batch (`float(loss)`) would
        # make the host wait for the GPU each step; a GPU flushes every LOSS_FLUSH_STEPS optimizer steps (and at
        # every epoch end and checkpoint), the CPU every step (no wait there, and the live progress line stays current)
        self.loss_sums: dict[str, torch.Tensor] = {}
        self.flush_every = loss_flush_steps(self.device)
        self.dist = distributed.current()  # None: one process, the loop as it always was
        self.model = net.backbone.model
        self.modules = {BACKBONE_FILE: self.model, HEAD_FILE: net.head}  # checkpoint file -> module
        if any(True for _ in objective.state_dict()):  # an objective with weights of its own (a discriminator)
            self.modules[OBJECTIVE_FILE] = objective
        for m in (self.model, net.head, objective):
            m.to(self.device)  # the objective too: its non-persistent buffers (e.g. L2-SP anchors)
        if opts.compile:
            self.model.compile()  # in place: state_dict keys stay the same
        self.groups = net.backbone.parameter_groups()
        set_trainable(self.groups, self.top_n(0))
        param_groups = discriminative_param_groups(self.groups, net.head, opts.head_lr, opts.backbone_lr, opts.layer_decay,
                                                   opts.weight_decay, backbone_weight_decay=0.0 if opts.l2sp > 0 else None)
        own = [p for p in objective.parameters() if p.requires_grad]
        if own:  # the objective's own modules train at the head's rate
            param_groups.append({"name": "objective", "params": own, "lr": opts.head_lr, "weight_decay": opts.weight_decay})
        self.opt = torch.optim.AdamW(param_groups, fused=self.device.type in ("cpu", "cuda"))  # one fused kernel per step
        self.params = [p for g in self.opt.param_groups for p in g["params"]]  # every parameter, for clipping
        steps_per_epoch = math.ceil(math.ceil(n_train / opts.batch_size) / opts.grad_accum_steps)
        total_steps = opts.epochs * steps_per_epoch
        self.sched = warmup_then_decay(self.opt, int(round(opts.warmup_ratio * total_steps)), total_steps, opts.schedule)
        if self.dist is not None:
            self.replicated = distributed.Replicated(distributed.Joint(net, objective), self.device)
            self.pending: dict[str, Any] = {"losses": {}, "monitors": {}, "seen": 0}  # this rank's sums since the last merge

    def top_n(self, epoch: int) -> int | None:
        """How many top backbone groups train in this epoch (None: all)."""
        o = self.opts
        if o.trainable == "all":
            return None
        return gradual_top_n(epoch, o.unfreeze_every, start=o.trainable) if o.unfreeze_every else o.trainable

    def resume(self) -> tuple[LoopState | None, dict | None, list[str]]:
        """(restored state or None, the best epoch's weights or None, names of damaged checkpoints skipped)."""
        if self.checkpoint_dir is None or not self.opts.resume:
            return None, None, []
        ckpt, skipped = latest_checkpoint(self.checkpoint_dir)
        if skipped:
            log.warning("skipped incomplete or damaged checkpoints %s in %s", skipped, self.checkpoint_dir)
        if ckpt is None:
            return None, None, skipped
        state = LoopState(**ckpt.meta["state"])
        set_trainable(self.groups, self.top_n(state.epoch))
        for file, m in self.modules.items():
            m.load_state_dict(ckpt.tensors(file))
        saved = ckpt.state()
        self.opt.load_state_dict(saved["optimizer"])
        self.sched.load_state_dict(saved["scheduler"])
        ranks = saved.get("rng_ranks")  # a DDP run's per-rank RNG (dropout streams differ per rank)
        _set_rng_state(ranks[self.dist.rank] if self.dist is not None and ranks and len(ranks) == self.dist.world else saved["rng"])
        best = read_checkpoint(Path(self.checkpoint_dir) / "best")
        log.info("resuming from %s (epoch %d, batch %d)", ckpt.path, state.epoch, state.batch)
        self.resumed_from = {"checkpoint": ckpt.path.name, "epoch": state.epoch, "batch": state.batch, "global_step": state.global_step}
        if self.dist is not None:
            self.dist.barrier()  # every rank has read it before rank 0 may write (and prune) the next one
        return state, ({file: best.tensors(file) for file in self.modules} if best else None), skipped

    def save(self, name: str, state: LoopState) -> None:
        """Called on every rank under DDP (it gathers each rank's RNG); only rank 0 writes."""
        if self.checkpoint_dir is None:
            return
        trainer = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "rng": _rng_state()}
        if self.dist is not None:
            trainer["rng_ranks"] = self.dist.gather(trainer["rng"])
            if not self.dist.is_main:
                self.dist.barrier()
                return
        save_checkpoint(self.checkpoint_dir, name, {file: m.state_dict() for file, m in self.modules.items()},
                        meta={"state": asdict(state)}, state=trainer)
        prune(self.checkpoint_dir)
        if self.dist is not None:
            self.dist.barrier()  # a rank that fails right after this step finds the checkpoint complete

    def flush_losses(self, state: LoopState) -> None:
        """Add the on-device loss sums into `state` (one host sync for all the steps since the last flush)."""
        for k, v in self.loss_sums.items():
            state.epoch_losses[k] = state.epoch_losses.get(k, 0.0) + float(v)
        self.loss_sums = {}

    def merge_sums(self, state: LoopState) -> None:
        """Flush the loss sums into `state`; DDP: add every rank's loss/monitor sums and row counts since the last
        merge into it, so the state (and a checkpoint of it) holds the global batch's sums, as in one process."""
        self.flush_losses(state)
        if self.dist is None:
            return
        self.pending["losses"] = {k: float(v) for k, v in self.pending["losses"].items()}  # the one host sync per merge
        for p in self.dist.gather(self.pending):
            for part, into in (("losses", state.epoch_losses), ("monitors", state.epoch_monitors)):
                for k, v in p[part].items():
                    into[k] = into.get(k, 0.0) + v
            state.epoch_seen += p["seen"]
        self.pending = {"losses": {}, "monitors": {}, "seen": 0}

    def train_epoch(self, state: LoopState, train: LabelledData, seed: int, callbacks: Sequence[Callback]) -> int:
        """The rest of `state.epoch` from batch `state.batch` on; returns the examples seen."""
        o, epoch, seen = self.opts, state.epoch, 0
        set_trainable(self.groups, self.top_n(epoch))
        for m in (self.model, self.net.head, self.objective):
            m.train()
        freeze_norm_stats(self.model, all_layers=o.norm_stats == "frozen")
        order = train.order(seed, epoch, o.batch_size, o.bucket_by_length)
        for cb in callbacks:
            cb.on_epoch_begin(state, len(order), o.epochs)
        self.opt.zero_grad(set_to_none=True)
        for b in range(state.batch, len(order)):
            # each micro-batch's share of the accumulated step
            in_step = min(o.grad_accum_steps, len(order) - (b // o.grad_accum_steps) * o.grad_accum_steps)
            ends_step = (b + 1) % o.grad_accum_steps == 0 or b + 1 == len(order)
            if self.dist is not None:
                seen += self.ddp_micro_batch(state, train, order[b], seed, b, in_step, ends_step)
            else:
                idx = order[b]
                batch = train.batch(idx, generator(seed, epoch, b) if o.augment else None, flip=o.flip)
                batch = Batch(to_device(batch.inputs, self.device), batch.targets.to(self.device))
                with _autocast(self.device, self.amp):
                    terms = self.objective(self.net, batch, state.global_step)
                (sum(terms.values()) / in_step).backward()
                for k, v in terms.items():  # float64 sums, as the host's were
                    self.loss_sums[k] = self.loss_sums.get(k, 0.0) + v.detach().double() * len(idx)
                for k, v in self.objective.monitors().items():
                    state.epoch_monitors[k] = state.epoch_monitors.get(k, 0.0) + v * len(idx)
                state.epoch_seen += len(idx)
                seen += len(idx)
            if ends_step:
                if o.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self.params, o.max_grad_norm)
                self.opt.step()
                self.sched.step()
                self.opt.zero_grad(set_to_none=True)
                state.global_step += 1
                state.batch = b + 1
                if state.global_step % self.flush_every == 0:
                    self.flush_losses(state)
                if o.checkpoint_every_steps and state.global_step % o.checkpoint_every_steps == 0 and b + 1 < len(order):
                    self.merge_sums(state)
                    self.save(f"step-{state.global_step:09d}", state)
                for cb in callbacks:
                    cb.on_step_end(state)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.merge_sums(state)
        return seen

    def ddp_micro_batch(self, state: LoopState, train: LabelledData, global_idx: list[int], seed: int, b: int,
                        in_step: int, ends_step: bool) -> int:
        """This rank's share of global batch `b`: forward and backward through the DDP wrapper, the loss
        weighted so the all-reduced gradient is the global batch's (`distributed.rank_weight`); gradients
        are all-reduced only on the micro-batch that ends an optimizer step. Returns the rows it trained on.
        Augmentation draws from the batch's generator over this rank's rows only: with augmentation (or
        dropout) the random draws differ from one process's, so runs agree in distribution, not bit for bit."""
        o, d = self.opts, self.dist
        idx = rank_slice(global_idx, d.rank, d.world)
        n = len(idx)
        # a batch with fewer rows than ranks leaves a rank empty: it runs one row at weight 0 (collectives stay in step)
        batch = train.batch(idx or global_idx[:1], generator(seed, state.epoch, b) if o.augment else None, flip=o.flip)
        batch = Batch(to_device(batch.inputs, self.device), batch.targets.to(self.device))
        weight = distributed.rank_weight(n, len(global_idx), d.world)
        ddp = self.replicated.module()
        with self.replicated.step_context(ends_step):
            with _autocast(self.device, self.amp):
                terms = ddp(batch, state.global_step)
            (sum(terms.values()) * (weight / in_step)).backward()
        p = self.pending
        for k, v in terms.items():  # a tensor until the merge: no host sync per micro-batch
            p["losses"][k] = p["losses"].get(k, 0.0) + v.detach().double() * n
        for k, v in self.objective.monitors().items():
            p["monitors"][k] = p["monitors"].get(k, 0.0) + v * n
        p["seen"] += n
        return n

    def epoch_row(self, state: LoopState, val: LabelledData, task: LoopTask, train_seconds: float) -> dict[str, float]:
        """The epoch's training loss (total, and each term when there are several), validation metrics, LRs."""
        seen = max(1, state.epoch_seen)
        row = {"epoch": state.epoch, "train_loss": sum(state.epoch_losses.values()) / seen}
        if len(state.epoch_losses) > 1:
            row.update({f"train_loss_{k}": v / seen for k, v in state.epoch_losses.items()})
        row.update({k: v / seen for k, v in state.epoch_monitors.items()})
        row.update(task.validate(self.net, val, Evaluation(self.net, self.opts.eval_batch_size, self.device, self.amp)))
        # looked up each time: a resumed optimizer's load_state_dict replaces the group dicts
        top_group = [g for g in self.opt.param_groups if g["name"].startswith("backbone.")][-1:]  # none: a head on cached states
        row.update({"lr_head": self.opt.param_groups[0]["lr"], **({"lr_backbone_top": top_group[0]["lr"]} if top_group else {}),
                    "trainable_groups": sum(1 for g in self.groups if g and g[0].requires_grad), "epoch_train_seconds": train_seconds})
        return row


EpochMetrics = Callable[[Callable[[LabelledData], "tuple[torch.Tensor, torch.Tensor]"]], dict[str, float]]


def fit(net: Net, objective: Objective, train: LabelledData, val: LabelledData, opts, seed: int = 0,
        task: LoopTask | None = None, checkpoint_dir: Path | None = None,
        callbacks: Sequence[Callback] = (), epoch_metrics: EpochMetrics | None = None) -> LoopResult:
    """Train `net` (backbone + head, already initialised) on `objective` with the loop options `opts` (a
    `FinetuneConfig` or a config extending it). Returns with the best epoch's weights loaded into the
    backbone, the head and the objective, on the CPU.

    `epoch_metrics`, if given, adds to each epoch's row (before the best epoch is chosen, so the task may
    select on them): it gets a function that evaluates the net on any data -> (features, outputs)."""
    task = task or ClassificationTask()
    torch.manual_seed(seed)
    random.seed(seed)
    run = _Training(net, objective, len(train), opts, checkpoint_dir)
    restored, best_state, skipped = run.resume()
    state = restored or LoopState()
    callbacks = [*callbacks, *loop_callbacks()]  # live progress, when a front end installed a display
    try:
        for row in state.history:  # a resumed run's new MLflow run gets the curves of the epochs it inherited
            for cb in callbacks:
                cb.on_epoch_end(state, row)
        train_samples, train_seconds = 0, 0.0
        stopped_early = state.since_best >= opts.patience
        while state.epoch < opts.epochs and not stopped_early:
            t0 = time.perf_counter()
            train_samples += run.train_epoch(state, train, seed, callbacks)
            epoch_seconds = time.perf_counter() - t0
            train_seconds += epoch_seconds
            def validate() -> dict[str, float]:
                row = run.epoch_row(state, val, task, epoch_seconds)
                if epoch_metrics is not None:
                    row.update(epoch_metrics(lambda data: evaluate_net(net, data, opts.eval_batch_size, run.device, run.amp)))
                return row

            # DDP: rank 0 validates and every rank takes its row, so best epoch and early stop agree everywhere
            row = validate() if run.dist is None else run.dist.from_main(validate)
            state.history.append(row)
            score = task.oriented(row[task.selection_metric])
            if score > state.best_metric:
                state.best_metric, state.best_epoch, state.since_best = score, state.epoch, 0
                best_state = {file: _copy_state(m) for file, m in run.modules.items()}
                if checkpoint_dir is not None and (run.dist is None or run.dist.is_main):
                    save_checkpoint(checkpoint_dir, "best", best_state, meta={"epoch": state.epoch, task.selection_metric: row[task.selection_metric]})
            else:
                state.since_best += 1
            state.epoch, state.batch, state.epoch_losses, state.epoch_seen, state.epoch_monitors = state.epoch + 1, 0, {}, 0, {}
            run.save(f"step-{state.global_step:09d}", state)
            for cb in callbacks:
                cb.on_epoch_end(state, row)
            stopped_early = state.since_best >= opts.patience and state.epoch < opts.epochs
            if stopped_early:
                log.info("early stop after epoch %d: no better %s for %d epochs", state.epoch - 1, task.selection_metric, opts.patience)
    finally:  # a display stops before an error is printed
        for cb in callbacks:
            cb.on_fit_end(state)

    if run.dist is not None:
        train_samples = run.dist.sum_int(train_samples)
    for m in (run.model, net.head, objective):
        m.to("cpu")
    if best_state is not None:
        for file, m in run.modules.items():
            m.load_state_dict(best_state[file])
    for m in run.modules.values():
        m.eval()
    return LoopResult(state=state, stopped_early=stopped_early, resumed_from=run.resumed_from if restored else None,
                      device=str(run.device), precision="bf16" if run.amp is not None else "fp32", train_samples=train_samples,
                      train_seconds=train_seconds, skipped_checkpoints=skipped)
