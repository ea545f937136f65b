"""Prototypical networks (`protonet`): class prototypes = mean support embedding, logits = minus the squared
distance; the encoder is meta-trained episodically on the cached frozen features, or not at all
(`meta_epochs: 0`, with `projection: none`: nearest prototype of the frozen features, a strong baseline)."""

from __future__ import annotations

from typing import Literal

from tlops.records import HeadResult
from tlops.strategies._episodic import EpisodicConfig, train_episodic
from tlops.strategies.context import TrainContext
from tlops.strategies.registry import register_strategy
from tlops.data.fewshot import SUPPORT


class ProtoNetConfig(EpisodicConfig):
    name: Literal["protonet"] = "protonet"


@register_strategy("protonet", ProtoNetConfig, splits=(SUPPORT,), few_shot=True, starter="fewshot")  # classes only
def train(ctx: TrainContext) -> HeadResult:
    """Prototypical network on the cached features; registered as the nearest-prototype head of the support set."""
    return train_episodic(ctx, "protonet")
