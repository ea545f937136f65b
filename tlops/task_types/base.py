"""What a task type owns: what the model predicts (classes, a number, ...) selects the head's outputs, the probe
heads and how they are fitted, the training loop's loss and validation metrics with the selection metric and its
direction, the test metrics, report and plots, and which gate metrics apply with their direction. The pipeline
asks `task_type(name)`; it never branches on the task itself. (Named task *types*: `tasks/` is the Prefect task
package.) A task type module registers its class with `@register_task_type` (`tlops.task_types.registry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

if TYPE_CHECKING:
    from tlops.data.dataset import Dataset
    from tlops.training.probe import ProbeResult


class TaskType:
    name: ClassVar[str] = ""
    gate_metrics: ClassVar[tuple[str, ...]] = ()  # registry.metric must be one of these (test metrics)
    default_gate_metric: ClassVar[str] = ""
    higher_is_better: ClassVar[dict[str, bool]] = {}  # each gate / selection metric: whether higher is better
    heads: ClassVar[tuple[str, ...]] = ()  # linear_probe heads that fit this task; the first is the linear one (LP-FT's)
    selection_metric: ClassVar[str] = ""  # the validation metric (`val_<name>` in an epoch row) that selects the kept model
    val_metric_names: ClassVar[tuple[str, ...]] = ()  # a trained model's `val_metrics` (selection metric first)
    few_shot_plot: ClassVar[str] = ""  # file name of the few-shot evaluation's metric-vs-shots plot
    starters: ClassVar[dict[str, str]] = {}  # `tlops init` starter kind -> its starter's name for this task ({m}: the modality)
    class_probabilities: ClassVar[bool] = False  # the head's outputs are class logits (what CDAN and the SND/IM/BNM criteria read)

    @property
    def selection_higher_is_better(self) -> bool:
        return self.higher_is_better[self.selection_metric]

    @property
    def selection_key(self) -> str:
        """The epoch row's key of the selection metric (`val_macro_f1`, `val_mae`): the name it is logged under."""
        return f"val_{self.selection_metric}"

    def val_metrics(self, row: dict[str, float]) -> dict[str, float]:
        """The kept model's validation metrics from its epoch row (`val_<name>` keys), selection metric first."""
        return {k: float(row[f"val_{k}"]) for k in self.val_metric_names}

    def starter_name(self, modality: str, kind: str) -> str:
        """The starter config (`tlops/starters/<name>.yaml`) `tlops init --strategy <kind>` writes for this task type; a kind
        without its own starter here uses the classification one (the init step overrides what differs)."""
        return self.starters.get(kind, "{m}_" + kind).format(m=modality)

    def predicts(self, labels: Sequence[str]) -> str:
        """What the model predicts, in words (the model card's task line)."""
        raise NotImplementedError

    def outputs(self, labels: Sequence[str]) -> int:
        """Width of the head's output layer."""
        raise NotImplementedError

    def loop_task(self, y: np.ndarray, opts: Any = None):
        """How the training loop scores this task (`tlops.training.objectives`), fitted to the train targets `y` and
        the strategy options `opts`."""
        raise NotImplementedError

    def fit_probe(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int, cfg: Any, seed: int,
                  scaler=None, curve: bool = True) -> ProbeResult:
        """The configured linear_probe head (`cfg.head`) on frozen features, selected on val (`tlops.training.probe`)."""
        raise NotImplementedError

    def truth(self, y: np.ndarray, labels: Sequence[str]) -> list:
        """The cached `y` of a split as what predictions are compared with."""
        raise NotImplementedError

    def dataset_truth(self, ds: Dataset, split: str) -> list:
        raise NotImplementedError

    def metrics(self, y_true: list, y_pred: list, labels: Sequence[str]) -> dict[str, float]:
        raise NotImplementedError

    def report_and_plots(self, y_true: list, y_pred: list, labels: Sequence[str], out_dir: Path) -> tuple[dict, str, list[Path]]:
        """(report, its file name, plots) of the test split."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
