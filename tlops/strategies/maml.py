"""The MAML family on the cached features, registered under three names that share one config and one
inner loop (`tlops.training.meta.inner_update`), differing only in how the inner step is taken:

- `maml`: second-order MAML (the outer gradient differentiates through the inner updates);
- `fomaml`: first-order MAML (inner gradients detached: no second-order terms);
- `meta_sgd`: Meta-SGD, whose per-parameter inner learning rates alpha are meta-learned with the initialisation.

`anil: true` restricts the inner loop to the classifier (ANIL). The classifier starts each task from its
prototypes (Proto-MAML), so the registered model adapts to a support set of any number of classes.
One module because the three differ in one flag of the learner, not in config or data handling."""

from __future__ import annotations

from typing import Literal

from tlops.data.fewshot import SUPPORT
from tlops.records import HeadResult
from tlops.strategies._episodic import MamlConfig, train_episodic
from tlops.strategies.context import TrainContext
from tlops.strategies.registry import register_strategy


class MamlStrategyConfig(MamlConfig):
    name: Literal["maml"] = "maml"


class FomamlConfig(MamlConfig):
    name: Literal["fomaml"] = "fomaml"


class MetaSgdConfig(MamlConfig):
    name: Literal["meta_sgd"] = "meta_sgd"


# regression too: a dataset whose `group:` rows are tasks
BOTH = ("classification", "regression")


@register_strategy("maml", MamlStrategyConfig, splits=(SUPPORT,), few_shot=True, tasks=BOTH, starter="fewshot")  # a regression's
def train_maml(ctx: TrainContext) -> HeadResult:
    """Second-order MAML on the cached features; registered as the initialisation adapted to the support set."""
    return train_episodic(ctx, "maml")


@register_strategy("fomaml", FomamlConfig, splits=(SUPPORT,), few_shot=True, tasks=BOTH)
def train_fomaml(ctx: TrainContext) -> HeadResult:
    """First-order MAML on the cached features; registered as the initialisation adapted to the support set."""
    return train_episodic(ctx, "fomaml")


@register_strategy("meta_sgd", MetaSgdConfig, splits=(SUPPORT,), few_shot=True, tasks=BOTH)
def train_meta_sgd(ctx: TrainContext) -> HeadResult:
    """Meta-SGD (learned per-parameter inner learning rates) on the cached features; adapted to the support set."""
    return train_episodic(ctx, "meta_sgd")
