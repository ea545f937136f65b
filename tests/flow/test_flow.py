"""The training flow end to end on a real (temporary) Prefect API and a real MLflow SQLite store.

The backbone is the tiny random-weight fixture (code path only); tests/system/test_real_models.py runs MiniLM.
"""

from __future__ import annotations

import html
import json
import os

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tests.helpers import flow_run, tiny_config
from tlops.errors import BackboneError, ValidationFailed




def _client(cfg) -> MlflowClient:
    return MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])


def _aliases(client, name) -> dict:
    try:
        return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    except MlflowException:
        return {}


def test_first_run_registers_champion_then_gate_decides(tmp_path, text_dataset, tiny_bert):
    weak = tiny_config(tmp_path, text_dataset, tiny_bert, strategy__C=1e-6)  # near-constant predictions
    r1 = flow_run(weak)
    client = _client(weak)
    assert r1.aliases == ["challenger", "champion"] and r1.version == "1"
    assert r1.cache.misses == 72 and r1.cache.hits == 0

    run = client.get_run(r1.run_id)
    assert run.info.status == "FINISHED"
    # MLflow 3's UI opens a model-training experiment on its runs, not in the GenAI view (issue 27 item 9)
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    tags, params = run.data.tags, run.data.params
    assert tags["tlops.validation"] == "passed" and len(tags["git.commit"]) in (4, 40)
    assert tags["data.dataset_md5"] and params["backbone.name"] == f"hf:{tiny_bert}" and tags["tlops.seed"] == "0"
    assert "backbone.identity.weights_sha256.model.safetensors" in params
    assert {"test_accuracy", "test_macro_f1", "cache_hits", "cache_misses"} <= set(run.data.metrics)
    # the trivial baseline on the same splits (issue 30): TF-IDF words name these classes, the near-constant head loses to it
    assert r1.baseline["name"] == "tfidf_logreg" and r1.baseline["wins"] is True, r1.baseline
    assert run.data.metrics["baseline_test_macro_f1"] == r1.baseline["metrics"]["macro_f1"] > r1.test_metrics["macro_f1"]
    assert tags["tlops.baseline"] == "tfidf_logreg" and tags["tlops.baseline.wins"] == "true"
    arts = {a.path for a in client.list_artifacts(r1.run_id)} | {a.path for d in ("plots", "evaluation") for a in client.list_artifacts(r1.run_id, d)}
    assert {"config.yaml", "provenance.json", "validation", "plots/confusion_matrix.png", "evaluation/classic_baseline.json"} <= arts
    prov = json.loads(open(mlflow.artifacts.download_artifacts(run_id=r1.run_id, artifact_path="provenance.json",
                                                               tracking_uri=weak["tracking"]["uri"])).read())
    assert prov["packages"]["torch"] and prov["data"]["dataset_md5"] == tags["data.dataset_md5"]

    # Same data, better head: beats the weak champion -> promoted; warm cache, backbone never called.
    good = tiny_config(tmp_path, text_dataset, tiny_bert)
    r2 = flow_run(good)
    assert r2.cache.model_dump() == {"hits": 72, "misses": 0, "corrupt_shards": 0, "backbone_calls": 0}
    assert r2.test_metrics["macro_f1"] > r1.test_metrics["macro_f1"]
    assert r2.promotion.promoted and r2.promotion.champion_version == "1"
    assert "cached test features" in r2.promotion.champion_scored_via
    assert _aliases(client, "tiny-text") == {"champion": "2", "challenger": "2"}

    # A margin the challenger cannot clear: registered as challenger, champion untouched.
    strict = tiny_config(tmp_path, text_dataset, tiny_bert, registry__margin=0.5)
    r3 = flow_run(strict)
    assert not r3.promotion.promoted and "champion unchanged" in r3.promotion.reason
    assert _aliases(client, "tiny-text") == {"champion": "2", "challenger": "3"}
    assert client.get_run(r3.run_id).data.tags["tlops.promotion"] == r3.promotion.reason
    card = open(mlflow.artifacts.download_artifacts(run_id=r3.run_id, artifact_path="model_card.html",  # rewritten after the gate
                                                    tracking_uri=strict["tracking"]["uri"])).read()
    assert html.escape(r3.promotion.reason) in card and "models:/tiny-text/3" in card and "pending" not in card
    assert "Classic baseline: tfidf_logreg" in card and ("beats this model" in card) is r3.baseline["wins"]


def test_validation_failure_registers_nothing_and_fails_the_run(tmp_path, text_dataset, tiny_bert):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert)
    first = flow_run(cfg)
    client = _client(cfg)
    before = _aliases(client, "tiny-text")
    df = pd.read_csv(text_dataset / "test.csv")
    df.loc[0, "label"] = "mineral"
    df.to_csv(text_dataset / "test.csv", index=False)
    with pytest.raises(ValidationFailed, match="test.csv line 2"):
        flow_run(cfg)
    assert _aliases(client, "tiny-text") == before
    assert [str(v.version) for v in client.search_model_versions("name='tiny-text'")] == [first.version]
    (failed,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id], "tags.`tlops.validation` = 'failed'")
    assert failed.info.status == "FAILED"
    report = json.loads(open(mlflow.artifacts.download_artifacts(run_id=failed.info.run_id, artifact_path="validation/report.json",
                                                                 tracking_uri=cfg["tracking"]["uri"])).read())
    assert not report["success"] and any(c["rule"] == "labels from the known set" and not c["success"] for c in report["checks"])


def test_unknown_backbone_fails_cleanly(tmp_path, text_dataset):
    cfg = tiny_config(tmp_path, text_dataset, tmp_path / "nope")
    with pytest.raises(BackboneError, match="folder not found"):
        flow_run(cfg)
    with pytest.raises(MlflowException):
        _client(cfg).get_registered_model("tiny-text")


def test_cli_json_and_bad_config(tmp_path, text_dataset, tiny_bert, prefect_api):
    import yaml

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_config(tmp_path, text_dataset, tiny_bert)))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    ok = cli("run", str(cfg_file), "--set", "strategy.head=mlp", "--set", "strategy.epochs=3", "--json", env=env)
    assert ok.returncode == 0, ok.stderr[-3000:]
    result = json.loads(ok.stdout.strip().splitlines()[-1])
    assert result["model_name"] == "tiny-text" and result["version"] == "1" and "champion" in result["aliases"]
    assert set(result["test_metrics"]) == {"accuracy", "macro_f1"} and result["cache"]["misses"] == 72
    bad = cli("run", str(cfg_file), "--set", "strategy.hed=mlp", env=env)
    assert bad.returncode == 2 and "strategy.hed" in bad.stderr and "unknown key" in bad.stderr


def test_the_registered_model_gives_what_its_run_measured(zoo):
    """The served model gives what the run measured: the pyfunc's test predictions match the run's metric (the zoo's
    MLP head, v3; tests/system/test_fresh_process.py loads it in a fresh process)."""
    from tlops.evaluate import classification_metrics

    reg = zoo.text
    mlflow.set_tracking_uri(reg.uri)
    mlflow.set_registry_uri(reg.uri)
    test = pd.read_csv(reg.data / "test.csv")
    model = mlflow.pyfunc.load_model(reg.model_uri("3"))
    got = classification_metrics(test["label"].tolist(), model.predict(test["text"].tolist()), ["animal", "food", "vehicle"])
    assert got["macro_f1"] == pytest.approx(reg.results[2].test_metrics["macro_f1"], abs=1e-9)
