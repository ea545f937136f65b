"""Extractive question answering end to end: the session zoo's tiny-qa (`tlops run`'s flow on a tiny SQuAD dataset with
the tiny random-weights BERT, built once per `make test` and shared with the fresh-process test): a start/end probe is registered and promoted by the gate on SQuAD F1; the registered
pyfunc takes {question, context} rows (a list of records or a DataFrame) and answers with a span of each context and
its character offsets, and refuses an empty context by row; a SQuAD record whose answer is not at its answer_start fails
validation with its file, question id and the fix. (The gate re-scoring a champion package on the test questions is
checked in tests/unit/test_task_type_contract.py without a second run; the pyfunc in a fresh process in
tests/system/test_fresh_process.py.)"""

from __future__ import annotations

import json
import os

import mlflow
import pandas as pd
import pytest
import yaml

from tests.cli import cli
from tests.helpers import make_qa_dataset, tiny_config
from tlops.errors import DataError


def _env(prefect_api: str) -> dict:
    """Wide tables, and the session harness's API named in the command's environment: the harness sets it as a Prefect
    setting only, and a run without PREFECT_API_URL in its environment starts a local Prefect server of its own (~14 s
    on a loaded 2-core machine)."""
    return {**os.environ, "COLUMNS": "250", "PREFECT_API_URL": prefect_api}


def _config(tmp_path, data, tiny_bert) -> tuple[str, str]:
    cfg = tiny_config(tmp_path, data, tiny_bert, registry__metric="f1", registry__model_name="tiny-qa")
    (tmp_path / "qa.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / "qa.yaml"), cfg["tracking"]["uri"]


def test_qa_run_registers_a_span_answering_model_gated_on_f1(tmp_path, zoo, prefect_api):
    qa = zoo.qa  # the session zoo's tiny-qa: `tlops run`'s flow on the tiny SQuAD set (16 / 6 / 8 questions), built once
    data, uri = qa.data, qa.uri
    result = qa.results[-1].model_dump(mode="json")
    assert result["promotion"]["metric"] == "f1" and result["promotion"]["promoted"], result["promotion"]
    metrics = result["test_metrics"]
    assert {"f1", "exact_match"} <= set(metrics) and 0 <= metrics["exact_match"] <= metrics["f1"] <= 1, metrics
    assert list(result["val_metrics"]) == ["f1", "exact_match"], result["val_metrics"]
    assert result["baseline"] is None  # QA scores its own lexical baseline, not the classic one
    from tests.zoo import mlflow_uris_kept

    with mlflow_uris_kept():
        mlflow.set_tracking_uri(uri)
        model = mlflow.pyfunc.load_model("models:/tiny-qa/1")  # through the pyfunc: MLflow's signature, the row checks, Predictor
    rows = [{"question": "Who built the bridge?", "context": "Zora built the bridge in the year 1900. Then Ada [b]wrote[/b] the letter."},
            {"question": "Who wrote the letter?", "context": "Kurt wrote the letter."}]
    answers = model.predict(rows)
    assert len(answers) == 2, answers
    for row, a in zip(rows, answers):
        assert set(a) == {"answer", "start", "end", "score"}, a
        assert a["answer"] and row["context"][a["start"]:a["end"]] == a["answer"] and 0 < a["score"] <= 1, (row, a)
    assert model.predict(pd.DataFrame(rows)) == answers  # a DataFrame of the two columns is the same request
    json.dumps(answers)  # JSON-able, as a server returns it
    with pytest.raises(DataError, match="input row 2 context is empty"):
        model.predict([rows[0], {"question": "Who?", "context": "  "}])
    # tlops predict sends rows: a JSON object per input, or a CSV with question and context columns; the same answers
    env = _env(prefect_api)
    got = cli("predict", "models:/tiny-qa/1", json.dumps(rows[0]), json.dumps(rows[1]), "--tracking-uri", uri, "--json", env=env)
    assert got.returncode == 0, got.stderr[-2000:]
    assert [p["prediction"] for p in json.loads(got.stdout)["predictions"]] == answers
    pd.DataFrame([{**rows[1], "question": "Who [b]wrote[/b] it?"}]).to_csv(tmp_path / "ask.csv", index=False)
    table = cli("predict", "models:/tiny-qa/1", "--csv", str(tmp_path / "ask.csv"), "--tracking-uri", uri, env=env)
    assert table.returncode == 0, table.stderr[-2000:]
    assert "Who [b]wrote[/b] it?" in table.stdout and "answer" in table.stdout, table.stdout  # user text as written
    # tlops evaluate on the dataset folder (SQuAD JSON): the run's test metrics again, and the QA report with --out
    ev = cli("evaluate", "models:/tiny-qa/1", "--data", str(data), "--out", str(tmp_path / "ev"), "--json", "--tracking-uri", uri, env=env)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout)["metrics"] == pytest.approx(metrics), ev.stdout
    assert (tmp_path / "ev" / "qa_report.json").is_file() and (tmp_path / "ev" / "report.json").is_file()
    plain = cli("predict", "models:/tiny-qa/1", "Who built the bridge?", "--tracking-uri", uri, env=env)
    assert plain.returncode != 0 and plain.stderr.count("error:") == 1, plain.stderr[-2000:]
    assert 'is not a JSON object with question, context; this model takes rows such as \'{"question": "...", "context": "..."}\'' \
        in plain.stderr, plain.stderr


def test_a_squad_answer_off_its_offset_fails_validation_with_file_and_question_id(tmp_path, tiny_bert, prefect_api):
    data = make_qa_dataset(tmp_path / "data")
    doc = json.loads((data / "test.json").read_text())
    doc["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3  # the name starts at 0
    (data / "test.json").write_text(json.dumps(doc))
    path, _ = _config(tmp_path, data, tiny_bert)
    out = cli("validate", path, env=_env(prefect_api))
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout + out.stderr
    qid = doc["data"][1]["paragraphs"][0]["qas"][0]["id"]
    assert "test.json" in text and qid in text and "set answer_start to 0" in text, text[-3000:]
