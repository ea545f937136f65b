"""Token classification and extractive QA train on the shared loop (`tlops.training.loop.fit`) as item tasks do: the
epoch rows carry the task's validation metrics, the best epoch is kept with its checkpoint, patience stops early, and
a rerun with the same checkpoint folder resumes to the same result. `LoopOptions` (a library fit's options) defaults
as the finetune strategy's config does."""

from __future__ import annotations

from dataclasses import fields

import torch

from tests.unit.test_ner_model import TAGS, TRAIN
from tests.unit.test_qa_model import backbone as qa_backbone
from tests.unit.test_qa_model import examples as qa_examples
from tlops.backbones import load_backbone
from tlops.training.loop import LoopOptions


def test_the_loop_options_default_as_the_finetune_config_does():
    from tlops.strategies.finetune import FinetuneConfig

    config = FinetuneConfig()
    assert {f.name: f.default for f in fields(LoopOptions)} == {f.name: getattr(config, f.name) for f in fields(LoopOptions)}


def test_token_classification_keeps_the_best_epoch_stops_early_and_resumes(tiny_bert, tmp_path):
    from tlops.ner.training import fit_tokens

    opts = LoopOptions(epochs=6, batch_size=4, head_lr=1e-2, backbone_lr=1e-3, patience=1, warmup_ratio=0.0, device="cpu")
    runs = []
    for _ in range(2):  # the second run finds the first's checkpoints and resumes from its last one
        b = load_backbone(f"hf:{tiny_bert}", max_length=16)
        r, head = fit_tokens(b, TRAIN, TRAIN[:4], TAGS, "IOB2", opts, seed=1, checkpoint_dir=tmp_path / "ckpt")
        runs.append((r, head))
    (first, head), (again, head_again) = runs
    rows = first.state.history
    assert all({"val_f1", "val_precision", "val_recall", "val_token_accuracy", "train_loss"} <= set(row) for row in rows)
    best = max(range(len(rows)), key=lambda i: (rows[i]["val_f1"], -i))
    assert first.state.best_epoch == best and (tmp_path / "ckpt" / "best").is_dir()
    assert first.stopped_early == (len(rows) < opts.epochs) and first.state.since_best <= opts.patience
    assert again.resumed_from is not None and again.state.history == rows
    torch.testing.assert_close(head_again.state_dict(), head.state_dict(), rtol=0, atol=0)


def test_extractive_qa_probe_and_finetune_keep_the_best_epoch(tiny_bert):
    from tlops.qa.model import QAConfig, QAModel

    train = qa_examples()
    cfg = QAConfig(max_length=48, stride=16, max_query_length=12, probe_epochs=6, probe_lr=3e-2, epochs=3, lr=2e-3, head_lr=1e-2,
                   batch_size=2, warmup=0.0)
    for mode in ("probe", "finetune"):
        m = QAModel(qa_backbone(tiny_bert), cfg)
        rows = m.fit(train, val=train, mode=mode)
        assert len(rows) == (cfg.probe_epochs if mode == "probe" else cfg.epochs)
        assert all({"val_f1", "val_exact_match", "train_loss"} <= set(row) for row in rows)
        best = m.loop.state.best_epoch
        assert rows[best]["val_f1"] == max(r["val_f1"] for r in rows)
        assert m.evaluate(train)["f1"] == rows[best]["val_f1"]  # the kept weights are the best epoch's


def test_the_qa_probe_reads_its_token_states_from_the_feature_cache_on_a_rerun(tiny_bert, tmp_path):
    from tlops.cache import FeatureCache
    from tlops.qa.model import QAConfig, QAModel

    train = qa_examples()
    cfg = QAConfig(max_length=48, stride=16, max_query_length=12, probe_epochs=3, probe_lr=3e-2)
    heads, stats = [], []
    for cache in (None, FeatureCache(tmp_path / "cache"), FeatureCache(tmp_path / "cache")):
        m = QAModel(qa_backbone(tiny_bert), cfg)
        m.fit(train, val=train, mode="probe", cache=cache)
        heads.append(m.head.state_dict())
        stats.append(getattr(m, "cache_stats", None))
    assert stats[1].misses > 0  # the first cached run embeds train's windows (val's are the same here: read back)
    assert stats[2].misses == 0 and stats[2].hits == stats[1].hits + stats[1].misses  # the rerun embeds none
    for other in heads[1:]:  # the same head with or without the cache (the float16 states are the same)
        torch.testing.assert_close(other, heads[0], rtol=0, atol=0)


def test_token_classification_word_features_hit_the_cache_on_a_rerun(tiny_bert, tmp_path):
    from tests.helpers import make_ner_dataset
    from tlops.cache import FeatureCache
    from tlops.data.dataset import load_dataset
    from tlops.task_types import task_type

    ds = load_dataset(make_ner_dataset(tmp_path / "data"))
    kind, b = task_type("token_classification"), load_backbone(f"hf:{tiny_bert}", max_length=16)
    first = kind.split_features(b, ds, "train", FeatureCache(tmp_path / "cache"))
    again = kind.split_features(b, ds, "train", FeatureCache(tmp_path / "cache"))
    assert first[3].misses > 0 and again[3].misses == 0 and again[3].hits == len(ds.splits["train"])
    assert (again[0] == first[0]).all() and (again[2]["seen"] == first[2]["seen"]).all()


def test_cache_keys_longer_than_a_shard_stores_are_refused(tmp_path):
    import numpy as np
    import pytest

    from tlops.cache import FeatureCache, item_hash, row_key

    h = item_hash("a sentence")
    assert len({row_key(h, j) for j in range(12)}) == 12 and all(len(row_key(h, j)) <= 64 for j in (0, 10**6, "seen"))
    with pytest.raises(ValueError, match="64 bytes"):
        FeatureCache(tmp_path).put("ns", [f"{h}:0"], np.zeros((1, 2), np.float32))
