"""Meta-transfer for numbers (issue 15): few-shot regression episodes over a dataset's `group:` tasks, the MAML
family's inner loop on the support MSE, the folded registered head, the baselines, the dataset contract and its
refusals, and one run of the whole core on a tiny dataset of tasks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tests.helpers import make_task_dataset, tiny_config
from tlops.config import config_from_dict
from tlops.errors import ConfigError, DataError, ValidationFailed
from tlops.evaluate import few_shot_metrics
from tlops.training.meta import Encoder
from tlops.training.episodes import TaskEpisodeSampler
from tlops.training.episodic_eval import _ridge_fit, support_mean
from tlops.training.meta import RegressionMetaLearner, adapted_regression_head
from tlops.training.objectives import RegressionTask


def test_episodes_are_one_task_each_and_a_pure_function_of_seed_and_index():
    groups = np.array(["a"] * 6 + ["b"] * 9 + ["c"] * 3)  # c is too small for 2 + 3 rows
    s = TaskEpisodeSampler(groups, shots=2, queries=3, seed=5)
    assert s.tasks == ["a", "b"]
    ep = s.batch(0, 40)
    assert ep.support.shape == (40, 2) and ep.query.shape == (40, 3)
    for sup, qry, task in zip(ep.support, ep.query, ep.tasks):
        assert set(groups[sup]) == {task} == set(groups[qry]) and not set(sup) & set(qry)
    assert set(ep.tasks) == {"a", "b"}
    again = TaskEpisodeSampler(groups, shots=2, queries=3, seed=5).batch(7, 3)  # episode i is the same wherever the batch starts
    assert (again.support == ep.support[7:10]).all() and (again.query == ep.query[7:10]).all()
    assert not (TaskEpisodeSampler(groups, 2, 3, seed=6).batch(0, 40).support == ep.support).all()
    with pytest.raises(ValueError, match="need a task with >= 12 rows; the largest has 9"):
        TaskEpisodeSampler(groups, shots=5, queries=7, seed=0)


def _learner(algorithm="maml", steps=1, kind="linear", lr=0.1):
    torch.manual_seed(0)
    x = torch.randn(40, 6)
    enc = Encoder(6, kind, 8, 4, x.mean(0), x.std(0))
    learner = RegressionMetaLearner(enc, algorithm, inner_lr=lr, inner_steps=steps)
    with torch.no_grad():
        learner.head.weight.normal_()
    return enc, learner, x


def test_one_inner_step_is_a_normalised_sgd_step_of_the_head_on_the_support_mse():
    enc, learner, x = _learner()
    sx, sy = x[:5], torch.randn(5)
    params = learner.initial(enc)
    fast = learner.adapt(enc, params, sx, sy)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    loss = F.mse_loss(learner.predict(enc, leaves, sx), sy)
    grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
    z = enc(sx).detach()
    step = 0.1 / (2 * (float((z**2).sum(1).mean()) + 1.0))  # NLMS: lr over twice the support's mean squared norm (+1: the bias)
    for k in ("head.weight", "head.bias"):
        assert torch.allclose(fast[k], leaves[k] - step * grads[k], atol=1e-6), k
    for k in ("layers.0.weight", "layers.0.bias"):  # the encoder is meta-learned, not adapted (ANIL)
        assert torch.equal(fast[k], params[k]), k
    assert learner.adapted == ["head.weight", "head.bias"]


def test_the_normalised_step_cannot_diverge_whatever_the_embedding_scale():
    enc, learner, x = _learner(steps=20, lr=1.9)
    with torch.no_grad():
        enc.layers[0].weight.mul_(1e3)  # a huge embedding: a plain step of 1.9 would blow up at once
    sx, sy = x[:5], torch.randn(5)
    losses = [float(F.mse_loss(learner.predict(enc, learner.adapt(enc, learner.initial(enc), sx, sy, steps=k), sx), sy).detach())
              for k in (0, 1, 5, 20)]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0], losses
    _, one, _ = _learner(lr=1.0)
    fast = one.adapt(enc, one.initial(enc), x[:1], torch.tensor([3.0]))
    assert float(one.predict(enc, fast, x[:1]).detach()) == pytest.approx(3.0, rel=1e-4)  # lr 1 fits a single row exactly


def test_adaptation_lowers_the_support_loss_and_maml_differs_from_fomaml_only_in_the_outer_gradient():
    enc, learner, x = _learner(steps=5)
    sx, sy, qx, qy = x[:5], torch.randn(5), x[5:15], torch.randn(10)
    before = F.mse_loss(learner.predict(enc, learner.initial(enc), sx), sy)
    after = F.mse_loss(learner.predict(enc, learner.adapt(enc, learner.initial(enc), sx, sy), sx), sy)
    assert float(after.detach()) < float(before.detach())

    def outer_grad(algorithm):
        e, lr, _ = _learner(algorithm, steps=2)
        pred = lr.episode_outputs(e, sx[None], sy[None], qx[None])
        F.mse_loss(pred, qy[None]).backward()
        return e.layers[0].weight.grad.clone(), lr.head.weight.grad.clone()

    maml, fomaml = outer_grad("maml"), outer_grad("fomaml")
    assert all(g.abs().sum() > 0 for g in (*maml, *fomaml))  # the outer loss reaches the encoder and the head's initialisation
    assert not torch.allclose(maml[1], fomaml[1])  # the second-order term (through the inner steps on the head)
    _, sgd, _ = _learner("meta_sgd")
    assert {k for k, _ in sgd.named_parameters()} == {"head.weight", "head.bias", "alpha.head__weight", "alpha.head__bias"}
    with pytest.raises(ValueError, match="'protonet' has no inner loop for numbers"):
        RegressionMetaLearner(enc, "protonet")


@pytest.mark.parametrize("kind", ["linear", "mlp", "none"])
def test_the_registered_head_is_the_adapted_model_in_the_targets_unit(kind):
    enc, learner, x = _learner(steps=3, kind=kind)
    target = RegressionTask(50.0, 4.0)
    sx, sy = x[:5], 50 + 4 * torch.randn(5)
    head = adapted_regression_head(learner, enc, sx, sy, target)
    fast = learner.adapt(enc, learner.initial(enc), sx, target.standardise(sy))
    want = learner.predict(enc, fast, x[5:]) * 4.0 + 50.0
    with torch.no_grad():
        got = head.to_target(head(x[5:]))
    assert torch.allclose(got.float(), want.detach(), atol=1e-4)
    assert head.spec["task"] == "regression" and head.spec["n_classes"] == 1


def test_support_ridge_matches_scikit_learn_and_the_support_mean_baseline_predicts_the_mean():
    from sklearn.linear_model import Ridge

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 5, 30, generator=g, dtype=torch.float64), torch.randn(1, 5, generator=g, dtype=torch.float64)
    w, b = _ridge_fit(x, y, 2.0)
    ref = Ridge(alpha=2.0).fit(x[0].numpy(), y[0].numpy())
    assert np.allclose(w[0].numpy(), ref.coef_, atol=1e-8) and float(b[0]) == pytest.approx(float(ref.intercept_))
    pred = support_mean()(x, y, torch.randn(1, 3, 30, dtype=torch.float64))
    assert torch.allclose(pred, y.mean(1, keepdim=True).expand(1, 3))


def test_the_dataset_contract_for_tasks(tmp_path, tiny_bert):
    from tlops.data.dataset import load_dataset
    from tlops.pipeline import validate_step

    def cfg(data, **strategy):
        return config_from_dict(tiny_config(tmp_path, data, tiny_bert, registry__metric="mae",
                                            strategy={"name": "maml", "shots": 2, "queries": 3, **strategy}))

    with pytest.raises(DataError, match=r"line 3: `group:` only applies to a regression dataset"):
        (tmp_path / "cls").mkdir()
        (tmp_path / "cls" / "dataset.yaml").write_text("modality: text\nname: x\ngroup: task\n")
        load_dataset(tmp_path / "cls")
    no_column = make_task_dataset(tmp_path / "nocol", meta="group: item\n")
    with pytest.raises(DataError, match=r"train.csv.*item"):
        load_dataset(no_column)
    no_group = make_task_dataset(tmp_path / "nogroup", meta="")
    with pytest.raises(DataError, match=r"names no task column; add `group: <column>`"):
        validate_step(cfg(no_group))
    leaky = make_task_dataset(tmp_path / "leaky", val_tasks_from_train=True)
    with pytest.raises(ValidationFailed, match=r"'tasks disjoint from train \(new tasks\)' failed in .*leaky/val.csv lines 2, 3"):
        validate_step(cfg(leaky))
    ok = make_task_dataset(tmp_path / "ok")
    for strategy, why in [({"name": "protonet"}, "strategy protonet does not train regression models yet"),
                          ({"trainable": 1, "inner_groups": 1}, r"inner_groups: 1 asks the inner loop to adapt backbone groups"),
                          ({"baselines": ["protonet0"]}, r"\['protonet0'\] are not regression baselines"),
                          ({"anil": False}, "few-shot regression adapts the head only"),
                          ({"inner_lr": 2.5}, r"inner_lr: 2.5 is outside \(0, 2\)")]:
        with pytest.raises(ConfigError, match=why):
            validate_step(cfg(ok, **strategy))
    validate_step(cfg(ok))  # a dataset of tasks passes


def test_maml_on_a_dataset_of_tasks_registers_a_model_for_its_support_task(tmp_path, tiny_bert):
    from tlops.data.fewshot import SUPPORT
    from tlops.package import Predictor
    from tlops.pipeline import run_core
    from tlops.resolve import open_dataset

    data = make_task_dataset(tmp_path / "data")
    cfg = config_from_dict(tiny_config(tmp_path, data, tiny_bert, registry__metric="mae", strategy={
        "name": "meta_sgd", "shots": 2, "queries": 3, "inner_steps": 2, "projection": "linear", "embedding_dim": 8, "meta_epochs": 2,
        "episodes_per_epoch": 8, "meta_batch": 4, "val_episodes": 10, "eval_shots": [1, 2, 5], "support_shots": 3}))
    r = run_core(cfg, tmp_path / "run")
    fs = r.train.few_shot
    assert fs.kind == "regression" and [s.shots for s in fs.model] == [1, 2, 5] and fs.skipped_shots == []
    assert set(fs.baselines) == {"support_mean", "support_ridge", "pooled_ridge"}
    assert {"mae_1s", "ci95_mae_5s", "support_ridge_mae_2s"} <= set(r.evaluation.metrics)
    assert len(r.train.history) == 2 and {"val_episode_mae", "val_mae"} <= set(r.train.history[0])
    ds = open_dataset(cfg)
    support_task = fs.support_task
    assert set(ds.groups(SUPPORT)) == {support_task} and len(ds.groups(SUPPORT)) == 3
    test_groups = ds.groups("test")
    assert r.train.test_rows == [i for i, g in enumerate(test_groups) if g == support_task] and len(r.train.test_rows) == 9
    assert r.evaluation.n_test == 9  # scored on its support task's other rows only
    assert any(p.endswith("mae_vs_shots.png") for p in r.evaluation.plots)
    predictor = Predictor(r.package)
    items = ds.inputs("test")[:3]
    pred = predictor.predict(items)
    assert all(isinstance(v, float) for v in pred), pred
    # the registered head is the packaged rule adapted to the registered support rows (stored features and targets)
    xs, ys = predictor.few_shot.registered_support()
    assert ys.dtype == np.float64 and len(ys) == 3
    from tlops.modules.heads import predict_values

    again = predict_values(predictor.few_shot.regression_head(xs, ys), predictor._embed(items))
    assert np.allclose(again, pred, atol=1e-5)
    # another task's labelled rows given at predict time adapt the head to that task
    other = next(g for g in dict.fromkeys(test_groups) if g != support_task)
    rows = [{"text": t, "label": v} for t, v, g in zip(ds.inputs("test"), ds.targets("test"), test_groups) if g == other][:3]
    adapted = predictor.predict(items, predictor.support(json.dumps(rows)))
    assert not np.allclose(adapted, pred)
    want = predict_values(predictor.few_shot.regression_head(predictor._embed([r["text"] for r in rows]), [r["label"] for r in rows]),
                          predictor._embed(items))
    assert np.allclose(adapted, want, atol=1e-5)
    as_csv = predictor.predict(items, predictor.support([{"text": r["text"], "label": str(r["label"])} for r in rows]))
    assert np.allclose(as_csv, adapted, atol=1e-6)  # targets as a CSV gives them (strings) read the same
    for bad in ("abc", "nan", True, None):
        with pytest.raises(DataError, match=r"support row 1 has label .*; this model predicts numbers"):
            predictor.support([{"text": "x", "label": bad}])


def test_trainable_top_group_meta_trains_for_tasks_and_the_package_predicts_and_adapts_with_it(tmp_path, tiny_bert):
    """`trainable: 1` on a dataset of tasks: the top backbone group meta-trains (lower ones stay bit-identical), the
    train step writes the whole package, the registered model is the one adapted to the support task (scored on that
    task's other test rows), and a support set given at predict time is embedded by the meta-trained backbone."""
    from safetensors.torch import load_file

    from tlops.backbones import load_backbone
    from tlops.data.fewshot import SUPPORT
    from tlops.features import embed_all
    from tlops.modules.heads import predict_values
    from tlops.package import Predictor
    from tlops.pipeline import run_core
    from tlops.resolve import open_dataset

    data = make_task_dataset(tmp_path / "data")
    cfg = config_from_dict(tiny_config(tmp_path, data, tiny_bert, registry__metric="mae", strategy={
        "name": "maml", "shots": 2, "queries": 3, "projection": "linear", "embedding_dim": 8, "meta_epochs": 2,
        "episodes_per_epoch": 8, "meta_batch": 4, "val_episodes": 10, "eval_shots": [1, 2], "support_shots": 3, "trainable": 1,
        "backbone_lr": 1e-3}))
    r = run_core(cfg, tmp_path / "run")
    assert r.train.kind == "package" and r.train.history[-1]["trainable_groups"] == 1
    assert r.train.few_shot.kind == "regression" and [s.shots for s in r.train.few_shot.model] == [1, 2]
    before, after = load_file(str(tiny_bert / "model.safetensors")), load_file(str(Path(r.package) / "backbone" / "model.safetensors"))
    top = [k for k in after if k.startswith("encoder.layer.1.")]
    lower = [k for k in after if k.startswith(("embeddings.", "encoder.layer.0."))]
    assert top and lower and all(torch.equal(before[k], after[k]) for k in lower), "frozen lower groups must be bit-identical"
    assert all(not torch.equal(before[k], after[k]) for k in top), "the top group did not meta-train"
    ds = open_dataset(cfg)
    support_task = r.train.few_shot.support_task
    assert r.train.test_rows == [i for i, g in enumerate(ds.groups("test")) if g == support_task] and r.evaluation.n_test == 9
    # the registered head is the packaged rule adapted to the support rows as the meta-trained backbone embeds them
    pred = Predictor(r.package)
    items = ds.inputs("test")[:3]
    values = pred.predict(items)
    assert all(isinstance(v, float) for v in values)
    support_items = ds.inputs(SUPPORT)
    mine = pred._embed(support_items)
    pretrained = embed_all(load_backbone(f"hf:{tiny_bert}", layers=[-1], pooling="mean", max_length=32), support_items)
    assert np.abs(mine - pretrained).max() > 1e-3  # the package embeds with its meta-trained backbone
    xs, ys = pred.few_shot.registered_support()
    assert np.allclose(xs, mine, atol=1e-5)
    assert np.allclose(predict_values(pred.few_shot.regression_head(xs, ys), pred._embed(items)), values, atol=1e-5)
    # another task's rows at predict time go through the same features
    test_groups = ds.groups("test")
    other = next(g for g in dict.fromkeys(test_groups) if g != support_task)
    rows = [{"text": t, "label": v} for t, v, g in zip(ds.inputs("test"), ds.targets("test"), test_groups) if g == other][:3]
    adapted = pred.predict(items, pred.support(json.dumps(rows)))
    want = predict_values(pred.few_shot.regression_head(pred._embed([r["text"] for r in rows]), [r["label"] for r in rows]),
                          pred._embed(items))
    assert np.allclose(adapted, want, atol=1e-5) and not np.allclose(adapted, values)


def test_the_train_result_round_trips_as_json_with_its_regression_report(tmp_path):
    from tlops.records import (
        TRAIN_RESULT,
        FewShotRegressionReport,
        HeadResult,
        ShotError,
        dump_json,
    )

    report = FewShotRegressionReport(split="test", queries=3, model=[ShotError(shots=1, episodes=600, mae=2.0, ci95=0.1)],
                                     baselines={"support_mean": [ShotError(shots=1, episodes=600, mae=3.0, ci95=0.2)]},
                                     support_task="task12")
    r = HeadResult(strategy="maml", head_path="h", spec={}, history=[], val_metrics={}, seconds=1.0, few_shot=report,
                   test_rows=[4, 5])
    # how the train step's result crosses a work pool's process boundary (flows/train_step.py)
    back = TRAIN_RESULT.validate_json(dump_json(r, tmp_path / "result.json").read_text())
    assert back.few_shot == report and back.test_rows == [4, 5]
    assert few_shot_metrics(report) == {"mae_1s": 2.0, "ci95_mae_1s": 0.1, "support_mean_mae_1s": 3.0, "support_mean_ci95_mae_1s": 0.2}
