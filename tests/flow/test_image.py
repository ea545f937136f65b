"""Images through the same flow as text (the zoo's probe on real EfficientNet-Lite0 weights, tiny images);
tests/system/test_serving.py serves it over HTTP."""

from __future__ import annotations

import json

from tests.cli import cli

IMAGE_INPUTS = ("img/test-blob-0.png", "img/test-stripes-v-1.png")


def test_image_flow_registers_a_model_that_predicts_from_file_paths(zoo):
    reg = zoo.image
    (r,) = reg.results
    assert r.version == "1" and "champion" in r.aliases and r.cache.misses == 45
    assert r.test_metrics["accuracy"] > 0.8  # three visually distinct patterns
    paths = [str(reg.data / p) for p in IMAGE_INPUTS]
    out = cli("predict", reg.model_uri(), *paths, "--proba", "--json", "--tracking-uri", reg.uri)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])["predictions"]
    assert [r["label"] for r in rows] == ["blob", "stripes-v"] and all(abs(sum(r["proba"].values()) - 1) < 1e-5 for r in rows)
