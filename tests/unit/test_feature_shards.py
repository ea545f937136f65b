"""Sharded features (issue 14, scale-out): the plan, the single-process sharded step, and the same shards mapped over a
real 2-worker Dask cluster through Prefect; plus the cache's cleanup of temp files a killed writer left behind."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import tiny_config
from tlops.cache import FeatureCache
from tlops.config import RunConfig, config_from_dict
from tlops.errors import ConfigError
from tlops.feature_shards import embed_shard, plan_shards
from tlops.pipeline import features_step

SHARD_ROWS = 16  # the tiny dataset has 72 distinct texts: 5 shards, the last one short


def _cfg(tmp_path: Path, data: Path, bert: Path, cache: str, **over) -> RunConfig:
    return config_from_dict(tiny_config(tmp_path, data, bert, features__cache_dir=str(tmp_path / cache), **over))


def _arrays(feats) -> dict[str, np.ndarray]:
    return {s: feats.arrays(s)[0] for s in feats.splits}


def _cache_files(root: Path) -> dict[str, list[str]]:
    """namespace -> its shard file names (content digests)."""
    return {d.name: sorted(p.name for p in d.glob("*.npz")) for d in sorted(root.iterdir())}


def _cached_keys(root: Path) -> set[str]:
    keys = set()
    for shard in root.rglob("*.npz"):
        with np.load(shard) as z:
            keys |= {k.decode() for k in z["keys"].tolist()}
    return keys


def test_plan_cuts_the_distinct_uncached_inputs_into_shards(tiny_bert, text_dataset, tmp_path):
    cfg = _cfg(tmp_path, text_dataset, tiny_bert, "cache", features__shard_rows=SHARD_ROWS)
    plan = plan_shards(cfg, tmp_path / "f1")
    rows = [s.rows for s in plan.shards]
    assert rows == [16, 16, 16, 16, 8] and (plan.hits, plan.misses) == (0, 72), rows
    items = [x for s in plan.shards for x in json.loads(Path(s.path).read_text())["items"]]
    assert len(set(items)) == 72, "a text planned twice"

    embed_shard(cfg, plan.namespace, plan.shards[1])  # one shard done (e.g. before a crash): the next plan skips its rows
    again = plan_shards(cfg, tmp_path / "f2")
    assert (again.hits, again.misses, [s.rows for s in again.shards]) == (16, 56, [16, 16, 16, 8])


def test_sharded_step_gives_the_unsharded_features(tiny_bert, text_dataset, tmp_path):
    whole = features_step(_cfg(tmp_path, text_dataset, tiny_bert, "c-whole"), tmp_path / "whole")
    sharded = features_step(_cfg(tmp_path, text_dataset, tiny_bert, "c-sharded", features__shard_rows=SHARD_ROWS), tmp_path / "sh")
    assert sharded.splits == whole.splits and sharded.identity == whole.identity
    for split, x in _arrays(whole).items():
        # other rows share a padded batch here than there: float sums in another order, so equal to 1e-6, not bitwise
        np.testing.assert_allclose(_arrays(sharded)[split], x, rtol=0, atol=1e-6, err_msg=split)
        np.testing.assert_array_equal(sharded.arrays(split)[1], whole.arrays(split)[1])
    assert _cached_keys(tmp_path / "c-sharded") == _cached_keys(tmp_path / "c-whole")
    assert len(_cache_files(tmp_path / "c-sharded").popitem()[1]) == 5
    assert not (tmp_path / "sh" / "shards").exists(), "the shard lists outlived the step"


def test_dask_task_runner_config_needs_shards():
    with pytest.raises(ConfigError, match="features.shard_rows"):
        config_from_dict({"data": {"path": "d"}, "backbone": {"name": "hf:x"}, "registry": {"model_name": "m"},
                          "execution": {"task_runner": "dask"}})


def test_temp_files_of_a_killed_writer_are_removed_when_the_cache_opens(tiny_bert, tmp_path):
    from tlops.backbones import load_backbone
    from tlops.features import cached_features

    root = tmp_path / "cache"
    texts = ["the cat sat", "a dog ran home"]
    x1, _ = cached_features(load_backbone(f"hf:{tiny_bert}"), texts, FeatureCache(root))
    (ns,) = root.iterdir()
    dead = [ns / ".tmp-killed.npz", ns / ".tmp-killedjson"]  # what put() / the identity write leave on SIGKILL
    live = ns / ".tmp-writing.npz"  # a concurrent writer's file, being written now
    for f in (*dead, live):
        f.write_bytes(b"PK\x03\x04 half a zip")
    hour_ago = time.time() - 3600
    for f in dead:
        os.utime(f, (hour_ago, hour_ago))

    cache = FeatureCache(root)
    assert sorted(cache.removed_tmp) == sorted(map(str, dead)) and not any(f.exists() for f in dead)
    assert live.exists(), "a live writer's temp file was removed"
    b = load_backbone(f"hf:{tiny_bert}")
    x2, s = cached_features(b, texts, cache)
    assert (s.hits, s.corrupt_shards, b.calls) == (2, [], 0)
    np.testing.assert_array_equal(x1, x2)
