"""Regression targets through the linear probe (issue 15, part 1): dataset contract and GX target rules,
config/task mismatch, metrics on known values, the head's target scaler round trip, the gate's direction,
a package (and the pyfunc class) predicting floats; one slow `tlops run` on the real text demo."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers import TEXTS, make_regression_dataset, tiny_config
from tlops.config import ValidationConfig, config_from_dict
from tlops.data import load_dataset
from tlops.errors import ConfigError, DataError
from tlops.validation import validate_dataset


def failed(root: Path) -> dict[str, list]:
    report = validate_dataset(load_dataset(root), ValidationConfig())
    return {c.rule: c for c in report.failed()}


def test_targets_must_be_finite_numbers_within_bounds_and_vary(tmp_path):
    rows = [(t, str(i)) for i, t in enumerate(TEXTS[:20])] + [(TEXTS[20], "tall"), (TEXTS[21], "inf"), (TEXTS[22], "500")]
    bad = failed(make_regression_dataset(tmp_path / "a", rows=rows, meta="bounds: [0, 100]\n"))
    assert set(bad) == {"numeric target", "finite target", "target within bounds [0, 100]"}, bad
    assert bad["numeric target"].rows == [22] and bad["numeric target"].values == ["tall"], bad["numeric target"]
    assert bad["finite target"].rows == [23] and bad["finite target"].values == ["inf"]
    assert bad["target within bounds [0, 100]"].values == ["500"] and "bounds" in bad["target within bounds [0, 100]"].fix
    constant = failed(make_regression_dataset(tmp_path / "b", target=lambda t: 3))
    assert set(constant) == {"target not constant"}, constant
    assert failed(make_regression_dataset(tmp_path / "c")) == {}


def test_class_names_in_a_regression_dataset_are_refused_and_numeric_classes_are_fine(tmp_path):
    words = failed(make_regression_dataset(tmp_path / "a", target=lambda t: t.split()[1]))
    assert "numeric target" in words and "remove `task: regression`" in words["numeric target"].fix
    root = make_regression_dataset(tmp_path / "b", target=lambda t: len(t) % 3)
    (root / "dataset.yaml").write_text("modality: text\n")  # classification, with classes named 0, 1, 2
    report = validate_dataset(load_dataset(root), ValidationConfig(min_per_class=3))
    assert report.success, report.failed()


def test_named_target_column_and_dataset_yaml_errors_name_the_line(tmp_path):
    ds = load_dataset(make_regression_dataset(tmp_path / "a", meta="target: score\n", column="score"))
    assert ds.labels == [] and ds.targets("test")[0] == len(TEXTS[150])
    root = make_regression_dataset(tmp_path / "b")
    for meta, message in [("modality: text\ntask: regresion\n", r"dataset.yaml line 2: task 'regresion' is not one of"),
                          ("modality: text\nbounds: [0, 1]\n", r"line 2: `bounds:` only applies to a regression dataset"),
                          ("modality: text\ntask: regression\nbounds: [5, 1]\n", r"line 3: bounds \[5, 1\] must be two finite numbers")]:
        (root / "dataset.yaml").write_text(meta)
        with pytest.raises(DataError, match=message):
            load_dataset(root)


def test_a_classification_config_on_a_regression_dataset_is_refused_before_training(tmp_path, tiny_bert, text_dataset):
    from tlops.pipeline import validate_step

    reg = make_regression_dataset(tmp_path / "reg")
    with pytest.raises(ConfigError, match=r"registry.metric: macro_f1 is not a regression metric .*one of mae, rmse, r2, spearman"):
        validate_step(config_from_dict(tiny_config(tmp_path, reg, tiny_bert, strategy={"name": "linear_probe", "head": "ridge"})))
    with pytest.raises(ConfigError, match=r"strategy.head: logreg is not a regression head"):
        validate_step(config_from_dict(tiny_config(tmp_path, reg, tiny_bert, registry__metric="mae")))
    with pytest.raises(ConfigError, match=r"strategy protonet does not train regression models"):  # finetune, domain_adapt do
        validate_step(config_from_dict(tiny_config(tmp_path, reg, tiny_bert, strategy={"name": "protonet"}, registry__metric="mae")))
    with pytest.raises(ConfigError, match=r"strategy.method: cdan conditions .*dataset.yaml says task: regression"):
        validate_step(config_from_dict(tiny_config(tmp_path, reg, tiny_bert, strategy={"name": "domain_adapt", "method": "cdan"},
                                                   registry__metric="mae")))
    with pytest.raises(ConfigError, match=r"registry.metric: mae is not a classification metric"):  # the reverse
        validate_step(config_from_dict(tiny_config(tmp_path, text_dataset, tiny_bert, registry__metric="mae")))


def test_regression_metrics_on_known_values():
    from tlops.evaluate import regression_metrics

    m = regression_metrics(np.array([1.0, 2, 3, 4]), np.array([1.0, 2, 3, 5]))
    assert m == pytest.approx({"mae": 0.25, "rmse": 0.5, "r2": 0.8, "spearman": 1.0})
    mean = regression_metrics(np.array([1.0, 2, 3, 4]), np.full(4, 2.5))  # predicting the mean: R² 0, no ranking
    assert mean["r2"] == pytest.approx(0.0) and mean["spearman"] == 0.0 and mean["mae"] == pytest.approx(1.0)


def test_gate_compares_in_the_metric_direction():
    from tlops.promotion import decide

    assert decide("mae", 0.7, 0.8, 0.0).promote and not decide("mae", 0.9, 0.8, 0.0).promote
    assert not decide("mae", 0.78, 0.8, 0.05).promote  # better, but not by the margin
    assert decide("r2", 0.9, 0.8, 0.0).promote and not decide("rmse", 1.2, 1.1, 0.0).promote
    assert "lower is better" in decide("rmse", 1.2, 1.1, 0.0).reason


@pytest.mark.parametrize("head", ["ridge", "mlp"])
def test_head_maps_standardised_outputs_back_to_target_units(head):
    from tlops.modules.heads import ProbeHead, predict_values
    from tlops.strategies.linear_probe import LinearProbeConfig
    from tlops.task_types import train_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    y = 1000.0 + 50.0 * x[:, 0] - 20.0 * x[:, 1]  # far from 0 mean / 1 std: only a correct round trip predicts it
    r = train_probe(x[:300], y[:300], x[300:], y[300:], 0, LinearProbeConfig(head=head, epochs=40, lr=1e-2), task="regression")
    pred = np.asarray(predict_values(r.head, x[300:]))
    assert np.abs(pred - y[300:]).mean() < (2.0 if head == "ridge" else 10.0), np.abs(pred - y[300:]).mean()
    assert r.val_metrics["r2"] > 0.95 and "macro_f1" not in r.val_metrics
    again = ProbeHead.from_spec(r.head.spec)  # what a package rebuilds: spec says regression, buffers hold the scaler
    again.load_state_dict(r.head.state_dict())
    assert predict_values(again, x[300:]) == pytest.approx(pred.tolist())


def test_probe_run_packages_a_model_whose_pyfunc_returns_floats(tmp_path, tiny_bert):
    from tasks.pyfunc_model import TlopsModel
    from tlops.package import Predictor
    from tlops.pipeline import run_core

    data = make_regression_dataset(tmp_path / "data", meta="target: chars\n", column="chars")
    cfg = config_from_dict(tiny_config(tmp_path, data, tiny_bert, strategy={"name": "linear_probe", "head": "ridge"}, registry__metric="mae"))
    r = run_core(cfg, tmp_path / "run")
    assert set(r.evaluation.metrics) == {"mae", "rmse", "r2", "spearman"}
    assert {Path(p).name for p in r.evaluation.plots} >= {"predicted_vs_true.png", "residuals.png"}
    assert json.loads(Path(r.evaluation.report_path).read_text())["n"] == 42
    model = TlopsModel()
    model.load_context(SimpleNamespace(artifacts={"package": r.package}))  # what MLflow hands the pyfunc at load time
    out = model.predict(None, TEXTS[150:153])
    assert len(out) == 3 and all(isinstance(v, float) for v in out), out
    assert out == pytest.approx(Predictor(r.package).predict(TEXTS[150:153]))
    with pytest.raises(DataError, match="no class probabilities"):
        model.predict(None, TEXTS[150:153], params={"proba": True})
