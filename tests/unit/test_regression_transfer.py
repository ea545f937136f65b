"""Regression targets beyond the text probe (issue 15, part 2): the fine-tuning objective for a number (loss on
the standardised target, its direction, Huber), early stopping and best-epoch selection on the lowest val MAE,
LP-FT from a ridge head, strategies that still refuse regression; and one Prefect flow run per other modality
(image: tilt of turned items, audio: speaking rate; tiny sets made by the demo builders' own code) whose
registered pyfunc returns floats in a fresh process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import TEXTS, make_regression_dataset, tiny_config
from tlops.config import config_from_dict
from tlops.errors import ConfigError
from tlops.task_types import training_task
from tlops.training.objectives import ClassificationTask, RegressionTask


def test_regression_task_scores_the_standardised_target_and_selects_the_lowest_mae():
    y = np.array([100.0, 200.0, 300.0])
    task = training_task("regression", y)
    assert isinstance(task, RegressionTask) and task.selection_metric == "val_mae" and not task.maximize
    assert isinstance(training_task("classification", np.array([0, 1])), ClassificationTask)
    exact = torch.tensor([[(v - 200.0) / task.std] for v in y])  # outputs are standardised: exact = (y - mean) / std
    targets = torch.as_tensor(y)
    assert float(task.loss(exact, targets)) == pytest.approx(0.0, abs=1e-6)
    assert float(task.loss(exact + 0.5, targets)) == pytest.approx(0.25, rel=1e-5)  # MSE in target std's
    assert float(task.loss(exact + 0.1, targets)) < float(task.loss(exact + 0.5, targets))  # closer -> lower loss
    huber = RegressionTask(200.0, task.std, loss="huber", huber_delta=1.0)
    assert float(huber.loss(exact + 3.0, targets)) == pytest.approx(2.5, rel=1e-5)  # linear beyond delta: 3 - 0.5
    m = task.metrics(exact + 0.5, y)  # metrics in the target's units: 0.5 std off everywhere
    assert m["val_mae"] == pytest.approx(0.5 * task.std) and m["val_r2"] < 1
    assert task.oriented(10.0) > task.oriented(20.0)  # a lower MAE is the better epoch
    assert ClassificationTask().oriented(0.9) > ClassificationTask().oriented(0.8)
    with pytest.raises(ValueError, match="unknown regression loss 'l1'"):
        RegressionTask(0.0, 1.0, loss="l1")


def _finetune_cfg(tmp_path, data, tiny_bert, **strategy):
    return config_from_dict(tiny_config(tmp_path, data, tiny_bert, registry__metric="mae", strategy={
        "name": "finetune", "epochs": 3, "batch_size": 16, "head_lr": 1e-2, "backbone_lr": 1e-3, "warmup_ratio": 0.0, "patience": 4, **strategy}))


def test_finetune_on_a_regression_dataset_keeps_the_lowest_val_mae_epoch_and_predicts_floats(tmp_path, tiny_bert):
    from tlops.package import Predictor
    from tlops.pipeline import run_core

    data = make_regression_dataset(tmp_path / "data", n=(48, 16, 8))  # text -> its length in characters
    r = run_core(_finetune_cfg(tmp_path, data, tiny_bert, loss="huber"), tmp_path / "run")
    history = r.train.history
    assert len(history) == 3 and {"val_mae", "val_r2", "val_loss"} <= set(history[0]), history[0]
    maes = [row["val_mae"] for row in history]
    assert r.train.loop.best_epoch == int(np.argmin(maes)) and len(set(maes)) > 1, maes  # the lowest MAE, not the highest
    assert r.train.val_metrics["mae"] == min(maes) and "macro_f1" not in r.train.val_metrics
    assert history[-1]["train_loss"] < history[0]["train_loss"], [h["train_loss"] for h in history]  # the loss goes down
    assert set(r.evaluation.metrics) == {"mae", "rmse", "r2", "spearman"}
    pred = Predictor(r.package)
    assert pred.task == "regression" and json.loads((Path(r.package) / "tlops_model.json").read_text())["fine_tune"]["val_mae"] == min(maes)
    out = pred.predict(TEXTS[:3])
    assert len(out) == 3 and all(isinstance(v, float) for v in out), out
    # predictions come back in target units (characters), not standardised ones
    assert 10 < np.mean(out) < 80, out

    lpft = run_core(_finetune_cfg(tmp_path, data, tiny_bert, lp_ft=True, epochs=1), tmp_path / "run-lpft")  # features cached
    assert json.loads((Path(lpft.package) / "tlops_model.json").read_text())["head"]["task"] == "regression"


def test_protonet_still_refuses_regression_before_training(tmp_path, tiny_bert):  # the MAML family trains it (test_meta_regression.py)
    from tlops.pipeline import validate_step

    reg = make_regression_dataset(tmp_path / "reg")
    with pytest.raises(ConfigError, match="strategy protonet does not train regression models yet"):
        validate_step(config_from_dict(tiny_config(tmp_path, reg, tiny_bert, strategy={"name": "protonet"}, registry__metric="mae")))


@pytest.mark.parametrize("mode", ["features", "finetune"])
def test_domain_adapt_on_a_regression_dataset_registers_a_float_predictor(tmp_path, tiny_bert, mode):
    """Source: lower-case texts -> their length; target (unlabeled.csv, test): upper-cased texts, a shift the
    tokenizer sees. DANN trains through the regression objective and predicts numbers in the target's units."""
    import csv

    from tlops.package import Predictor
    from tlops.pipeline import run_core

    data = make_regression_dataset(tmp_path / "data", n=(48, 16, 0))
    for split, texts in (("unlabeled", TEXTS[64:112]), ("test", TEXTS[112:136])):
        with open(data / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text"] if split == "unlabeled" else ["text", "label"])
            w.writerows([t.upper()] if split == "unlabeled" else [t.upper(), len(t)] for t in texts)
    strategy = {"name": "domain_adapt", "method": "dann", "mode": mode, "epochs": 2, "batch_size": 16, "selection_rows": 16,
                "baseline": False}  # (the source_only candidate and the vote: test_domain_adapt_selection.py)
    r = run_core(config_from_dict(tiny_config(tmp_path, data, tiny_bert, registry__metric="mae", strategy=strategy)), tmp_path / "run")
    a = r.train.adaptation
    assert a.chosen.oracle_test_mae is not None and a.oracle.test_mae <= a.chosen.oracle_test_mae  # logged, never used to choose
    assert set(r.evaluation.metrics) == {"mae", "rmse", "r2", "spearman"} and "macro_f1" not in r.train.val_metrics
    assert r.train.val_metrics["mae"] == a.chosen.val_metrics["mae"]
    pred = Predictor(r.package)
    out = pred.predict([t.upper() for t in TEXTS[112:115]])
    assert pred.task == "regression" and len(out) == 3 and all(isinstance(v, float) for v in out), out
    assert abs(np.mean(out) - np.mean([len(t) for t in TEXTS[112:115]])) < 40, out  # target units (characters), not standardised


def test_a_feature_constant_on_train_does_not_blow_up_test_predictions():
    """A dead channel (constant on train, not on test) divided by its ~0 std made an MLP probe predict
    thousands of degrees on the image demo (3e6 here without the floor); the regression heads' std floor
    keeps predictions in range. (Ridge gives a column of zeros no weight, so only the MLP shows it.)"""
    from tlops.modules.heads import predict_values
    from tlops.strategies.linear_probe import LinearProbeConfig
    from tlops.task_types import train_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x[:, 7] = 0.0  # dead on train and val
    y = 10.0 * x[:, 0]
    xt = rng.normal(size=(50, 8)).astype(np.float32)  # on test the channel fires
    r = train_probe(x[:200], y[:200], x[200:], y[200:], 0, LinearProbeConfig(head="mlp", epochs=10, lr=1e-2), task="regression")
    pred = np.asarray(predict_values(r.head, xt))
    assert np.abs(pred - 10.0 * xt[:, 0]).max() < 50, np.abs(pred - 10.0 * xt[:, 0]).max()


def test_the_std_floor_holds_when_most_features_are_dead():
    """1095 of EfficientNet-Lite0's 1280 channels were dead on a small 32 px image set: the median std is 0,
    so the floor comes from the live features' median (else an image fine-tune predicted -39880 degrees)."""
    from tlops.training.probe import finetune_scaler

    x = np.zeros((50, 10), dtype=np.float32)
    x[:, :3] = np.random.default_rng(0).normal(scale=2.0, size=(50, 3))  # 3 live features, 7 dead
    _, std = finetune_scaler(x)
    assert float(std[3:].min()) == pytest.approx(0.1 * float(np.median(x[:, :3].std(0))), rel=1e-3)
