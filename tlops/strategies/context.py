"""What a strategy's train entry point gets (`TrainContext`), with the run's dataset and backbone loaded on demand.

Kept out of the registry: the config, the task types and the DDP launcher read `tlops.strategies.registry`, which
imports no other part of tlops, while this module reaches the dataset and backbone loaders (`tlops.resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from tlops.backbones.base import Backbone
    from tlops.config import RunConfig
    from tlops.data.dataset import Dataset
    from tlops.records import FeatureSet
    from tlops.training.callbacks import Callback


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
