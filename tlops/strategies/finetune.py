"""Fine-tuning (`finetune`): train the backbone (all, the top N groups, or gradually more) together with a
new head, on the shared training loop with a supervised objective (plus L2-SP when asked). The dataset's task
type picks the head's width, the loss (cross-entropy, or MSE/Huber on the standardised target) and the
validation metric that keeps the best epoch (macro-F1, or MAE for regression)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

from pydantic import Field, field_validator, model_validator

from tlops.config_base import Strict
from tlops.records import PackageResult
from tlops.strategies.context import (
    NOT_IN_FINGERPRINT,
    TrainContext,
    loop_summary,
    run_checkpoint_dir,
)
from tlops.strategies.registry import register_strategy

if TYPE_CHECKING:
    import numpy as np

    from tlops.backbones.base import Backbone
    from tlops.modules.heads import ProbeHead
    from tlops.training.callbacks import Callback
    from tlops.training.loop import LoopResult

__all__ = ["NOT_IN_FINGERPRINT", "FinetuneConfig", "finetune", "initial_head", "loop_summary", "run_checkpoint_dir", "train"]


class FinetuneConfig(Strict):
    """Train the backbone (all, the top N groups, or gradually more) together with a new head."""

    name: Literal["finetune"] = "finetune"
    head: Literal["linear", "mlp"] = "linear"
    hidden: int = Field(256, ge=1, description="MLP head hidden width")
    dropout: float = Field(0.1, ge=0, lt=1, description="MLP head dropout")
    trainable: Literal["all"] | int = Field("all", description="backbone groups that train: 'all', or the top N (0: head only)")
    unfreeze_every: int = Field(0, ge=0, description="gradual unfreezing: one more group every N epochs, starting from `trainable` (0: off)")
    lp_ft: bool = Field(False, description="LP-FT: fit a logistic-regression (regression: ridge) head on the cached frozen features first, fine-tune from it")
    loss: Literal["mse", "huber"] = Field("mse", description="regression dataset: loss on the standardised target")
    huber_delta: float = Field(1.0, gt=0, description="Huber loss: quadratic within this many target std's, linear beyond")
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    grad_accum_steps: int = Field(1, ge=1, description="optimizer step every N batches (effective batch = batch_size * N)")
    head_lr: float = Field(1e-3, gt=0)
    backbone_lr: float = Field(5e-5, gt=0, description="learning rate of the top backbone group")
    layer_decay: float = Field(1.0, gt=0, le=1, description="each lower group's LR is multiplied by this once more")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay (not on biases/norms; backbone gets none when l2sp > 0)")
    l2sp: float = Field(0.0, ge=0, description="L2-SP weight: l2sp/2 * ||w - w_pretrained||^2 over the backbone")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of optimizer steps spent warming up linearly")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the global gradient norm (null: no clipping)")
    patience: int = Field(3, ge=1, description="early stopping: stop after this many epochs without a better val macro-F1 (regression: val MAE)")
    bucket_by_length: bool = Field(True, description="text: batches of similar length (less padding), in shuffled order")
    augment: bool = Field(True, description="image: random resized crop + horizontal flip; audio: random time shift")
    flip: bool = Field(True, description="image augmentation: horizontal flips (turn off for text-like images)")
    norm_stats: Literal["frozen", "train"] = Field("frozen", description="BatchNorm running statistics: kept from pretraining (small target sets) or updated")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on a GPU that supports it, else fp32")
    compile: bool = Field(False, description="torch.compile the backbone (pays off on GPU; off by default)")
    checkpoint_every_steps: int = Field(0, ge=0, description="also checkpoint inside an epoch every N optimizer steps (0: end of epoch only)")
    resume: bool = Field(True, description="a rerun of the same config + data resumes from the last complete checkpoint")
    eval_batch_size: int = Field(64, ge=1)

    @classmethod
    def starter_changes(cls, strategy: dict, task: str, modality: str) -> tuple[dict, dict]:
        """(values, their comments) `tlops init` changes in this strategy's starter section for a dataset of `task` (one
        without classes): image augmentation goes off, since a crop or a mirror can change a number."""
        from tlops.task_types import task_type

        if cls is FinetuneConfig and modality == "image" and strategy.get("augment") and not task_type(task).class_probabilities:
            return {"augment": False}, {"augment": "off: a random crop or a mirror can change a number (a size, a signed angle)"}
        return {}, {}

    @field_validator("trainable")
    @classmethod
    def _trainable_non_negative(cls, v):
        if isinstance(v, int) and v < 0:
            raise ValueError("give 'all' or a number of top groups >= 0 (0 trains only the head)")
        return v

    @model_validator(mode="after")
    def _gradual_needs_a_start(self):
        if self.unfreeze_every and self.trainable == "all":
            raise ValueError("unfreeze_every needs a starting number of groups: set trainable to an int (e.g. 0) or unfreeze_every to 0")
        return self




def initial_head(cfg: FinetuneConfig, seed: int, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int,
                 task: str = "classification") -> ProbeHead:
    """The head before fine-tuning: for LP-FT a probe fitted on the frozen (cached) features, otherwise a
    fresh head; both standardise with the pretrained train features' mean/std (std floored). `n_classes`:
    the head's output width (1 for regression); a regression head also carries the train targets' scaler."""
    import torch

    from tlops.modules.heads import ProbeHead
    from tlops.strategies.linear_probe import LinearProbeConfig
    from tlops.task_types import task_type, train_probe, training_task
    from tlops.training.probe import finetune_scaler

    scaler = finetune_scaler(x)
    torch.manual_seed(seed)
    if cfg.lp_ft:
        linear = task_type(task).heads[0]  # the task's linear probe head (logreg, ridge) comes first
        probe = LinearProbeConfig(head=linear if cfg.head == "linear" else "mlp", hidden=cfg.hidden, dropout=cfg.dropout,
                                  loss=cfg.loss, huber_delta=cfg.huber_delta)
        return train_probe(x, y, xv, yv, n_classes, probe, seed=seed, task=task, scaler=scaler, curve=False).head
    head = ProbeHead(x.shape[1], n_classes, kind=cfg.head, hidden=cfg.hidden, dropout=cfg.dropout, task=task)
    head.set_scaler(*scaler)
    training_task(task, y, cfg).init_head(head)
    return head


def finetune(backbone: Backbone, train_items: Sequence[str], y_train: np.ndarray, val_items: Sequence[str], y_val: np.ndarray,
             head: ProbeHead, cfg: FinetuneConfig, seed: int = 0, checkpoint_dir: Path | None = None,
             callbacks: Sequence[Callback] = (), task: str = "classification") -> LoopResult:
    """Fine-tune `backbone` + `head` (already initialised) on the shared loop: the task's loss (cross-entropy,
    or MSE/Huber on the standardised target), plus L2-SP toward the starting weights when `cfg.l2sp` > 0;
    the best epoch by the task's selection metric. Returns with the best epoch loaded into both, on the CPU."""
    from tlops.task_types import training_task
    from tlops.training.feature_groups import FeatureGroups
    from tlops.training.loop import LabelledData, Net, fit
    from tlops.training.objectives import SupervisedObjective
    from tlops.training.parts import l2sp_regularisers

    scored = training_task(task, y_train, cfg)
    trained = FeatureGroups(backbone, train_items)  # `trainable: N` counts groups that change the features
    regularisers = l2sp_regularisers(trained, cfg.l2sp)
    return fit(Net(trained, head), SupervisedObjective(scored, regularisers), LabelledData(backbone, train_items, y_train),
               LabelledData(backbone, val_items, y_val), cfg, seed=seed, task=scored, checkpoint_dir=checkpoint_dir, callbacks=callbacks)


@register_strategy("finetune", FinetuneConfig, tasks=("classification", "regression", "token_classification", "extractive_qa", "object_detection", "semantic_segmentation", "speech_recognition"),
                   heads=("linear", "mlp"),  # fit every task (the output width follows the task type)
                   ddp=True, starter="finetune", classic_baseline=True, setting_heads={"hidden": "mlp", "dropout": "mlp"},
                   setting_tasks={"loss": "regression", "huber_delta": "regression"})
def train(ctx: TrainContext) -> PackageResult:
    """Fine-tune backbone + head on the raw inputs; writes the best epoch as a full model package."""
    import math

    from tlops.package import save_package
    from tlops.task_types import task_type

    cfg, feats, s = ctx.cfg, ctx.features, ctx.cfg.strategy
    owned = task_type(feats.task).finetune_trainer(ctx)  # a task type with its own loss and decoding (token classification)
    if owned is not None:
        return owned
    ds = ctx.dataset()
    x, y = feats.arrays("train")  # label indices (or regression targets) come from the features step too
    xv, yv = feats.arrays("val")
    head = initial_head(s, cfg.seed, x, y, xv, yv, task_type(feats.task).outputs(feats.labels), task=feats.task)
    backbone = ctx.backbone()
    ckpt_dir = run_checkpoint_dir(ctx, s.model_dump(exclude=NOT_IN_FINGERPRINT), [x, y, xv, yv])
    t0 = time.perf_counter()
    r = finetune(backbone, ds.inputs("train"), y, ds.inputs("val"), yv, head, s, seed=cfg.seed, checkpoint_dir=ckpt_dir,
                 callbacks=ctx.callbacks, task=feats.task)
    seconds = time.perf_counter() - t0
    backbone.fine_tuned = True  # export writes the trained weights, and the package identity hashes them
    loop = loop_summary(r, ckpt_dir)
    val_metrics = task_type(feats.task).val_metrics(r.state.history[r.state.best_epoch])
    summary = {**loop.model_dump(include={"best_epoch", "epochs_run", "stopped_early", "device", "precision"}),
               **{f"val_{k}": v for k, v in val_metrics.items() if not math.isnan(v)}}
    package = save_package(ctx.out_dir / "package", backbone, head, feats.labels,
                           extra={"strategy": s.model_dump(), "seed": cfg.seed, "fine_tune": summary})
    return PackageResult(strategy=s.name, package=str(package), history=r.state.history, val_metrics=val_metrics, seconds=seconds, loop=loop)
