"""What the registered pyfunc takes (issue 25, part 1): strings only, none missing, empty or with a NUL byte, and behind
`mlflow models serve` a bounded number of rows per request; every refusal a 400 with one line and no stack trace, as
MLflow's own scoring code renders it. The pyfunc class on a tiny package (the random-weight BERT: a code path, not a
pretrained model); one real server request in tests/system/test_serving.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from tlops.errors import ConfigError, DataError

TEXTS = ["a small dog that barks at the moon", "a sweet cake baked by the river"]


@pytest.fixture(scope="module")
def package(tmp_path_factory, tiny_bert):
    from tlops.backbones import load_backbone
    from tlops.modules.heads import ProbeHead
    from tlops.package import save_package

    backbone = load_backbone(f"hf:{tiny_bert}", max_length=16)
    return save_package(tmp_path_factory.mktemp("pkg") / "pkg", backbone, ProbeHead(backbone.num_features, 2), ["animal", "food"])


@pytest.fixture
def model(package):
    from tasks.pyfunc_model import TlopsModel

    m = TlopsModel()
    m.load_context(SimpleNamespace(artifacts={"package": str(package)}))  # what MLflow hands the pyfunc at load time
    return m


@pytest.fixture
def serving(monkeypatch):
    """This process as MLflow's scoring server marks it."""
    from tasks.pyfunc_model import MAX_ROWS_ENV, SERVING_ENV

    monkeypatch.setenv(SERVING_ENV, "true")
    monkeypatch.delenv(MAX_ROWS_ENV, raising=False)
    return monkeypatch


# what MLflow's scoring server hands the pyfunc for each hostile body (after its JSON parsing and schema enforcement)
NOT_STRINGS = {
    "ints": (pd.DataFrame(np.array([1, 2], dtype=object)), r"input row 1 is 1 \(type int\), not a string; this text model takes texts"),
    "dicts": (pd.DataFrame([{"a": np.array(1)}]), r"input row 1 is array\(1\) \(type ndarray\), not a string"),
    "a list": ([["a", "b"]], r"input row 1 is \['a', 'b'\] \(type list\), not a string"),
    "a bool": ([True], r"input row 1 is True \(type bool\), not a string"),
    "a float": ([2.5], r"input row 1 is 2.5 \(type float\), not a string"),
}
BLANK_OR_MISSING = {
    "null": ([None], r"input row 1 is missing \(None\)"),
    "NaN": (pd.DataFrame({"text": ["ok", float("nan")]}), r"input row 2 is missing \(nan\)"),
    "empty": ([""], r"input row 1 is empty or only whitespace"),
    "whitespace": (["ok", " \t"], r"input row 2 is empty or only whitespace"),
    "NUL": (["a\x00b"], r"input row 1 holds a NUL byte"),
}


@pytest.mark.parametrize("case", [*NOT_STRINGS, *BLANK_OR_MISSING])
def test_inputs_that_are_not_texts_are_refused_with_one_line_naming_the_row(model, case):
    """In-process (`tlops predict`, `load_model(...).predict`): a DataError, one line, the row and the fix; a value that is
    not a string is no longer turned into one ("1", "{'a': 1}") and labelled."""
    from tasks.pyfunc_model import InvalidInput

    bad, message = {**NOT_STRINGS, **BLANK_OR_MISSING}[case]
    with pytest.raises(DataError, match=message) as e:
        model.predict(None, bad)
    assert "\n" not in str(e.value)
    if case in NOT_STRINGS:
        assert isinstance(e.value, InvalidInput) and isinstance(e.value, MlflowException)
        assert e.value.get_http_status_code() == 400 and "stack_trace" not in json.loads(e.value.serialize_as_json())


def test_good_inputs_in_every_shape_mlflow_hands_over_predict(model):
    want = model.predict(None, TEXTS)
    assert len(want) == 2 and set(want) <= {"animal", "food"}
    for same in (pd.DataFrame(np.array(TEXTS, dtype=object)), pd.DataFrame({"text": TEXTS, "id": [1, 2]}), pd.Series(TEXTS),
                 np.array(TEXTS)):
        assert list(model.predict(None, same)) == want
    assert model.predict(None, TEXTS[0]) == want[:1]
    from tasks.pyfunc_model import InvalidInput

    with pytest.raises(InvalidInput, match=r"input has 2 columns \('a', 'b'\); send one column"):
        model.predict(None, pd.DataFrame({"a": TEXTS, "b": TEXTS}))
    with pytest.raises(InvalidInput, match="input is a 2-dimensional array; send a flat list"):
        model.predict(None, np.array([TEXTS, TEXTS]))


def test_the_server_refuses_a_request_over_the_row_bound_at_once(model, package, serving):
    """Behind the server: more rows than TLOPS_SERVE_MAX_ROWS (default 10,000 for text, 1,000 for image and audio models)
    are refused before anything is embedded; in-process calls are not bounded."""
    from tasks.pyfunc_model import (
        DEFAULT_MAX_ROWS,
        MAX_ROWS_ENV,
        SERVING_ENV,
        InvalidInput,
        max_rows,
    )

    assert max_rows("text") == DEFAULT_MAX_ROWS["text"] == 10_000 and max_rows("image") == max_rows("audio") == 1_000
    with pytest.raises(InvalidInput, match=r"the request has 10001 rows, more than the 10000 this server takes per request "
                                           r"\(TLOPS_SERVE_MAX_ROWS\); send at most 10000 rows per request"):
        model.predict(None, pd.DataFrame({"text": ["x"] * 10_001}))
    serving.setenv(MAX_ROWS_ENV, "3")
    model.predictor.predict = lambda *a, **k: pytest.fail("embedded a request over the bound")
    with pytest.raises(InvalidInput, match="the request has 4 rows, more than the 3"):
        model.predict(None, TEXTS * 2)
    serving.delenv(SERVING_ENV)
    del model.predictor.predict
    assert len(model.predict(None, TEXTS * 2)) == 4  # in-process: not a server request
    for bad in ("0", "ten", "-5", "1e4"):
        serving.setenv(MAX_ROWS_ENV, bad)
        with pytest.raises(ConfigError, match=f"TLOPS_SERVE_MAX_ROWS='{bad}' is not a whole number of rows >= 1"):
            max_rows("text")
    with pytest.raises(ConfigError, match="TLOPS_SERVE_MAX_ROWS='1e4'"):  # a server with a bad setting does not start
        model.load_context(SimpleNamespace(artifacts={"package": str(package)}))


def test_behind_the_server_model_errors_are_400_or_500_with_one_line_and_no_traceback(model, serving, caplog):
    from tasks.pyfunc_model import InvalidInput

    with pytest.raises(InvalidInput, match="was not meta-trained, so it cannot adapt to a support set") as refused:
        model.predict(None, TEXTS, params={"support": json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])})
    assert refused.value.get_http_status_code() == 400

    def boom(*a, **k):
        raise RuntimeError("boom in /srv/secret/path.py")

    model.predictor.predict = boom
    with pytest.raises(MlflowException) as failed:
        model.predict(None, TEXTS)
    body = json.loads(failed.value.serialize_as_json())
    assert failed.value.get_http_status_code() == 500 and "stack_trace" not in body, body
    assert body["message"] == "prediction failed (RuntimeError); the server's log has the details"
    assert "/srv/secret/path.py" in caplog.text  # the traceback is the server's, in its log


def test_mlflow_scoring_answers_hostile_bodies_400_with_our_line_and_no_stack_trace(package, serving, tmp_path):
    """MLflow's own request handling (`scoring_server.invocations`, as `mlflow models serve` runs it) on a saved pyfunc:
    the bodies a hostile probe sent, each a 400 whose JSON holds our one line and no `stack_trace`."""
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import invocations

    from tasks.register import PYFUNC_FILE, model_signature

    mlflow.pyfunc.save_model(str(tmp_path / "model"), python_model=str(PYFUNC_FILE), artifacts={"package": str(package)},
                             signature=model_signature(), pip_requirements=["mlflow"])
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    schema = model.metadata.get_input_schema()

    def post(body: dict) -> tuple[int, dict]:
        try:
            r = invocations(json.dumps(body), "application/json", model, schema)
            return r.status, json.loads(r.response)
        except MlflowException as e:  # what the server's handler answers (`_async_catch_mlflow_exception`)
            return e.get_http_status_code(), json.loads(e.serialize_as_json())

    status, body = post({"inputs": TEXTS})
    assert status == 200 and len(body["predictions"]) == 2, body
    for bad, message in [([1, 2], "input row 1 is 1 (type int), not a string"), ([None], "input row 1 is missing (None)"),
                         ([{"a": 1}], "input row 1 is array(1) (type ndarray), not a string"),
                         ([""], "input row 1 is empty or only whitespace"), (["a\x00b"], "input row 1 holds a NUL byte"),
                         (["x"] * 10_001, "the request has 10001 rows, more than the 10000")]:
        status, body = post({"inputs": bad})
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", (bad[:3], status, body)
        assert "stack_trace" not in body and body["message"].startswith(message) and "\n" not in body["message"], (bad[:3], body)
        assert len(body["message"]) < 300, body  # our one line, not MLflow's echo of the request
    support = json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    status, body = post({"inputs": TEXTS, "params": {"support": support}})
    assert status == 400 and body["message"].startswith("this model (strategy unknown) was not meta-trained") and "stack_trace" not in body
