"""Meta-transfer with trainable top backbone groups (issue 12, `strategy.trainable`): the top group meta-trains
while the lower ones stay bit-identical, an interrupted run resumes to the same weights, and the registered
package embeds with the meta-trained backbone (predictions and support sets given at predict time). With
`inner_groups`, MAML's inner loop adapts the top group per support set: the package keeps the adapted weights of the
registered support set, predict-time adaptation reproduces them, and a flow run's registered model adapts in a fresh
process. The tiny random-weight BERT is a code-path fixture, not a pretrained model: no quality is claimed here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import STRATEGY_INNER_GROUPS, TOPICS, make_few_shot_text, tiny_config
from tlops.config import RunConfig
from tlops.strategies import get_strategy
from tlops.strategies.context import TrainContext

STRATEGY = STRATEGY_INNER_GROUPS


TEXTS = ["a dog seen near the river", "a rose seen near the lake", "a piano seen near the city"]


SUPPORT = [{"text": f"a {c} seen near the {w}", "label": c} for c in ("dog", "cat", "car") for w in ("hill", "road")]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model gains nothing from intra-op threads, and on a loaded machine their spin-waits made these tests
    ~7x slower (8.7 s vs 1.2 s for one run); restored after the module."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, tiny_bert):
    """The dataset, its cached features (the features step, as `tlops run` runs it) and one uninterrupted Meta-SGD
    run with the top group trainable (the MAML family's outer loop trains it; its checkpoints are dropped)."""
    from tlops.pipeline import features_step

    root = tmp_path_factory.mktemp("meta-backbone")
    data = make_few_shot_text(root / "data", per_class=14)
    cfg = RunConfig.model_validate(tiny_config(root, data, tiny_bert, strategy={**STRATEGY, "name": "meta_sgd", "inner_lr": 0.05}))
    feats = features_step(cfg, root / "features")
    whole = _train(cfg, feats, root / "whole")
    shutil.rmtree(whole.loop.checkpoint_dir)
    return cfg, feats, whole


def _train(cfg: RunConfig, feats, out: Path, callbacks=()):
    return get_strategy(cfg.strategy.name).train(TrainContext(cfg, feats, out, callbacks=list(callbacks)))


def _backbone_weights(package: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(package) / "backbone" / "model.safetensors"))


def test_top_group_meta_trains_lower_groups_stay_and_the_package_embeds_with_it(whole_run, tiny_bert):
    from tlops.backbones import load_backbone
    from tlops.features import embed_all
    from tlops.package import Predictor

    _, _, r = whole_run
    assert r.kind == "package" and set(r.labels) == set(TOPICS[15:20]) and len(r.history) == 2
    assert r.few_shot.model[0].episodes == 600 and r.history[-1]["trainable_groups"] == 1

    before, after = load_file(str(tiny_bert / "model.safetensors")), _backbone_weights(r.package)
    top = [k for k in after if k.startswith("encoder.layer.1.")]
    lower = [k for k in after if k.startswith(("embeddings.", "encoder.layer.0."))]
    assert top and lower
    assert all(torch.equal(before[k], after[k]) for k in lower), "frozen lower groups must be bit-identical"
    changed = [k for k in top if not torch.equal(before[k], after[k])]
    assert len(changed) == len(top), f"top-group weights unchanged by meta-training: {sorted(set(top) - set(changed))}"
    meta = json.loads((Path(r.package) / "tlops_model.json").read_text())
    assert meta["few_shot"]["algorithm"] == "meta_sgd" and meta["backbone"]["identity"]["fine_tuned_from"]

    # the package embeds with the meta-trained backbone, not the pretrained one
    texts = TEXTS
    pred = Predictor(r.package)
    pretrained = load_backbone(f"hf:{tiny_bert}", layers=[-1], pooling="mean", max_length=32)
    mine, theirs = pred._embed(texts), embed_all(pretrained, texts)
    assert np.abs(mine - theirs).max() > 1e-3
    # a support set given at predict time both go through those features
    s = pred.support(json.dumps(SUPPORT))
    proba = pred.predict_proba(texts, s)
    # the same adaptation fed with the pretrained backbone's features gives other probabilities
    head = pred.few_shot.head(embed_all(pretrained, list(s.inputs)), np.array([s.classes().index(label) for label in s.labels]), 3)
    with torch.no_grad():
        proba_pretrained = torch.softmax(head(torch.from_numpy(theirs)), 1).numpy()
    assert proba.shape == (3, 3) and np.abs(proba - proba_pretrained).max() > 1e-4
    assert set(pred.predict(texts)) <= set(TOPICS[15:20])


def test_interrupted_meta_training_of_the_backbone_resumes_to_the_same_weights(tmp_path, whole_run):
    from tlops.training.callbacks import InjectedFault, RaiseAtStep

    c, feats, whole = whole_run
    with pytest.raises(InjectedFault):
        _train(c, feats, tmp_path / "broken", callbacks=[RaiseAtStep(6)])  # mid-epoch 1 (4 steps per epoch)
    resumed = _train(c, feats, tmp_path / "resumed")
    assert resumed.loop.resumed_from is not None and resumed.loop.resumed_from["epoch"] == 1
    a, b = _backbone_weights(whole.package), _backbone_weights(resumed.package)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed backbone differs from the uninterrupted one"
    ha, hb = (load_file(str(Path(p) / "head.safetensors")) for p in (whole.package, resumed.package))
    assert all(torch.equal(ha[k], hb[k]) for k in ha)
    assert [h["val_episode_accuracy"] for h in whole.history] == [h["val_episode_accuracy"] for h in resumed.history]


def test_the_pyfunc_predicts_with_the_meta_trained_backbone(whole_run):
    """The pyfunc class MLflow loads (tasks/pyfunc_model.py), on the package: what the package's `Predictor` gives,
    whose features are the meta-trained backbone's (the test above), for its registered classes and for a support
    set given at predict time. In-process: MLflow's own loading in a fresh process is covered for few-shot packages
    by tests/flow/test_fewshot_serving.py and tests/system/test_fresh_process.py (registering + a fresh process cost ~70 s here, over this file's budget)."""
    from types import SimpleNamespace

    from tasks.pyfunc_model import TlopsModel
    from tlops.package import Predictor

    _, _, whole = whole_run
    model = TlopsModel()
    model.load_context(SimpleNamespace(artifacts={"package": whole.package}))
    pred = Predictor(whole.package)
    s = pred.support(SUPPORT)
    proba = model.predict(None, TEXTS, params={"support": json.dumps(SUPPORT), "proba": True})
    assert list(proba.columns) == s.classes() and np.allclose(proba.to_numpy(), pred.predict_proba(TEXTS, s), atol=1e-6)
    assert model.predict(None, TEXTS) == pred.predict(TEXTS)


@pytest.fixture(scope="module")
def inner_run(whole_run, tmp_path_factory):
    """Second-order MAML whose inner loop adapts the trainable top group too (`inner_groups: 1`), on the same data."""
    cfg, feats, _ = whole_run
    strategy = {**cfg.strategy.model_dump(exclude={"name"}), "inner_lr": 0.05, "inner_groups": 1}
    c = RunConfig.model_validate({**cfg.model_dump(), "strategy": {"name": "maml", **strategy}})
    return c, _train(c, feats, tmp_path_factory.mktemp("inner"))


def test_inner_loop_adapts_the_top_group_per_support_set_and_predict_time_adaptation_reproduces_it(inner_run, whole_run):
    """The package's backbone is the meta-learned starting point; the registered predictions use the top group as
    adapted to the registered support set; a support set at predict time adapts it again from the raw rows, and
    the registered support set's own rows give back the registered head and weights exactly."""
    from tlops.fewshot_predictor import ADAPTED_FILE
    from tlops.package import Predictor

    cfg, r = inner_run
    assert r.kind == "package" and r.few_shot.model[0].episodes == 600
    meta = json.loads((Path(r.package) / "tlops_model.json").read_text())["few_shot"]
    top = meta["backbone_params"]
    assert meta["algorithm"] == "maml" and top and all(k.startswith("encoder.layer.1.") for k in top)
    adapted, init = load_file(str(Path(r.package) / ADAPTED_FILE)), _backbone_weights(r.package)
    assert set(adapted) == set(top) and all(not torch.equal(adapted[k], init[k]) for k in top), "the inner loop left the group as it was"

    pred = Predictor(r.package)
    proba = pred.predict_proba(TEXTS)
    with torch.no_grad():  # the registered head on the meta-learned backbone's own features: other numbers
        plain = torch.softmax(pred.head(torch.from_numpy(pred._embed(TEXTS))), 1).numpy()
    assert np.abs(proba - plain).max() > 1e-5

    from tlops.data.fewshot import SUPPORT as SUPPORT_SPLIT
    from tlops.resolve import open_dataset

    data = open_dataset(cfg)  # the registered support set: the rows the run carved from test
    rows = [{"text": t, "label": label} for t, label in zip(data.inputs(SUPPORT_SPLIT), data.splits[SUPPORT_SPLIT]["label"])]
    s = pred.support(rows)
    assert s.classes() == pred.labels
    head, classes, params = pred._classifier(s)
    registered = load_file(str(Path(r.package) / "head.safetensors"))
    assert all(torch.allclose(head.state_dict()[k], registered[k], atol=1e-5) for k in registered)
    assert all(torch.allclose(params[k], adapted[k], atol=1e-6) for k in top)
    assert np.allclose(pred.predict_proba(TEXTS, s), proba, atol=1e-5)
    # a new support set adapts the group to its own classes
    other = pred.support(SUPPORT)
    _, _, other_params = pred._classifier(other)
    assert pred.classes(other) == ["car", "cat", "dog"] and any(not torch.allclose(other_params[k], adapted[k]) for k in top)


def test_inner_groups_need_trainable_groups_and_no_anil():
    from pydantic import ValidationError

    from tlops.strategies.maml import MamlStrategyConfig

    with pytest.raises(ValidationError, match="inner_groups: 2 > trainable: 1"):
        MamlStrategyConfig(trainable=1, inner_groups=2)
    with pytest.raises(ValidationError, match="anil"):
        MamlStrategyConfig(trainable=1, inner_groups=1, anil=True)
    assert "inner_groups" not in MamlStrategyConfig().fingerprint() and MamlStrategyConfig(trainable=1, inner_groups=1).fingerprint()["inner_groups"] == 1
