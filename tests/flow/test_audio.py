"""Audio through the same contract, validation and flow (real speech_embedding weights)."""

from __future__ import annotations

import json


from tests.helpers import tiny_config
from tests.servers import tlops_cli
from tlops.data import load_dataset


def test_audio_flow_registers_a_model_that_predicts_from_file_paths(tmp_path, audio_dataset):
    from flows.train import train_flow
    from tlops.package import Predictor

    cfg = tiny_config(tmp_path, audio_dataset, tmp_path, backbone__name="packaged:speech-embedding",
                      registry__model_name="tiny-audio")
    r = train_flow(cfg, progress=False)
    assert r.version == "1" and "champion" in r.aliases and r.cache.misses == 33
    assert r.test_metrics["accuracy"] > 0.5  # three classes: chance is 0.33
    paths = load_dataset(audio_dataset).inputs("test")
    out = tlops_cli("predict", "models:/tiny-audio@champion", *paths, "--json", "--tracking-uri", cfg["tracking"]["uri"])
    assert out.returncode == 0, out.stderr[-3000:]
    served = [r["label"] for r in json.loads(out.stdout.strip().splitlines()[-1])["predictions"]]
    import mlflow

    local = mlflow.artifacts.download_artifacts("models:/tiny-audio/1/artifacts/package", tracking_uri=cfg["tracking"]["uri"])
    assert served == Predictor(local).predict(paths)  # the fresh process serves exactly the registered package
