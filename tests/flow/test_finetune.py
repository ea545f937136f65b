"""The `finetune` strategy: config, batching, checkpoints, the training loop's properties, the flow in every
modality, and crash safety (SIGKILL mid-epoch, then resume; an exception ends the MLflow run FAILED).

Backbones here are random-weight code-path fixtures (tiny BERT / ViT / wav2vec2) or the real packaged
EfficientNet-Lite0 and speech_embedding; bench/finetune_*.py measures quality on real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from tests.helpers import finetune_strategy, flow_run, tiny_config
from tlops.checkpoint import latest_checkpoint
from tlops.data import load_dataset
from tlops.training.callbacks import RAISE_ENV


def test_text_finetune_flow_registers_the_best_fine_tuned_weights(tmp_path, tiny_bert, text_dataset):
    import mlflow

    from tlops.package import Predictor

    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy=finetune_strategy(epochs=3, lp_ft=True), registry__model_name="ft-text")
    r = flow_run(cfg)
    assert r.strategy == "finetune" and r.version == "1" and r.best_epoch is not None
    client = MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])
    run = client.get_run(r.run_id)
    assert run.info.status == "FINISHED" and run.data.params["strategy.lp_ft"] == "True"
    curve = client.get_metric_history(r.run_id, "train_val_macro_f1")
    assert [m.step for m in curve] == [0, 1, 2]  # one point per epoch, logged as the epochs ran
    assert "plots/learning_curves.png" in {a.path for a in client.list_artifacts(r.run_id, "plots")}
    pkg = Path(mlflow.artifacts.download_artifacts("models:/ft-text/1/artifacts/package", tracking_uri=cfg["tracking"]["uri"]))
    meta = json.loads((pkg / "tlops_model.json").read_text())
    ident = meta["backbone"]["identity"]
    pretrained = load_file(str(tiny_bert / "model.safetensors"))
    tuned = load_file(str(pkg / "backbone" / "model.safetensors"))
    assert ident["fine_tuned_from"] != ident["weights_sha256"] and meta["fine_tune"]["best_epoch"] == r.best_epoch
    assert any(not torch.equal(tuned[k], pretrained[k]) for k in tuned if k in pretrained)
    ds = load_dataset(text_dataset)
    pred = Predictor(pkg).predict(ds.inputs("test"))
    acc = float(np.mean(np.array(pred) == ds.splits["test"]["label"].to_numpy()))
    assert acc == pytest.approx(r.test_metrics["accuracy"])  # the registered package is the evaluated model
    assert not any((tmp_path / "runs" / "checkpoints").iterdir())  # removed after success


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_image_and_audio_finetune_through_the_same_flow(tmp_path, modality):
    if modality == "image":
        from tests.helpers import make_image_dataset as make
        backbone = {"backbone__name": "packaged:efficientnet-lite0", "backbone__image_size": 32}
    else:
        from tests.helpers import make_audio_dataset as make
        backbone = {"backbone__name": "packaged:speech-embedding"}
    data = make(tmp_path / modality)
    cfg = tiny_config(tmp_path, data, tmp_path, strategy=finetune_strategy(epochs=2, trainable=3, backbone_lr=1e-4),
                      registry__model_name=f"ft-{modality}", **backbone)
    r = flow_run(cfg)
    assert r.version == "1" and r.test_metrics["accuracy"] > 0.5  # three easy classes; chance is 0.33
    client = MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])
    assert len(client.get_metric_history(r.run_id, "train_loss")) == 2


def test_an_exception_inside_training_ends_the_run_failed_and_keeps_checkpoints(tmp_path, tiny_bert, text_dataset, monkeypatch):
    monkeypatch.setenv(RAISE_ENV, "8")  # epoch 1 fails at its 2nd step (6 steps per epoch), e.g. out of memory
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy=finetune_strategy(epochs=3), registry__model_name="ft-fail")
    with pytest.raises(RuntimeError, match="injected failure after optimizer step 8"):
        flow_run(cfg)
    client = MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"] and "injected failure" in runs[0].data.tags["tlops.error"]
    assert client.search_registered_models() == []
    ckpt, _ = latest_checkpoint(next((tmp_path / "runs" / "checkpoints").iterdir()))
    assert ckpt.meta["state"]["epoch"] == 1  # epoch 0 is safe on disk for the rerun
