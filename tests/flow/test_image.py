"""Images through the same contract, validation and flow as text (real EfficientNet-Lite0 weights)."""

from __future__ import annotations

import json


from tests.helpers import tiny_config
from tests.servers import Services, invocations, serve_model, tlops_cli


def test_image_flow_registers_a_model_that_predicts_from_file_paths(tmp_path, image_dataset):
    from flows.train import train_flow

    cfg = tiny_config(tmp_path, image_dataset, tmp_path, backbone__name="packaged:efficientnet-lite0",
                      backbone__image_size=32, registry__model_name="tiny-image")
    r = train_flow(cfg, progress=False)
    assert r.version == "1" and "champion" in r.aliases and r.cache.misses == 45
    assert r.test_metrics["accuracy"] > 0.8  # three visually distinct patterns
    paths = [str(image_dataset / "img" / "test-blob-0.png"), str(image_dataset / "img" / "test-stripes-v-1.png")]
    uri = cfg["tracking"]["uri"]
    out = tlops_cli("predict", "models:/tiny-image@champion", *paths, "--proba", "--json", "--tracking-uri", uri)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])["predictions"]
    assert [r["label"] for r in rows] == ["blob", "stripes-v"] and all(abs(sum(r["proba"].values()) - 1) < 1e-5 for r in rows)
    svc = Services(tmp_path)
    try:  # served over HTTP: file paths in, labels out
        assert invocations(serve_model(svc, "models:/tiny-image@champion", uri), {"inputs": paths}) == ["blob", "stripes-v"]
    finally:
        svc.stop()
