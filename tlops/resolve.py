"""The objects a run config names: its dataset and its backbone (and the splits a run embeds with it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlops.config import RunConfig
from tlops.data import Dataset, load_dataset
from tlops.errors import DataError
from tlops.strategies.registry import get_strategy

SPLITS = ("train", "val", "test")  # every run embeds these, and the extra splits its strategy needs

if TYPE_CHECKING:  # the backbones import torch: opening a dataset (validation, the fail-fast path) does not need it
    from tlops.backbones import Backbone


def open_dataset(cfg: RunConfig) -> Dataset:
    ds = load_dataset(cfg.data.path, seed=cfg.seed, val_fraction=cfg.data.val_fraction)
    if cfg.validation.control_characters == "strip" and ds.modality == "text":
        strip_texts(ds)
    if get_strategy(cfg.strategy.name).few_shot:
        from tlops.data.fewshot import as_few_shot

        ds = as_few_shot(ds, cfg.strategy.support_shots, cfg.seed)
    return ds


def strip_texts(ds: Dataset) -> None:
    """validation.control_characters: strip: every split's texts without their control characters (NUL kept, for
    validation to refuse), before anything validates, embeds or fingerprints them."""
    from tlops.support_set import strip_control_characters

    col = ds.input_column
    for df in ds.splits.values():
        if col in df.columns:
            df[col] = [strip_control_characters(v) if isinstance(v, str) else v for v in df[col]]


def backbone_of(cfg: RunConfig) -> Backbone:
    from tlops.backbones import load_backbone

    b = cfg.backbone
    return load_backbone(b.name, layers=b.layers, pooling=b.pooling, max_length=b.max_length, image_size=b.image_size,
                         clip_seconds=b.clip_seconds, precision=b.precision)


def feature_inputs(cfg: RunConfig):
    """(dataset, backbone (weights not loaded yet), the splits to embed: the usual ones and those the strategy needs)."""
    ds = open_dataset(cfg)
    backbone = backbone_of(cfg)
    if backbone.modality != ds.modality:
        raise DataError(f"{cfg.data.path} holds {ds.modality} data but backbone {cfg.backbone.name} takes {backbone.modality}; "
                        f"pick a {ds.modality} backbone")
    return ds, backbone, (*SPLITS, *get_strategy(cfg.strategy.name).splits)
