"""The `finetune` strategy: config, batching, checkpoints, the training loop's properties, the flow in every
modality, and crash safety (SIGKILL mid-epoch, then resume; an exception ends the MLflow run FAILED).

Backbones here are random-weight code-path fixtures (tiny BERT / ViT / wav2vec2) or the real packaged
EfficientNet-Lite0 and speech_embedding; bench/finetune_*.py measures quality on real data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import REPO, finetune_strategy, tiny_config
from tlops.training.callbacks import SIGKILL_ENV


def _cli(cfg_file: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", "run", str(cfg_file), "--json"], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)


def test_sigkill_mid_epoch_then_rerun_resumes_and_reaches_the_same_metrics(tmp_path, tiny_bert, text_dataset, prefect_api):
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    strategy = finetune_strategy(epochs=4, checkpoint_every_steps=4)  # 6 steps/epoch: checkpoints at 4, 6, 8, 12, 16, 18, ...
    files = {}
    for name in ("reference", "crashing"):
        cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy=strategy, registry__model_name=f"ft-{name}",
                          execution__work_dir=str(tmp_path / name))
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump(cfg))
    ref = _cli(files["reference"], env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = json.loads(ref.stdout.strip().splitlines()[-1])

    killed = _cli(files["crashing"], {**env, SIGKILL_ENV: "17"})  # epoch 2, batch 5 of 6; last checkpoint: step 16
    assert killed.returncode == -9, killed.stderr[-3000:]
    ckpt_root = next((tmp_path / "crashing" / "checkpoints").iterdir())
    # what a crash during the next checkpoint write would leave: a newer folder whose file is cut short
    shutil.copytree(ckpt_root / "step-000000016", ckpt_root / "step-000000017")
    with open(ckpt_root / "step-000000017" / "backbone.safetensors", "r+b") as f:
        f.truncate(1000)
    client = MlflowClient(reference["tracking_uri"], registry_uri=reference["tracking_uri"])
    orphan = [r for r in client.search_runs([client.get_experiment_by_name("tests").experiment_id])
              if r.data.params.get("registry.model_name") == "ft-crashing"]
    assert len(orphan) == 1 and orphan[0].info.status == "RUNNING"  # nothing could close it: SIGKILL

    resumed = _cli(files["crashing"], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["resumed_from"] == {"checkpoint": "step-000000016", "epoch": 2, "batch": 4, "global_step": 16}
    assert result["test_metrics"] == pytest.approx(reference["test_metrics"], abs=1e-6)
    assert result["val_metrics"] == pytest.approx(reference["val_metrics"], abs=1e-6)  # the task type's (macro_f1 first)
    for metric in ("train_val_loss", "train_loss"):
        a = [m.value for m in sorted(client.get_metric_history(reference["run_id"], metric), key=lambda m: m.step)]
        b = [m.value for m in sorted(client.get_metric_history(result["run_id"], metric), key=lambda m: m.step)]
        assert len(a) == len(b) == 4 and np.allclose(a, b, atol=1e-5), (metric, a, b)
    old = client.get_run(orphan[0].info.run_id)
    assert old.info.status == "KILLED" and "ended without closing this run" in old.data.tags["tlops.error"]
    assert client.get_run(result["run_id"]).data.tags["tlops.closed_orphans"] == orphan[0].info.run_id
