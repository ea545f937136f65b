"""`tlops run` on the real few-shot demo data (configs/*_fewshot.yaml) with the real pretrained backbones: a
few-shot model registered, episodic test metrics on the novel classes that are well above chance and grow
with the shots (slow set: real weights; the feature pass dominates, meta-training on the cached features is
seconds)."""

from __future__ import annotations


import pandas as pd
import pytest
import yaml

from tests.helpers import REPO
from tests.servers import demo_data, run_demo

CHANCE_5WAY = 0.2


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_tlops_run_meta_trains_on_each_demo_and_registers_a_few_shot_model(modality, tmp_path, prefect_api):
    from mlflow.tracking import MlflowClient

    config = REPO / "configs" / f"{modality}_fewshot.yaml"
    cfg = yaml.safe_load(config.read_text())
    data = demo_data(config)
    train, test = (set(pd.read_csv(data / f"{s}.csv", dtype=str, keep_default_na=False)["label"]) for s in ("train", "test"))
    assert not train & test and len(test) >= 5

    result, uri = run_demo(config, tmp_path, prefect_api)
    assert result["model_name"] == cfg["registry"]["model_name"] and result["version"] == "1", result
    assert "champion" in result["aliases"] and result["strategy"] == cfg["strategy"]["name"], result

    m = result["test_metrics"]
    # 600 episodes per setting on the novel test classes: the half-widths are those of a real sample
    assert 0 < m["ci95_5w1s"] < 0.05 and 0 < m["ci95_5w5s"] < 0.05, m
    assert m["accuracy_5w1s"] > CHANCE_5WAY + 0.2, m
    assert m["accuracy_5w5s"] > m["accuracy_5w1s"] + 2 * m["ci95_5w1s"], m
    assert m["accuracy_5w10s"] >= m["accuracy_5w5s"] - m["ci95_5w5s"], m
    assert m["protonet0_accuracy_5w5s"] > CHANCE_5WAY, m  # the frozen-feature baseline was scored on the same episodes
    # the registered model classifies among all test classes (adapted to the carved support set), well above chance
    assert m["accuracy"] > 2.0 / len(test), m

    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(result["run_id"]).data.metrics
    assert run["test_accuracy_5w5s"] == pytest.approx(m["accuracy_5w5s"])
    assert "plots/accuracy_vs_shots.png" in {a.path for a in client.list_artifacts(result["run_id"], "plots")}
    version = client.get_model_version(cfg["registry"]["model_name"], "1")
    assert version.run_id == result["run_id"]
