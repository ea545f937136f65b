"""What a strategy's train entry point gets (`TrainContext`), with the run's dataset and backbone loaded on demand.

Also what every train entry point on the shared loop uses: its checkpoint folder (`run_checkpoint_dir`) and the record
of how the loop went (`loop_summary`), for strategies and for task types with trainers of their own.

Kept out of the registry: the config, the task types and the DDP launcher read `tlops.strategies.registry`, which
imports no other part of tlops, while this module reaches the dataset and backbone loaders (`tlops.resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import numpy as np

    from tlops.backbones.base import Backbone
    from tlops.config import RunConfig
    from tlops.data.dataset import Dataset
    from tlops.records import FeatureSet, LoopSummary
    from tlops.training.callbacks import Callback
    from tlops.training.loop import LoopResult

# Loop options that do not change the training trajectory: a rerun may change them and still resume.
NOT_IN_FINGERPRINT = {"resume", "device", "compile", "checkpoint_every_steps", "eval_batch_size"}


@dataclass
class TrainContext:
    """What a strategy's train entry point gets: the run config, the features step's record, a folder
    for its outputs, and the loop callbacks (epoch logging, fault injection)."""

    cfg: RunConfig
    features: FeatureSet
    out_dir: Path
    callbacks: Sequence[Callback] = ()
    _dataset: Any = field(default=None, repr=False)

    def dataset(self) -> Dataset:
        """The raw dataset (loaded once), for strategies that train on inputs rather than cached features."""
        if self._dataset is None:
            from tlops.resolve import open_dataset

            self._dataset = open_dataset(self.cfg)
        return self._dataset

    def backbone(self) -> Backbone:
        """A freshly loaded backbone (its weights are the pretrained ones)."""
        from tlops.resolve import backbone_of

        return backbone_of(self.cfg)


def run_checkpoint_dir(ctx: TrainContext, strategy: dict, arrays: Sequence[np.ndarray]) -> Path:
    """The checkpoint folder of one loop run: the same strategy options (those that change the trajectory),
    seed, backbone, data and arrays give the same folder, so a rerun resumes."""
    from tlops.training.loop import checkpoint_dir_for

    cfg = ctx.cfg
    return checkpoint_dir_for(cfg.execution.work_dir, {
        "strategy": strategy, "seed": cfg.seed, "backbone": cfg.backbone.model_dump(exclude={"batch_size"}),
        "data": cfg.data.model_dump(), "identity": ctx.features.identity}, arrays)


def loop_summary(r: LoopResult, checkpoint_dir: Path | None) -> LoopSummary:
    """The record of how a loop run went (best epoch, epochs run, early stop, device, resume, checkpoint folder)."""
    from tlops.records import LoopSummary

    return LoopSummary(best_epoch=r.state.best_epoch, epochs_run=len(r.state.history), stopped_early=r.stopped_early,
                       device=r.device, precision=r.precision, resumed_from=r.resumed_from, skipped_checkpoints=r.skipped_checkpoints,
                       checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                       train_samples_per_s=r.train_samples / r.train_seconds if r.train_seconds else None)
