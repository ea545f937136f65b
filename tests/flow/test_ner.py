"""Token classification (named-entity recognition) end to end through `tlops run` (in-process CLI) on a tiny CoNLL
dataset with the tiny BERT: a linear probe on word vectors is registered, gated on entity F1; its pyfunc takes raw
strings and returns entity spans with character offsets; `tlops predict` prints them (the user's text escaped); a
malformed CoNLL file fails validation with its file and line."""

from __future__ import annotations

import json
import os

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tests.helpers import make_ner_dataset, tiny_config

WIDE = {**os.environ, "COLUMNS": "250"}  # table cells on one line, so the text can be found whole


def _config(tmp_path, data, tiny_bert) -> tuple[str, str]:
    cfg = tiny_config(tmp_path, data, tiny_bert, registry__metric="f1", registry__model_name="tiny-ner")
    (tmp_path / "ner.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / "ner.yaml"), cfg["tracking"]["uri"]


def test_ner_run_registers_a_span_predicting_model_gated_on_f1(tmp_path, tiny_bert, prefect_api):
    data = make_ner_dataset(tmp_path / "data", repeat=(3, 1, 1))
    path, uri = _config(tmp_path, data, tiny_bert)
    # the session harness's API named in the runs' environment: it is a Prefect setting only, and a run without
    # PREFECT_API_URL in its environment starts a local Prefect server of its own (the system tier tests that path)
    on_harness = {**WIDE, "PREFECT_API_URL": prefect_api}
    out = cli("run", path, "--json", env=on_harness)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["promotion"]["metric"] == "f1", result["promotion"]
    assert {"f1", "precision", "recall", "token_accuracy"} <= set(result["test_metrics"]), result["test_metrics"]
    assert result["test_metrics"]["f1"] > 0.5, result["test_metrics"]  # the six sentences are memorised
    assert next(iter(result["val_metrics"])) == "f1"
    again = cli("run", path, "--json", "--set", "strategy.C=0.5", env=on_harness)  # the gate scores the champion on entity F1
    assert again.returncode == 0, again.stderr[-3000:]
    gate = json.loads(again.stdout)["promotion"]
    assert gate["metric"] == "f1" and gate["champion_version"] == "1" and gate["champion_metric"] > 0.5, gate

    client = MlflowClient(uri)
    version = max(client.search_model_versions("name='tiny-ner'"), key=lambda v: int(v.version))
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/tiny-ner/{version.version}")
    texts = ["Ada Lovelace lived in Rome.", "  nothing [/b] here", "Grace Hopper met Alan Turing in London"]
    spans = model.predict(texts)
    assert len(spans) == 3 and all(isinstance(s, list) for s in spans)
    for text, ents in zip(texts, spans):
        for e in ents:
            assert text[e["start"]:e["end"]] == e["text"] and e["type"] in ("PER", "LOC") and 0 < e["score"] <= 1
    assert ("Ada Lovelace", "PER") in {(e["text"], e["type"]) for e in spans[0]}, spans[0]
    json.dumps(spans)

    predicted = cli("predict", f"models:/tiny-ner/{version.version}", "Ada Lovelace [red] lived in Rome.", "--tracking-uri", uri,
                    env=WIDE)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert "Ada Lovelace [red] lived in Rome." in predicted.stdout and "Ada Lovelace (PER 0-12" in predicted.stdout, predicted.stdout
    as_json = cli("predict", f"models:/tiny-ner/{version.version}", "Grace Hopper visited Rome", "--json", "--tracking-uri", uri,
                  env=WIDE)
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    (row,) = json.loads(as_json.stdout)["predictions"]
    assert {(e["text"], e["type"], e["start"]) for e in row["entities"]} >= {("Grace Hopper", "PER", 0)}, row
    # tlops evaluate on the CoNLL folder: the second run's test metrics again (its model on the same test sentences)
    ev = cli("evaluate", f"models:/tiny-ner/{version.version}", "--data", str(data), "--json", "--tracking-uri", uri, env=WIDE)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout)["metrics"] == pytest.approx(json.loads(again.stdout)["test_metrics"]), ev.stdout


def test_a_malformed_conll_file_fails_validation_with_its_file_and_line(tmp_path, tiny_bert):
    data = make_ner_dataset(tmp_path / "data", repeat=(3, 1, 1))
    lines = (data / "test.conll").read_text().splitlines()
    lines[3] = "lived"  # a row without its tag
    lines[7] = "Paris I-LOC"  # follows a blank line: an I- tag that continues nothing
    (data / "test.conll").write_text("\n".join(lines) + "\n")
    path, _ = _config(tmp_path, data, tiny_bert)
    out = cli("validate", path, env=WIDE)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "test.conll" in text and "line 4" in text, text[-3000:]
