"""The episodic baselines (issue 12): fine-tuning on the support set, batched over episodes, and its place in
a few-shot run's report next to the other baselines."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tests.helpers import meta_config, synthetic_features, train_strategy
from tlops.evaluate import few_shot_metrics
from tlops.training.episodes import way_targets
from tlops.training.episodic_eval import finetune_support, support_heads


def test_batched_support_heads_follow_each_episodes_own_trajectory():
    torch.manual_seed(0)
    sx = torch.randn(4, 3 * 2, 5)  # 4 episodes, 3-way 2-shot, 5-d features
    w, b = support_heads(sx, 3, steps=30, lr=0.05)
    for i in range(4):
        wi, bi = support_heads(sx[i : i + 1], 3, steps=30, lr=0.05)
        assert torch.allclose(w[i], wi[0], atol=1e-5) and torch.allclose(b[i], bi[0], atol=1e-5), f"episode {i} depends on the others"
    # and it did learn the support sets: every support row classified as its own way, the loss far below log(3)
    logits = torch.bmm(sx, w.transpose(1, 2)) + b
    y = way_targets(3, 2).expand(4, -1)
    assert torch.equal(logits.argmax(-1), y)
    assert F.cross_entropy(logits.transpose(1, 2), y) < 0.5


def test_finetune_support_separates_novel_classes_that_zero_steps_cannot():
    torch.manual_seed(1)
    centres = torch.randn(2, 5, 8) * 3  # 2 episodes of 5 ways in an 8-d space
    sx = (centres[:, :, None, :] + 0.3 * torch.randn(2, 5, 2, 8)).reshape(2, 10, 8)
    qx = (centres[:, :, None, :] + 0.3 * torch.randn(2, 5, 4, 8)).reshape(2, 20, 8)
    mean, std = torch.zeros(8), torch.ones(8)
    truth = way_targets(5, 4).expand(2, -1)
    assert torch.equal(finetune_support(mean, std)(sx, qx, 5), truth)
    untrained = finetune_support(mean, std, steps=0)(sx, qx, 5)  # zero head: every query goes to way 0
    assert float((untrained == truth).float().mean()) == pytest.approx(0.2)


def test_a_few_shot_run_reports_the_finetune_baseline_on_the_same_episodes(tmp_path):
    feats = synthetic_features(tmp_path / "feats")
    cfg = meta_config(tmp_path, name="protonet", meta_epochs=0, projection="none", eval_shots=[5],  # one shot count: 600 episodes
               baselines=["protonet0", "finetune_support"])
    m = few_shot_metrics(train_strategy(cfg, feats, tmp_path / "out").few_shot)
    assert {"finetune_support_accuracy_5w5s", "finetune_support_ci95_5w5s"} <= set(m), sorted(m)
    # a real classifier of these novel classes: far above chance (0.2)
    assert m["finetune_support_accuracy_5w5s"] > 0.5 and 0 < m["finetune_support_ci95_5w5s"] < 0.05, m
    # the unmeta-trained protonet and protonet0 score the very same episodes: equal, as their decisions are equal
    assert m["accuracy_5w5s"] == m["protonet0_accuracy_5w5s"], m
