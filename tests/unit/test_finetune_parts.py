"""Fine-tuning primitives (issue 4 groundwork): frozen weights stay, unfrozen move, LRs per group as
configured, L2-SP is zero at the pretrained point and pulls back, schedules have the promised shape."""

import pytest
import torch
from torch import nn

from tlops.backbones import load_backbone
from tlops.training.parts import (L2SP, discriminative_param_groups, gradual_top_n, set_trainable,
                                              warmup_then_decay)


def _step(b, head, opt, l2sp=None):
    batch = b.preprocess(["a dog barks", "a red car", "fresh bread", "a cat sleeps"])
    loss = nn.functional.cross_entropy(head(b.embed(batch)), torch.tensor([0, 1, 2, 0]))
    if l2sp is not None:
        loss = loss + l2sp()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_frozen_groups_stay_and_unfrozen_groups_move(tiny_bert):
    b = load_backbone(f"hf:{tiny_bert}")
    groups = b.parameter_groups()
    set_trainable(groups, top_n=2)  # last encoder layer + pooler train; embeddings and layer 0 frozen
    assert [all(p.requires_grad for p in g) for g in groups] == [False, False, True, True]
    before = [[p.detach().clone() for p in g] for g in groups]
    head = nn.Linear(b.num_features, 3)
    opt = torch.optim.AdamW(discriminative_param_groups(groups, head, 1e-2, 1e-2), lr=1e-2)
    b.model.train()
    _step(b, head, opt)
    moved = [any(not torch.equal(p, q) for p, q in zip(g, old)) for g, old in zip(groups, before)]
    assert moved[:2] == [False, False] and moved[2] is True  # the pooler gets no gradient from mean pooling
    set_trainable(groups, None)
    assert all(p.requires_grad for g in groups for p in g)
    set_trainable(groups, 0)
    assert not any(p.requires_grad for g in groups for p in g)


def test_learning_rates_per_group_follow_layer_decay(tiny_bert):
    b = load_backbone(f"hf:{tiny_bert}")
    groups = b.parameter_groups()
    head = nn.Linear(b.num_features, 3)
    pg = discriminative_param_groups(groups, head, head_lr=1e-3, backbone_lr=1e-4, layer_decay=0.5, weight_decay=0.01)
    lr = {g["name"]: g["lr"] for g in pg}
    assert lr["head"] == 1e-3 and lr["backbone.3"] == 1e-4 and lr["backbone.2"] == pytest.approx(5e-5)
    assert lr["backbone.0"] == pytest.approx(1e-4 * 0.5 ** 3)
    assert all(g["weight_decay"] == 0.0 for g in pg if g["name"].endswith("no_decay"))
    assert all(p.dim() <= 1 for g in pg if g["name"].endswith("no_decay") for p in g["params"])
    opt = torch.optim.AdamW(pg)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in pg]


def test_l2sp_is_zero_at_pretrained_weights_and_pulls_back(tiny_bert):
    b = load_backbone(f"hf:{tiny_bert}")
    params = [p for g in b.parameter_groups() for p in g]
    reg = L2SP(params, weight=10.0)
    assert float(reg().detach()) == 0.0
    w = params[5]
    with torch.no_grad():
        w.add_(0.1)
    penalty = reg()
    assert float(penalty.detach()) == pytest.approx(0.5 * 10.0 * 0.01 * w.numel(), rel=1e-4)
    penalty.backward()
    assert torch.allclose(w.grad, torch.full_like(w, 10.0 * 0.1), atol=1e-5)  # gradient points back to the anchor
    opt = torch.optim.SGD([w], lr=0.05)
    opt.step()
    assert float(reg().detach()) < float(penalty.detach())


def test_schedules_and_gradual_unfreezing():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = warmup_then_decay(opt, warmup_steps=4, total_steps=20, kind="cosine")
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0] and lrs[4] == pytest.approx(1.0) and lrs[-1] < 0.02
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    with pytest.raises(ValueError, match="unknown schedule"):
        warmup_then_decay(opt, 1, 2, kind="step")
    assert [gradual_top_n(e, every=2, start=1) for e in range(6)] == [1, 1, 2, 2, 3, 3]
