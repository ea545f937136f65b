"""`tlops run` on the real domain-shift demo data (configs/*_domain_adapt.yaml, features mode) with the real
pretrained backbones: a model registered, the adaptation's criterion, oracle and discriminator logged per epoch
(slow set: real weights, ~1 minute per modality on 2 CPU cores)."""

from __future__ import annotations


import pytest
import yaml

from tests.helpers import REPO
from tests.servers import demo_data, run_demo

EPOCHS = 6


@pytest.mark.parametrize("modality", ["image", "audio", "text"])
def test_tlops_run_adapts_each_demo_shift_and_registers_the_chosen_model(modality, tmp_path, prefect_api):
    from mlflow.tracking import MlflowClient

    config = REPO / "configs" / f"{modality}_domain_adapt.yaml"
    data = demo_data(config, needs="unlabeled.csv")
    result, uri = run_demo(config, tmp_path, prefect_api, strategy__epochs=EPOCHS, strategy__method="dann")
    name = yaml.safe_load(config.read_text())["registry"]["model_name"]
    assert result["model_name"] == name and result["version"] == "1" and "champion" in result["aliases"], result

    client = MlflowClient(uri, registry_uri=uri)
    history = lambda key: [m.value for m in client.get_metric_history(result["run_id"], key)]
    sweep = [f"trade_off_{v:g}/" for v in yaml.safe_load(config.read_text())["strategy"]["trade_off"]]
    for prefix in sweep:  # every epoch of every trade_off value: criterion, oracle and the discriminator's accuracy
        for metric in ("dev_risk", "snd", "oracle_test_macro_f1", "domain_acc"):
            assert len(history(f"train_{prefix}{metric}")) == EPOCHS, (prefix, metric)
        assert all(0.0 <= a <= 1.0 for a in history(f"train_{prefix}domain_acc"))
    metrics = client.get_run(result["run_id"]).data.metrics
    n_classes = len(yaml.safe_load((data / "dataset.yaml").read_text())["labels"])
    # the registered model is the one the criterion chose: its target-test score is that epoch's logged oracle
    assert result["test_metrics"]["macro_f1"] == pytest.approx(metrics["da_chosen_oracle_test_macro_f1"], abs=1e-6), metrics
    assert metrics["da_oracle_best_test_macro_f1"] >= result["test_metrics"]["macro_f1"] - 1e-9
    assert result["test_metrics"]["macro_f1"] > 1.0 / n_classes, "pretrained features adapted to the target should beat chance"
