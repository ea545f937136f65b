"""`mlflow models serve` of registered models (the zoo's text and image probes) over HTTP: texts or file paths in,
labels (and class probabilities with the `proba` param) out; what is not a text, and a request over the row bound, a 400
with one line and no stack trace (issue 25; the cases one by one: tests/unit/test_serving_input.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.flow.test_image import IMAGE_INPUTS
from tests.servers import Services, invocations, serve_model


def post(url: str, body: dict) -> tuple[int, dict]:
    """POST a body to /invocations: (status, the JSON answer), errors included."""
    req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_registered_text_model_serves_over_http(zoo, tmp_path):
    svc = Services(tmp_path)
    try:
        url = serve_model(svc, zoo.text.model_uri(), zoo.text.uri)
        labels = invocations(url, {"inputs": ["a small dog that barks at the moon", "a sweet cake baked with the river"]})
        assert labels == ["animal", "food"], labels
        proba = invocations(url, {"inputs": ["a red car parked by the road"], "params": {"proba": True}})
        assert set(proba[0]) == {"animal", "food", "vehicle"} and max(proba[0], key=proba[0].get) == "vehicle", proba
        for bad, message in [([1, 2], "input row 1 is 1 (type int), not a string"), ([None], "input row 1 is missing (None)"),
                             ([{"a": 1}], "not a string"), ([""], "input row 1 is empty or only whitespace"),
                             (["a\x00b"], "input row 1 holds a NUL byte"),
                             (["x"] * 10_001, "the request has 10001 rows, more than the 10000 this server takes per request")]:
            status, answer = post(url, {"inputs": bad})
            assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE" and message in answer["message"], (bad[:3], answer)
            assert "stack_trace" not in answer and "Traceback" not in answer["message"] and ".py" not in answer["message"], answer
    finally:
        svc.stop()


def test_registered_image_model_serves_file_paths_over_http(zoo, tmp_path):
    svc = Services(tmp_path)
    try:
        paths = [str(zoo.image.data / p) for p in IMAGE_INPUTS]
        assert invocations(serve_model(svc, zoo.image.model_uri(), zoo.image.uri), {"inputs": paths}) == ["blob", "stripes-v"]
    finally:
        svc.stop()
