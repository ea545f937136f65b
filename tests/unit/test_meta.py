"""Meta-transfer (issue 12, part 1): prototypes, the one functional inner loop (MAML / FOMAML / Meta-SGD),
episodes, resume, the few-shot dataset contract, and a `tlops run` that registers a few-shot model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tests.helpers import make_few_shot_text, meta_config, synthetic_features, tiny_config, train_strategy
from tlops.config import RunConfig
from tlops.evaluate import few_shot_metrics
from tlops.modules.heads import load_head
from tlops.training.episodes import EpisodeSampler, way_targets
from tlops.training.meta import Encoder, MetaLearner, inner_update, proto_classifier, proto_logits, prototypes


def _encoder(kind: str = "linear", d: int = 6, seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    return Encoder(d, kind, 8, 4, torch.zeros(d), torch.ones(d))


def test_prototypes_are_class_means_and_the_proto_classifier_decides_like_the_distances():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0], [1.0, 1.0]])
    onehot = F.one_hot(torch.tensor([0, 0, 1, 1, 1]), 2).float()
    protos = prototypes(z, onehot)
    assert torch.allclose(protos, torch.tensor([[1.0, 0.0], [1 / 3, 11 / 3]])), protos
    q = torch.tensor([[1.0, 0.5], [0.0, 5.0]])
    assert torch.allclose(proto_logits(q, protos), torch.tensor([[-0.25, -(4 / 9 + (0.5 - 11 / 3) ** 2)],
                                                                 [-(1 + 25), -(1 / 9 + (5 - 11 / 3) ** 2)]]))
    head = proto_classifier(protos)
    linear = q @ head["weight"].T + head["bias"]
    # the linear form differs from -distance only by |q|^2, the same for every class: same softmax, same decisions
    assert torch.allclose(linear - proto_logits(q, protos), (q**2).sum(1, keepdim=True).expand(-1, 2))


def test_maml_inner_step_equals_a_manual_sgd_step():
    enc = _encoder("mlp")
    learner = MetaLearner(enc, "maml", inner_lr=0.3, inner_steps=1)
    torch.manual_seed(1)
    sx, onehot = torch.randn(6, 6), F.one_hot(way_targets(3, 2), 3).float()
    fast = learner.adapt(enc, enc.params(), sx, onehot)

    start = {k: v.detach().clone().requires_grad_() for k, v in enc.params().items()}
    head = {k: v.detach().requires_grad_() for k, v in proto_classifier(prototypes(enc.embed(start, sx), onehot)).items()}
    params = {**start, **head}
    loss = F.cross_entropy(enc.embed(start, sx) @ head["weight"].T + head["bias"], onehot.argmax(1))
    grads = torch.autograd.grad(loss, list(params.values()))
    for (k, p), g in zip(params.items(), grads):
        assert torch.allclose(fast[k], p - 0.3 * g, atol=1e-6), k
    assert not torch.allclose(fast["layers.0.weight"], enc.layers[0].weight), "the encoder adapts in MAML's inner loop"
    anil = MetaLearner(enc, "maml", inner_lr=0.3, anil=True).adapt(enc, enc.params(), sx, onehot)
    assert torch.equal(anil["layers.0.weight"], enc.layers[0].weight) and not torch.allclose(anil["weight"], head["weight"])
    assert inner_update({"a": torch.ones(2)}, {"a": torch.tensor([1.0, 2.0])}, {"a": torch.tensor([0.5, 0.25])})["a"].tolist() == [0.5, 0.5]


def _outer_grads(algorithm: str, enc: Encoder, sx, qx) -> dict[str, torch.Tensor]:
    enc.zero_grad()
    learner = MetaLearner(enc, algorithm, inner_lr=0.5, inner_steps=2)
    logits = learner.episode_logits(enc, sx, qx, 3, 2)
    F.cross_entropy(logits.reshape(-1, 3), way_targets(3, 2).repeat(len(sx))).backward()
    return {k: p.grad.clone() for k, p in enc.named_parameters()}


def _manual_outer_grads(enc: Encoder, sx, qx, second_order: bool) -> dict[str, torch.Tensor]:
    """Plain autograd MAML over the same episodes: create_graph=True (second order) or detached inner gradients."""
    enc.zero_grad()
    onehot, total = F.one_hot(way_targets(3, 2), 3).float(), 0
    for s, q in zip(sx, qx):
        params = enc.params()
        # `p * 1`: the inner loop's own copy of theta, so its gradient leaves out the path through the prototype init
        # (the head is a separate inner-loop variable); the outer gradient still reaches theta through both
        fast = {**{k: p * 1 for k, p in params.items()}, **proto_classifier(prototypes(enc.embed(params, s), onehot))}
        for _ in range(2):
            loss = F.cross_entropy(enc.embed({k: fast[k] for k in params}, s) @ fast["weight"].T + fast["bias"], onehot.argmax(1))
            g = torch.autograd.grad(loss, list(fast.values()), create_graph=second_order, retain_graph=True)
            g = g if second_order else [gi.detach() for gi in g]
            fast = {k: v - 0.5 * gi for (k, v), gi in zip(fast.items(), g)}
        total = total + F.cross_entropy(enc.embed({k: fast[k] for k in params}, q) @ fast["weight"].T + fast["bias"], way_targets(3, 2),
                                        reduction="sum")
    (total / (len(sx) * 6)).backward()
    return {k: p.grad.clone() for k, p in enc.named_parameters()}


def test_fomaml_drops_the_second_order_terms_that_maml_keeps():
    enc = _encoder("linear")
    torch.manual_seed(2)
    sx, qx = torch.randn(4, 6, 6), torch.randn(4, 6, 6)
    maml, fomaml = _outer_grads("maml", enc, sx, qx), _outer_grads("fomaml", enc, sx, qx)
    second, first = _manual_outer_grads(enc, sx, qx, True), _manual_outer_grads(enc, sx, qx, False)
    for k in maml:
        assert torch.allclose(maml[k], second[k], atol=1e-5), f"MAML {k} is not the second-order gradient"
        assert torch.allclose(fomaml[k], first[k], atol=1e-5), f"FOMAML {k} is not the first-order gradient"
    gap = max(float((maml[k] - fomaml[k]).abs().max()) for k in maml)
    assert gap > 1e-4, f"second-order terms should matter on this toy problem (max |MAML - FOMAML| = {gap})"


def test_meta_sgd_alphas_receive_gradients_and_change():
    enc = _encoder("linear")
    learner = MetaLearner(enc, "meta_sgd", inner_lr=0.1)
    before = {k: v.detach().clone() for k, v in learner.alpha.items()}
    assert set(before) == {"layers__0__weight", "layers__0__bias", "weight", "bias"} and before["weight"].shape == (1, 4)
    opt = torch.optim.Adam(learner.parameters(), lr=0.01)
    torch.manual_seed(3)
    logits = learner.episode_logits(enc, torch.randn(2, 6, 6), torch.randn(2, 6, 6), 3, 2)
    F.cross_entropy(logits.reshape(-1, 3), way_targets(3, 2).repeat(2)).backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in learner.alpha.values())
    opt.step()
    assert all(not torch.equal(before[k], v) for k, v in learner.alpha.items())
    assert list(MetaLearner(enc, "maml").parameters()) == [], "MAML's inner LR is fixed, not learned"


class _LinearBackbone:
    """A backbone in the contract's shape (model + embed) whose model is one Linear layer: the inner loop's
    backbone path on a problem small enough to redo by hand."""

    def __init__(self, d_in: int = 5, d_out: int = 6, seed: int = 4):
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(d_in, d_out)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.model(batch))


def test_inner_loop_over_backbone_groups_is_a_manual_sgd_step_and_second_order_reaches_them():
    from tlops.training.meta import BackboneFunction, adapted_head

    backbone, enc = _LinearBackbone(), _encoder("linear")
    fn = BackboneFunction(backbone)
    names = fn.top_group_names([list(backbone.model.parameters())], 1)
    assert names == ["weight", "bias"]
    shapes = {k: p.shape for k, p in backbone.model.named_parameters()}
    learner = MetaLearner(enc, "maml", inner_lr=0.3, backbone_shapes=shapes)
    torch.manual_seed(5)
    sx, qx, onehot = torch.randn(6, 5), torch.randn(6, 5), F.one_hot(way_targets(3, 2), 3).float()
    fast = learner.adapt(enc, learner.initial(enc, fn), sx, onehot, backbone=fn)

    # by hand: features through the backbone, prototype-initialised classifier, one SGD step on every adapted tensor
    bb = {k: v.detach().clone().requires_grad_() for k, v in backbone.model.named_parameters()}
    start = {k: v.detach().clone().requires_grad_() for k, v in enc.params().items()}

    def embed(b, e, x):
        return enc.embed(e, torch.tanh(x @ b["weight"].T + b["bias"]))

    head = {k: v.detach().requires_grad_() for k, v in proto_classifier(prototypes(embed(bb, start, sx), onehot)).items()}
    loss = F.cross_entropy(embed(bb, start, sx) @ head["weight"].T + head["bias"], onehot.argmax(1))
    params = {**{f"backbone.{k}": v for k, v in bb.items()}, **start, **head}
    for (k, p), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()))):
        assert torch.allclose(fast[k], p - 0.3 * g, atol=1e-6), k
    assert not torch.allclose(fast["backbone.weight"], backbone.model.weight), "the backbone group adapts in the inner loop"

    # the outer gradient reaches the backbone's meta-learned weights through the adapted ones; FOMAML's differs
    def outer(algorithm: str) -> torch.Tensor:
        backbone.model.zero_grad()
        lrn = MetaLearner(enc, algorithm, inner_lr=0.3, backbone_shapes=shapes)
        F.cross_entropy(lrn.task_logits(enc, fn, sx, qx, onehot), way_targets(3, 2)).backward()
        return backbone.model.weight.grad.clone()

    maml, fomaml = outer("maml"), outer("fomaml")
    assert float(maml.abs().sum()) > 0 and float((maml - fomaml).abs().max()) > 1e-6
    # the registered head and adapted weights come out of the same path; the backbone's own weights stay as they were
    before = backbone.model.weight.detach().clone()
    head_module, adapted = adapted_head(learner, enc, sx, onehot.argmax(1), 3, fn)
    assert torch.allclose(adapted["weight"], fast["backbone.weight"], atol=1e-6) and torch.equal(backbone.model.weight, before)
    with torch.no_grad():
        z = torch.tanh(qx @ adapted["weight"].T + adapted["bias"])
        assert torch.allclose(head_module(z), learner.logits(enc, fast, qx, fn), atol=1e-5)
    with pytest.raises(ValueError, match="ANIL"):
        MetaLearner(enc, "maml", anil=True, backbone_shapes=shapes)


def test_episode_sampler_is_deterministic_and_keeps_classes_and_rows_apart():
    labels = np.repeat(np.arange(8), 10)
    labels = np.concatenate([labels, [8, 8]])  # class 8 has too few rows for 3 + 4
    a, b = EpisodeSampler(labels, 5, 3, 4, seed=7), EpisodeSampler(labels, 5, 3, 4, seed=7)
    batch = a.batch(10, 5)
    for i in range(5):
        s, q, c = b.episode(10 + i)
        assert np.array_equal(batch.support[i], s) and np.array_equal(batch.query[i], q) and np.array_equal(batch.classes[i], c)
        assert len(set(c)) == 5 and 8 not in c
        assert not set(s) & set(q)
        assert np.array_equal(labels[s], np.repeat(c, 3)) and np.array_equal(labels[q], np.repeat(c, 4)), "rows are class-major"
    assert not np.array_equal(a.episode(0)[0], a.episode(1)[0])
    assert not np.array_equal(a.episode(0)[0], EpisodeSampler(labels, 5, 3, 4, seed=8).episode(0)[0])
    with pytest.raises(ValueError, match="need 5 classes with >= 7 rows"):
        EpisodeSampler(np.repeat(np.arange(4), 10), 5, 3, 4, seed=0)


@pytest.mark.parametrize("name", ["protonet", "maml", "fomaml", "meta_sgd"])
def test_meta_training_beats_the_frozen_feature_baselines_on_novel_classes(tmp_path, name):
    feats = synthetic_features(tmp_path / "feats")
    extra = {"inner_lr": 0.05} if name != "protonet" else {}
    r = train_strategy(meta_config(tmp_path, name=name, **extra), feats, tmp_path / "out")
    m = few_shot_metrics(r.few_shot)
    assert r.few_shot.model[0].episodes == 600 and set(r.labels) == {f"test-{i}" for i in range(8)}
    assert m["accuracy_5w5s"] > m["accuracy_5w1s"] > 0.3, m
    assert 0 < m["ci95_5w1s"] < 0.05
    # meta-training finds the class subspace that frozen-feature prototypes cannot see
    assert m["accuracy_5w1s"] > m["protonet0_accuracy_5w1s"] + 0.03, m
    assert len(r.history) == 3 and r.history[-1]["train_episode_accuracy"] > 0.2
    print(name, {k: round(v, 3) for k, v in m.items()}, f"{r.seconds:.1f}s")


def test_protonet_without_meta_training_is_the_frozen_baseline_and_its_head_is_the_nearest_prototype(tmp_path):
    feats = synthetic_features(tmp_path / "feats")
    r = train_strategy(meta_config(tmp_path, name="protonet", meta_epochs=0, projection="none"), feats, tmp_path / "out")
    m = few_shot_metrics(r.few_shot)
    assert m["accuracy_5w1s"] == pytest.approx(m["protonet0_accuracy_5w1s"]) and r.loop is None
    xs, ys = feats.arrays("support")
    xt, yt = feats.arrays("test")
    head = load_head(r)
    with torch.no_grad():
        pred = head(torch.from_numpy(xt)).argmax(1).numpy()
    scaled = (torch.from_numpy(xt) - head.mean) / head.std
    protos = torch.stack([((torch.from_numpy(xs[ys == c]) - head.mean) / head.std).mean(0) for c in np.unique(ys)])
    assert np.array_equal(pred, proto_logits(scaled, protos).argmax(1).numpy())
    assert [r.labels[i] for i in pred] == [feats.labels[i] for i in proto_logits(scaled, protos).argmax(1).numpy() + np.unique(ys)[0]]


def test_interrupted_meta_training_resumes_exactly(tmp_path, monkeypatch):
    from tlops.training.callbacks import InjectedFault, RaiseAtStep

    feats = synthetic_features(tmp_path / "feats")
    cfg = meta_config(tmp_path / "a", name="meta_sgd", inner_lr=0.05, baselines=[])
    whole = train_strategy(cfg, feats, tmp_path / "whole")
    import shutil

    shutil.rmtree(whole.loop.checkpoint_dir)
    with pytest.raises(InjectedFault):
        train_strategy(cfg, feats, tmp_path / "broken", callbacks=[RaiseAtStep(13)])  # mid-epoch 1 (10 steps per epoch)
    resumed = train_strategy(cfg, feats, tmp_path / "resumed")
    assert resumed.loop.resumed_from is not None and resumed.loop.resumed_from["epoch"] == 1
    from safetensors.torch import load_file

    a, b = load_file(whole.head_path), load_file(resumed.head_path)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"
    assert whole.history == resumed.history or [r["val_episode_accuracy"] for r in whole.history] == \
        [r["val_episode_accuracy"] for r in resumed.history]


def test_bad_few_shot_data_fails_validation_with_the_rule_the_rows_and_a_fix(tmp_path, tiny_bert):
    from tlops.errors import ValidationFailed
    from tlops.pipeline import validate_step

    data = make_few_shot_text(tmp_path / "data", per_class=12, overlap=True)
    cfg = RunConfig.model_validate(tiny_config(tmp_path, data, tiny_bert, strategy={"name": "protonet", "shots": 2, "queries": 6}))
    with pytest.raises(ValidationFailed) as e:
        validate_step(cfg)
    failed = {(c.split, c.rule) for c in e.value.report.failed()}
    assert ("test", "classes disjoint from train (novel classes)") in failed, failed
    assert ("test", "every class has at least 11 rows (5 shots + 6 queries)") in failed, failed  # 12 - 5 carved support rows
    msg = str(e.value)
    assert "test.csv line" in msg and "'dog'" in msg and "Fix: few-shot evaluation" in msg
    assert not any(split == "train" for split, _ in failed)
    # the same data is fine for a strategy without the few-shot contract... except test's unknown label, as before
    plain = RunConfig.model_validate(tiny_config(tmp_path, data, tiny_bert))
    with pytest.raises(ValidationFailed, match="labels from the known set"):
        validate_step(plain)
