"""Domain adaptation (`domain_adapt`): the loss terms on known inputs, the GRL, the selection criteria, the
strategy on a synthetic feature-space shift (features mode, through its registered entry point), resume
exactness, and the pipeline/flow end to end on a tiny text model with a target split built here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import make_da_text_dataset, make_text_dataset, tiny_config
from tlops.config import RunConfig, config_from_dict
from tlops.errors import ConfigError
from tlops.modules.heads import load_head
from tlops.records import CacheTotals, FeatureSet
from tlops.strategies import get_strategy
from tlops.strategies.context import TrainContext
from tlops.training import adaptation as da
from tlops.training.callbacks import RAISE_ENV, InjectedFault
from tlops.training.selection import batch_nuclear_norm, dev_risk, information_maximization, iwv_risk, soft_neighborhood_density


def test_grl_is_identity_forward_and_reverses_and_scales_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(3)
    y = da.reverse_gradient(x, 0.25)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.25 * w.expand(4, 3)), x.grad


def test_grl_coefficient_follows_the_dann_schedule_of_the_global_step():
    assert da.grl_coefficient(0, 100) == 0.0
    assert da.grl_coefficient(50, 100) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert da.grl_coefficient(100, 100) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert da.grl_coefficient(500, 100) == da.grl_coefficient(100, 100)  # p is capped at 1


def test_mmd_is_zero_for_identical_samples_and_grows_with_the_shift():
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    assert float(da.gaussian_mmd(x, x.clone())) == pytest.approx(0.0, abs=1e-6)
    values = [float(da.gaussian_mmd(x, x + shift)) for shift in (0.5, 1.0, 3.0)]
    assert 0 < values[0] < values[1] < values[2], values


def test_coral_is_zero_for_equal_statistics_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 4, generator=g)
    assert float(da.coral(x, x.clone())) == pytest.approx(0.0, abs=1e-9)
    scaled = x * torch.tensor([1.0, 1.0, 3.0, 1.0])
    s = torch.cat([x, scaled]).std(0)  # TLlib's mean + covariance terms, on features scaled by the pooled batch's std
    expected = float(((x / s).mean(0) - (scaled / s).mean(0)).pow(2).mean() + (torch.cov((x / s).T) - torch.cov((scaled / s).T)).pow(2).mean())
    assert float(da.coral(x, scaled)) == pytest.approx(expected, rel=1e-5) and expected > 0.01
    assert float(da.coral(x, x + 5.0)) > 0.1  # a mean shift counts too


def test_domain_adversarial_loss_is_log2_for_a_blind_discriminator_and_reports_its_accuracy():
    disc = da.DomainDiscriminator(3, 8, dropout=0.0)
    for p in disc.parameters():
        torch.nn.init.zeros_(p)  # logit 0 everywhere: p(target) = 0.5
    loss = da.DomainAdversarialLoss(disc)
    s = da.Side(torch.randn(6, 3), torch.randn(6, 2))
    t = da.Side(torch.randn(4, 3), torch.randn(4, 2))
    assert float(loss(s, t, 1.0).detach()) == pytest.approx(math.log(2))
    assert loss.monitors["domain_acc"] == pytest.approx(0.4)  # logit 0 -> "target" for all 10 rows: the 4 target rows right


def test_cdan_multilinear_map_is_the_outer_product_or_a_fixed_randomized_map():
    f, g = torch.randn(5, 3), torch.softmax(torch.randn(5, 2), 1)
    full = da.MultilinearMap(3, 2, max_dim=4096)
    assert torch.allclose(full(f, g), torch.einsum("bc,bd->bcd", g, f).flatten(1))
    rnd = da.MultilinearMap(300, 20, max_dim=64, seed=3)
    assert rnd.randomized and rnd(torch.randn(5, 300), torch.softmax(torch.randn(5, 20), 1)).shape == (5, 64)
    assert torch.equal(rnd.rf, da.MultilinearMap(300, 20, max_dim=64, seed=3).rf)  # part of the saved state, reproducible
    cdan = da.ConditionalDomainAdversarialLoss(da.DomainDiscriminator(6, 8), full, entropy_conditioning=True)
    value = cdan(da.Side(f, torch.randn(5, 2)), da.Side(f + 1, torch.randn(5, 2)), 1.0)
    assert value.ndim == 0 and 0 <= cdan.monitors["domain_acc"] <= 1


def test_dev_control_variate_and_snd_on_known_inputs():
    losses = np.array([0.2, 0.4, 0.6, 0.8])
    assert dev_risk(losses, np.ones(4)) == pytest.approx(0.5)  # no shift: the plain mean validation loss
    w = np.array([0.5, 1.5, 0.5, 1.5])
    wl = w * losses
    eta = -np.cov(wl, w)[0, 1] / np.var(w, ddof=1)
    assert dev_risk(losses, w) == pytest.approx(wl.mean() + eta * w.mean() - eta)
    confident = torch.tensor([[9.0, 0.0]] * 10 + [[0.0, 9.0]] * 10)
    uniform = torch.zeros(20, 2)
    assert soft_neighborhood_density(confident) < soft_neighborhood_density(uniform)  # 2 tight clusters vs all alike
    assert soft_neighborhood_density(uniform) == pytest.approx(math.log(19), rel=1e-4)


def test_iwv_im_and_bnm_on_known_inputs():
    losses = np.array([0.2, 0.4, 0.6, 0.8])
    assert iwv_risk(losses, np.ones(4)) == pytest.approx(0.5)
    extreme = np.array([1e-3, 1e-3, 1e-3, 1e3])  # one near-separable row: DEV's control variate can leave [min, max] loss
    assert losses.min() <= iwv_risk(losses, extreme) <= losses.max()
    assert iwv_risk(losses, extreme) == pytest.approx((extreme * losses).sum() / extreme.sum())
    spread = torch.tensor([[20.0, 0.0]] * 10 + [[0.0, 20.0]] * 10)  # confident and balanced over both classes
    collapsed = torch.tensor([[20.0, 0.0]] * 20)  # confident, all one class: SND likes it, IM and BNM must not
    uniform = torch.zeros(20, 2)
    assert information_maximization(spread) == pytest.approx(math.log(2), abs=1e-6)  # H(mean) = log 2, no row entropy
    assert information_maximization(collapsed) == pytest.approx(0.0, abs=1e-6)
    assert information_maximization(uniform) == pytest.approx(0.0, abs=1e-6)  # H(mean) = log 2 = every row's entropy
    assert batch_nuclear_norm(spread) == pytest.approx(2 * math.sqrt(10) / 20, rel=1e-5)  # two orthogonal blocks of 10 one-hots
    assert batch_nuclear_norm(collapsed) == pytest.approx(math.sqrt(20) / 20, rel=1e-5)  # rank one
    assert batch_nuclear_norm(uniform) == pytest.approx(math.sqrt(20 * 0.5) / 20, rel=1e-5)


def _gaussian(n: int, seed: int, target: bool, d: int = 8, shift: float = 2.0):
    """Class signal along dim 0; the target domain moves the 6 nuisance dims 2..7 by `shift`."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, d))
    x[:, 0] += 1.5 * (2 * y - 1)
    if target:
        x[:, 2:] += shift
    return x.astype(np.float32), y.astype(np.int64)


def _toy_features(root: Path, n: int = 200) -> tuple[FeatureSet, dict]:
    root.mkdir(parents=True, exist_ok=True)
    data = {"train": _gaussian(n, 0, False), "val": _gaussian(n // 2, 1, False), "unlabeled": _gaussian(n, 2, True),
            "test": _gaussian(n, 3, True)}
    for split, (x, y) in data.items():
        np.savez(root / f"{split}.npz", x=x, y=y if split != "unlabeled" else np.full(len(y), -1))
    return FeatureSet(dir=str(root), splits=list(data), labels=["a", "b"], num_features=8, identity={"toy": 1}, found_via="test",
                      cache=CacheTotals(), seconds=0.0), data


# baseline false: these tests check each method's own training; the source_only candidate and the agreement choice
# are tests/unit/test_domain_adapt_selection.py's
TOY = {"name": "domain_adapt", "epochs": 15, "batch_size": 32, "bottleneck": 32, "head_lr": 0.01, "weight_decay": 0.0,
       "max_grad_norm": None, "discriminator_hidden": 64, "baseline": False}


def _train_toy(tmp_path: Path, callbacks=(), **strategy):
    feats, data = _toy_features(tmp_path / "features")
    cfg = RunConfig.model_validate({"data": {"path": str(tmp_path)}, "backbone": {"name": "toy"}, "registry": {"model_name": "toy"},
                                    "execution": {"work_dir": str(tmp_path / "runs")}, "strategy": {**TOY, **strategy}})
    return get_strategy("domain_adapt").train(TrainContext(cfg, feats, tmp_path / "out", callbacks=list(callbacks))), data


def _domain_probe_accuracy(result, data) -> float:
    """A fresh logistic-regression domain classifier on the trained adapter's features (4-fold CV accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    head = load_head(result)
    with torch.no_grad():
        z = [head.net[:2](head.standardize(torch.from_numpy(data[s][0]))).numpy() for s in ("train", "unlabeled")]
    return float(cross_val_score(LogisticRegression(max_iter=2000), np.vstack(z), np.r_[np.zeros(len(z[0])), np.ones(len(z[1]))], cv=4).mean())


def test_alignment_makes_the_domains_indistinguishable_on_a_gaussian_feature_shift(tmp_path):
    source_only, data = _train_toy(tmp_path / "so", method="source_only")
    mmd, _ = _train_toy(tmp_path / "mmd", method="mmd", epochs=40, batch_size=16, head_lr=0.003)
    before, after = _domain_probe_accuracy(source_only, data), _domain_probe_accuracy(mmd, data)
    assert before > 0.95, before  # the shift is plain to see in unadapted features
    assert after < 0.7, (before, after)  # near chance (0.5) once aligned
    assert mmd.adaptation.chosen.oracle_test_macro_f1 > source_only.adaptation.chosen.oracle_test_macro_f1


def test_dann_beats_source_only_on_the_toy_shift_and_logs_the_discriminator(tmp_path):
    source_only, _ = _train_toy(tmp_path / "so", method="source_only")
    dann, _ = _train_toy(tmp_path / "dann", method="dann", trade_off=5.0, discriminator_hidden=256)
    so, ad = source_only.adaptation.chosen.oracle_test_macro_f1, dann.adaptation.chosen.oracle_test_macro_f1
    assert ad > so + 0.03, (so, ad)
    rows = dann.history
    assert all(0.0 <= r["domain_acc"] <= 1.0 for r in rows) and rows[0]["grl_coeff"] < rows[-1]["grl_coeff"] <= 1.0
    for key in ("dev_risk", "iwv_risk", "snd", "im", "bnm", "oracle_test_macro_f1", "train_loss_task", "train_loss_transfer", "val_macro_f1"):
        assert all(key in r for r in rows), key
    a = dann.adaptation
    assert a.criterion == "dev_risk" and a.chosen.criterion == min(r["dev_risk"] for r in rows)  # DEV chose, not the oracle
    assert a.oracle.test_macro_f1 == max(r["oracle_test_macro_f1"] for r in rows)


def test_adabn_standardises_each_domain_with_its_own_statistics_and_the_package_with_the_targets(tmp_path):
    """adabn: no alignment loss; the target rows get their own z-scores (the toy's target moves 6 nuisance dims by 2
    standard deviations, which that undoes), one model whatever trade_off lists, and the packaged head standardises
    raw inputs with the unlabelled target rows' statistics, so it scores the raw target test rows as the run did."""
    from sklearn.metrics import f1_score

    from tlops.training.probe import finetune_scaler

    source_only, data = _train_toy(tmp_path / "so", method="source_only")
    adabn, _ = _train_toy(tmp_path / "adabn", method="adabn", trade_off=[0.3, 1.0])
    so, ad = source_only.adaptation.chosen.oracle_test_macro_f1, adabn.adaptation.chosen.oracle_test_macro_f1
    assert ad > so + 0.03, (so, ad)
    assert len(adabn.adaptation.candidates) == 1 and "train_loss_transfer" not in adabn.history[0]
    head = load_head(adabn)
    mean_t, _ = finetune_scaler(data["unlabeled"][0])
    assert torch.allclose(head.mean, mean_t, atol=1e-5)
    with torch.no_grad():
        predicted = head(torch.from_numpy(data["test"][0])).argmax(1).numpy()
    assert f1_score(data["test"][1], predicted, average="macro") == pytest.approx(ad, abs=1e-6)  # the raw rows, as the run scored them
    with pytest.raises(ConfigError, match="method adabn standardises the cached frozen features per domain, so it needs mode: features"):
        config_from_dict({"data": {"path": "d"}, "backbone": {"name": "toy"}, "registry": {"model_name": "m"},
                          "strategy": {"name": "domain_adapt", "method": "adabn", "mode": "finetune"}})


class _Shifts:
    """A backbone whose `augment` adds the generator's first draw (so a batch shows whether and how it was augmented)."""

    def augment(self, batch, g, flip=True):
        return batch + torch.rand(1, generator=g) + (100.0 if flip else 0.0)


def test_target_batches_go_through_the_backbones_augmentation_with_a_generator_of_the_step():
    data = type("Rows", (), {"backbone": _Shifts(), "__len__": lambda self: 10,
                             "inputs": lambda self, idx: torch.tensor(idx, dtype=torch.float32)})()
    plain, augmented = da.TargetBatches(data, 4, seed=0), da.TargetBatches(data, 4, seed=0, augment=True, flip=False)
    steps = range(5)  # 3 batches a pass: the second pass is reshuffled, and each step's draw is its own
    deltas = [augmented(step) - plain(step) for step in steps]
    one_draw = [bool(torch.allclose(d, d[0].expand_as(d))) and 0 < float(d[0]) < 1 for d in deltas]  # flip=False reached it
    again = [bool(torch.equal(augmented(step), da.TargetBatches(data, 4, seed=0, augment=True, flip=False)(step))) for step in steps]
    assert all(one_draw) and all(again), (one_draw, again, deltas)  # one draw per batch, and a pure function of the step
    assert not torch.equal(augmented(0) - plain(0), augmented(1) - plain(1))


def _record_target_augmentation(monkeypatch) -> list:
    """The `augment` flag of every TargetBatches a run builds, in order."""
    seen = []

    class Recorded(da.TargetBatches):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("augment"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(da, "TargetBatches", Recorded)
    return seen


def test_a_trade_off_list_trains_one_model_per_value_and_keeps_the_criterions_choice(tmp_path, monkeypatch):
    seen = _record_target_augmentation(monkeypatch)
    result, _ = _train_toy(tmp_path, method="coral", trade_off=[0.1, 3.0], epochs=4, selection="snd", augment=True)
    assert seen == [False, False]  # `augment` (for finetune mode) has no effect on cached features: target rows stay as cached
    a = result.adaptation
    assert [c.trade_off for c in a.candidates] == [0.1, 3.0]
    assert a.chosen == max(a.candidates, key=lambda c: c.criterion)  # SND: higher is better
    assert len(result.history) == 4 and result.val_metrics == a.chosen.val_metrics and "macro_f1" in result.val_metrics


def test_a_run_stopped_by_a_fault_resumes_exactly(tmp_path, monkeypatch):
    """Killed after step 10 (epoch 1, mid-epoch: checkpoints every 4 steps), rerun: the same rows and weights as
    an uninterrupted run, because the GRL coefficient and the target batches derive from the global step."""
    from tlops.training.callbacks import faults_from_env

    over = {"method": "dann", "epochs": 3, "checkpoint_every_steps": 4}
    reference, _ = _train_toy(tmp_path / "ref", **over)
    monkeypatch.setenv(RAISE_ENV, "10")
    with pytest.raises(InjectedFault):
        _train_toy(tmp_path / "crash", callbacks=faults_from_env(), **over)
    monkeypatch.delenv(RAISE_ENV)
    resumed, _ = _train_toy(tmp_path / "crash", **over)
    assert resumed.loop.resumed_from == {"checkpoint": "step-000000008", "epoch": 1, "batch": 1, "global_step": 8}
    drop = {"epoch_train_seconds"}
    for a, b in zip(reference.history, resumed.history, strict=True):
        assert {k: v for k, v in a.items() if k not in drop} == pytest.approx({k: v for k, v in b.items() if k not in drop}, abs=1e-6)
    ra, rb = load_head(reference).state_dict(), load_head(resumed).state_dict()
    assert all(torch.allclose(ra[k], rb[k], atol=1e-6) for k in ra)


def _regression_toy(root: Path, n: int = 200) -> tuple[FeatureSet, dict]:
    """Target = 2 x dim 0 + noise; the target domain moves the nuisance dims 2..7 (as `_gaussian`)."""
    root.mkdir(parents=True, exist_ok=True)
    data = {}
    for i, split in enumerate(("train", "val", "unlabeled", "test")):
        rng = np.random.default_rng(10 + i)
        x = rng.normal(0, 1, (n, 8)).astype(np.float32)
        if split in ("unlabeled", "test"):
            x[:, 2:] += 2.0
        y = (2.0 * x[:, 0] + 0.1 * rng.normal(0, 1, n) + 5.0).astype(np.float32)
        data[split] = (x, y)
        np.savez(root / f"{split}.npz", x=x, y=y if split != "unlabeled" else np.full(n, np.nan, dtype=np.float32))
    return FeatureSet(dir=str(root), splits=list(data), labels=[], task="regression", num_features=8, identity={"toy": 2},
                      found_via="test", cache=CacheTotals(), seconds=0.0), data


def _train_regression_toy(tmp_path: Path, **strategy):
    feats, data = _regression_toy(tmp_path / "features")
    cfg = RunConfig.model_validate({"data": {"path": str(tmp_path)}, "backbone": {"name": "toy"}, "registry": {"model_name": "toy", "metric": "mae"},
                                    "execution": {"work_dir": str(tmp_path / "runs")}, "strategy": {**TOY, **strategy}})
    return get_strategy("domain_adapt").train(TrainContext(cfg, feats, tmp_path / "out")), data


def test_regression_adapts_through_the_same_objective_and_is_chosen_without_target_labels(tmp_path):
    from tlops.modules.heads import predict_values

    source_only, data = _train_regression_toy(tmp_path / "so", method="source_only")
    mmd, _ = _train_regression_toy(tmp_path / "mmd", method="mmd", epochs=40, batch_size=16, head_lr=0.003)
    rows = mmd.history
    for key in ("dev_risk", "iwv_risk", "oracle_test_mae", "val_mae", "train_loss_task", "train_loss_transfer"):
        assert all(key in r for r in rows), key
    assert not any("snd" in r or "oracle_test_macro_f1" in r for r in rows)  # class-probability criteria do not apply
    a = mmd.adaptation
    assert a.chosen.criterion == min(r["dev_risk"] for r in rows) and a.oracle.test_mae == min(r["oracle_test_mae"] for r in rows)
    assert mmd.val_metrics["mae"] == a.chosen.val_metrics["mae"] and "macro_f1" not in mmd.val_metrics  # no classes
    head = load_head(mmd)  # the packaged head predicts in the target's units
    x, y = data["test"]
    mae = float(np.mean(np.abs(np.asarray(predict_values(head, x)) - y)))
    assert mae == pytest.approx(a.chosen.oracle_test_mae, rel=1e-4)
    assert _domain_probe_accuracy(mmd, data) < 0.7 < 0.95 < _domain_probe_accuracy(source_only, data)  # aligned, from plainly apart
    assert mae < 0.5 * float(np.std(y)), (mae, float(np.std(y)))  # it learned the target, not the mean


@pytest.mark.parametrize("option, message", [({"method": "cdan"}, "strategy.method: cdan conditions the domain discriminator"),
                                             ({"method": "mcc"}, "strategy.method: mcc minimises the confusion between class"),
                                             ({"selection": "snd"}, "strategy.selection: snd reads class probabilities")])
def test_regression_refuses_the_options_made_of_class_probabilities(tmp_path, option, message):
    from tlops.errors import ConfigError
    from tlops.task_types import check_config_fits

    cfg = RunConfig.model_validate({"data": {"path": str(tmp_path)}, "backbone": {"name": "toy"}, "registry": {"model_name": "toy", "metric": "mae"},
                                    "strategy": {**TOY, **option}})
    ds = type("DS", (), {"task": "regression", "root": tmp_path})()
    with pytest.raises(ConfigError, match=message) as e:
        check_config_fits(cfg, ds)
    assert "dataset.yaml says task: regression" in str(e.value)


def test_config_errors_name_the_bad_value(tmp_path):
    base = {"data": {"path": "d"}, "backbone": {"name": "toy"}, "registry": {"model_name": "m"}}
    with pytest.raises(ConfigError, match="strategy.method: Input should be 'dann', 'cdan', 'mmd', 'coral', 'mcc', 'adabn' or 'source_only'"):
        config_from_dict({**base, "strategy": {"name": "domain_adapt", "method": "dan"}})
    with pytest.raises(ConfigError, match="only apply to mode: finetune"):
        config_from_dict({**base, "strategy": {"name": "domain_adapt", "lp_ft": True}})
    with pytest.raises(ConfigError, match="a non-empty list"):
        config_from_dict({**base, "strategy": {"name": "domain_adapt", "trade_off": []}})
    with pytest.raises(ConfigError, match="features_candidates and features_epochs only apply to mode: finetune"):
        config_from_dict({**base, "strategy": {"name": "domain_adapt", "features_candidates": ["adabn"]}})
    with pytest.raises(ConfigError, match="strategy.features_candidates"):
        config_from_dict({**base, "strategy": {"name": "domain_adapt", "mode": "finetune", "features_candidates": ["adabm"]}})
    ft = {"name": "domain_adapt", "mode": "finetune", "method": "dann"}
    assert config_from_dict({**base, "strategy": ft}).strategy.feature_methods() == ["source_only", "adabn"]  # the default
    assert config_from_dict({**base, "strategy": {**ft, "features_candidates": False}}).strategy.feature_methods() == []
    assert config_from_dict({**base, "strategy": {**ft, "baseline": False}}).strategy.feature_methods() == ["adabn"]
    assert config_from_dict({**base, "strategy": {"name": "domain_adapt"}}).strategy.feature_methods() == []  # features mode
    fs = config_from_dict({**base, "strategy": {**ft, "l2sp": 0.1, "epochs": 5, "features_epochs": 10}}).strategy.features_strategy()
    assert (fs.mode, fs.l2sp, fs.epochs) == ("features", 0.0, 10)
    assert config_from_dict({**base, "strategy": {**ft, "epochs": 5}}).strategy.features_strategy().epochs == 20  # features mode's default


def _validate(cfg: dict):
    from tlops.pipeline import validate_step

    return validate_step(RunConfig.model_validate(cfg))


@pytest.mark.parametrize("case, rule, where", [
    ("missing", "unlabeled.csv present", "fix: the strategy trains on unlabelled target-domain inputs"),
    ("empty", "at least one unlabelled row", "add target-domain inputs"),
    ("label", "no label column", "drop the 'label' column"),
    ("paths", "texts, not media file paths", "lines 2, 3"),
    ("column", "text inputs in a 'text' column", "needs a 'text' column"),
    ("overlap", "no text shared with test (leakage)", "validation.allow_unlabeled_test_overlap"),
])
def test_bad_target_splits_fail_validation_with_the_file_the_rows_and_the_fix(tmp_path, tiny_bert, case, rule, where):
    from tlops.errors import ValidationFailed

    data = tmp_path / "data"
    if case == "missing":
        make_text_dataset(data)
    elif case == "empty":
        make_da_text_dataset(data, unlabeled=[])
    elif case == "label":
        make_da_text_dataset(data, header=("text", "label"))
    elif case == "paths":
        make_da_text_dataset(data, unlabeled=["img/0001.png", "clips/a.wav", "a real sentence about a dog"])
    elif case == "column":
        make_da_text_dataset(data, unlabeled=["img/0001.png"], header=("path",))
    else:
        make_da_text_dataset(data)
        test_text = (data / "test.csv").read_text().splitlines()[1].split(",")[0]
        make_da_text_dataset(data, unlabeled=["a new sentence about a horse", test_text])
    cfg = tiny_config(tmp_path, data, tiny_bert, strategy={"name": "domain_adapt"})
    with pytest.raises(ValidationFailed) as e:
        _validate(cfg)
    message = str(e.value)
    assert f"rule '{rule}' failed" in message and where.lower() in message.lower(), message
    assert "unlabeled.csv" in message, message
    if case == "overlap":
        assert "line 3" in message  # the overlapping row, by CSV line
        cfg["validation"]["allow_unlabeled_test_overlap"] = True
        assert _validate(cfg).success
    if case == "missing":  # a strategy that does not need the target split is not bothered by its absence
        assert _validate(tiny_config(tmp_path, data, tiny_bert)).success


def _finetune_run(tmp_path, tiny_bert, **strategy):
    from tlops.pipeline import run_core

    data = make_da_text_dataset(tmp_path / "data")
    cfg = RunConfig.model_validate(tiny_config(tmp_path, data, tiny_bert, strategy={
        "name": "domain_adapt", "mode": "finetune", "method": "cdan", "epochs": 1, "batch_size": 8, "head_lr": 1e-2,
        "backbone_lr": 1e-3, "warmup_ratio": 0.0, "l2sp": 0.01, "features_epochs": 1, **strategy}))
    return run_core(cfg, tmp_path / "work")


def test_finetune_mode_adapts_the_backbone_and_packages_it(tmp_path, tiny_bert, monkeypatch):
    from tlops.package import Predictor
    from tlops.selection_record import SELECTION_FILE, SelectionRecord

    seen = _record_target_augmentation(monkeypatch)  # finetune mode augments the target batches as the loop does the source ones
    out = _finetune_run(tmp_path, tiny_bert, features_candidates=False)  # the pool of finetune candidates only
    assert set(out.features.splits) == {"train", "val", "test", "unlabeled"}
    x, y = out.features.arrays("unlabeled")
    assert x.shape[0] == 72 and (y == -1).all()
    rows = out.train.history
    assert len(rows) == 1 and {"dev_risk", "snd", "oracle_test_macro_f1", "train_loss_l2sp"} <= set(rows[0])  # both candidates, 1 epoch
    assert out.train.kind == "package" and out.train.adaptation.mode == "finetune"
    assert seen == [True, True]  # both candidates' target batches
    # source_only is a candidate in finetune mode too, the agreement votes, and the record travels in the package
    record = SelectionRecord.load(Path(out.package) / SELECTION_FILE)
    names = [c.name for c in record.candidates]
    assert names == ["source_only", "cdan@1"] and record.chosen in names, record
    assert {c.mode for c in record.candidates} == {"finetune"}
    assert {"domain_acc", "votes"} <= set(record.candidates[1].scores) and record.candidates[1].excluded is None, record
    assert out.train.adaptation.chosen == out.train.adaptation.candidates[names.index(record.chosen)]
    assert len(Predictor(out.package).predict(["a small dog that barks at the moon"])) == 1


def test_a_finetune_run_has_the_features_mode_candidates_in_its_pool(tmp_path, tiny_bert, monkeypatch):
    """Issue 30: a finetune run also trains features-mode source_only and adabn on the cached features (the default),
    every candidate scored by the same criteria on the same rows, each shown with its mode."""
    from tlops.selection_record import SELECTION_FILE, SelectionRecord

    seen = _record_target_augmentation(monkeypatch)
    out = _finetune_run(tmp_path, tiny_bert)
    record = SelectionRecord.load(Path(out.package if out.train.kind == "package" else Path(out.train.head_path).parent) / SELECTION_FILE)
    names = [c.name for c in record.candidates]
    assert names == ["source_only", "cdan@1", "features:source_only", "features:adabn"], names
    assert [c.mode for c in record.candidates] == ["finetune", "finetune", "features", "features"]
    assert seen == [True, True, False, False]  # cached features are never augmented
    # every criterion of the agreement, per candidate: comparable across modes
    assert [c.name for c in record.candidates if not {"dev_risk", "im", "snd", "val_macro_f1"} <= set(c.scores)] == []
    # of the two no-adaptation models the agreement made one the baseline; the other is out of the choice, saying why
    bases = [c for c in record.candidates if c.name in ("source_only", "features:source_only")]
    assert sum(c.excluded is not None and c.excluded.startswith("no adaptation, not the baseline") for c in bases) == 1, bases
    assert record.why.startswith("baseline ") and set(record.oracle) == set(names)
    a = out.train.adaptation
    assert [(c.name, c.mode) for c in a.candidates] == list(zip(names, ["finetune", "finetune", "features", "features"]))
    assert a.chosen.name == record.chosen and out.train.kind == ("head" if record.chosen.startswith("features:") else "package")
    assert "mode" in record.markdown().splitlines()[2] and "| features |" in record.markdown()


def test_a_features_mode_candidate_chosen_in_a_finetune_run_packages_as_features_mode_does(tmp_path, tiny_bert):
    """Source val with a 100% tolerance is the only criterion, so features:source_only becomes the baseline and nothing
    beats it: the registered model is a head on the pretrained (not fine-tuned) backbone, and its package predicts the
    target test split as the run scored it."""
    from sklearn.metrics import f1_score

    from tlops.package import Predictor
    from tlops.selection_record import SELECTION_FILE, SelectionRecord

    out = _finetune_run(tmp_path, tiny_bert, method="source_only", features_candidates=["source_only"], agreement=["source_val"],
                        source_val_tolerance=1.0, l2sp=0.0)
    assert out.train.kind == "head" and out.train.adaptation.chosen.mode == "features"
    record = SelectionRecord.load(Path(out.package) / SELECTION_FILE)
    assert [c.name for c in record.candidates] == ["source_only", "features:source_only"] and record.chosen == "features:source_only"
    assert record.candidate("source_only").excluded.startswith("no adaptation, not the baseline (features:source_only is): 1 of 1")
    import csv

    with open(tmp_path / "data" / "test.csv", newline="") as f:
        test = list(csv.DictReader(f))
    texts, labels = [r["text"] for r in test], [r["label"] for r in test]
    predicted = Predictor(out.package).predict(texts)
    assert f1_score(labels, predicted, average="macro") == pytest.approx(record.oracle["features:source_only"], abs=1e-6)
