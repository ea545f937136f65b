"""`mlflow models serve` of registered models (the zoo's text and image probes) over HTTP: texts or file paths in,
labels (and class probabilities with the `proba` param) out."""

from __future__ import annotations

from tests.flow.test_image import IMAGE_INPUTS
from tests.servers import Services, invocations, serve_model


def test_registered_text_model_serves_over_http(zoo, tmp_path):
    svc = Services(tmp_path)
    try:
        url = serve_model(svc, zoo.text.model_uri(), zoo.text.uri)
        labels = invocations(url, {"inputs": ["a small dog that barks at the moon", "a sweet cake baked with the river"]})
        assert labels == ["animal", "food"], labels
        proba = invocations(url, {"inputs": ["a red car parked by the road"], "params": {"proba": True}})
        assert set(proba[0]) == {"animal", "food", "vehicle"} and max(proba[0], key=proba[0].get) == "vehicle", proba
    finally:
        svc.stop()


def test_registered_image_model_serves_file_paths_over_http(zoo, tmp_path):
    svc = Services(tmp_path)
    try:
        paths = [str(zoo.image.data / p) for p in IMAGE_INPUTS]
        assert invocations(serve_model(svc, zoo.image.model_uri(), zoo.image.uri), {"inputs": paths}) == ["blob", "stripes-v"]
    finally:
        svc.stop()
