"""Audio through the same flow (the zoo's probe on real speech_embedding weights, synthetic sounds)."""

from __future__ import annotations

import json

from tests.cli import cli
from tlops.data import load_dataset


def test_audio_flow_registers_a_model_that_predicts_from_file_paths(zoo):
    import mlflow

    from tlops.package import Predictor

    reg = zoo.audio
    (r,) = reg.results
    assert r.version == "1" and "champion" in r.aliases and r.cache.misses == 33
    assert r.test_metrics["accuracy"] > 0.5  # three classes: chance is 0.33
    paths = load_dataset(reg.data).inputs("test")
    out = cli("predict", reg.model_uri(), *paths, "--json", "--tracking-uri", reg.uri)
    assert out.returncode == 0, out.stderr[-3000:]
    served = [r["label"] for r in json.loads(out.stdout.strip().splitlines()[-1])["predictions"]]
    local = mlflow.artifacts.download_artifacts(f"{reg.model_uri('1')}/artifacts/package", tracking_uri=reg.uri)
    assert served == Predictor(local).predict(paths)  # the command serves exactly the registered package
