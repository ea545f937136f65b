"""Feature extraction (`linear_probe`): a new head on frozen, cached backbone features; only the head trains."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field, PositiveFloat

from tlops.config_base import Strict
from tlops.records import HeadResult
from tlops.strategies.context import TrainContext
from tlops.strategies.registry import register_strategy


class LinearProbeConfig(Strict):
    name: Literal["linear_probe"] = "linear_probe"
    head: Literal["logreg", "ridge", "mlp"] = Field("logreg", description="logreg (classes), ridge (numbers) or mlp (either)")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic-regression head")
    alphas: list[PositiveFloat] = Field([0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0], min_length=1,
                                description="ridge head: L2 strengths tried; the one with the best validation MAE is kept")
    loss: Literal["mse", "huber"] = Field("mse", description="MLP head on a regression dataset: loss on the standardised target")
    huber_delta: float = Field(1.0, gt=0, description="Huber loss: quadratic within this many target std's, linear beyond")
    max_iter: int = Field(1000, ge=10)
    hidden: int = Field(256, ge=1, description="MLP head hidden width")
    epochs: int = Field(60, ge=1, description="MLP head epochs (best epoch on validation is kept)")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_size: int = Field(128, ge=1)


# settings one head kind reads (the logistic-regression probe has no epochs), and the regression loss (MLP head)
HEAD_SETTINGS = {"C": "logreg", "max_iter": "logreg", "alphas": "ridge",
                 **dict.fromkeys(("hidden", "epochs", "lr", "weight_decay", "dropout", "batch_size", "loss", "huber_delta"), "mlp")}


@register_strategy("linear_probe", LinearProbeConfig, tasks=("classification", "regression", "token_classification", "extractive_qa", "object_detection", "semantic_segmentation", "speech_recognition"), head_only=True, starter="linear_probe",
                   classic_baseline=True, setting_heads=HEAD_SETTINGS, setting_tasks={"loss": "regression", "huber_delta": "regression"})
def train(ctx: TrainContext) -> HeadResult:
    """Fit the head on the cached features; writes head.safetensors. No backbone needed."""
    import torch

    from tlops.task_types import task_type

    cfg, feats = ctx.cfg, ctx.features
    owned = task_type(feats.task).probe_trainer(ctx)  # a task type whose head needs the backbone on raw inputs (extractive QA)
    if owned is not None:
        return owned
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    result = task_type(feats.task).probe(feats, cfg.strategy, cfg.seed)  # the task type's arrays (items, or words)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    path = result.head.save(ctx.out_dir / "head.safetensors")
    return HeadResult(strategy=cfg.strategy.name, head_path=str(path), spec=result.head.spec, history=result.history,
                      val_metrics=result.val_metrics, size_curve=result.size_curve, seconds=time.perf_counter() - t0)
