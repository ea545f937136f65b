"""Meta-transfer with trainable top backbone groups (issue 12, `strategy.trainable`): the top group meta-trains
while the lower ones stay bit-identical, an interrupted run resumes to the same weights, and the registered
package embeds with the meta-trained backbone (predictions and support sets given at predict time). With
`inner_groups`, MAML's inner loop adapts the top group per support set: the package keeps the adapted weights of the
registered support set, predict-time adaptation reproduces them, and a flow run's registered model adapts in a fresh
process. The tiny random-weight BERT is a code-path fixture, not a pretrained model: no quality is claimed here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TOPICS, make_few_shot_text, tiny_config
from tests.unit.test_meta_backbone import STRATEGY, SUPPORT, TEXTS, one_thread  # noqa: F401 (fixtures used by name)

FRESH = """
import json, sys
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
texts, support = json.loads(sys.argv[3])
proba = model.predict(texts, params={"support": json.dumps(support), "proba": True})
print(json.dumps({"registered": [str(x) for x in model.predict(texts)], "columns": list(proba.columns),
                  "proba": proba.to_numpy().tolist()}))
"""


@pytest.mark.usefixtures("prefect_api")
def test_a_flow_run_with_inner_backbone_groups_registers_a_model_that_a_fresh_process_adapts(tmp_path, tiny_bert):
    """`tlops run`'s flow with `trainable: 1, inner_groups: 1` (second-order MAML through the top group) registers the
    package; `mlflow.pyfunc.load_model` in a fresh process predicts the registered classes and adapts to a support set
    given at predict time exactly as the package's `Predictor` does in this process."""
    import os
    import subprocess
    import sys

    import mlflow

    from flows.train import train_flow
    from tests.helpers import REPO
    from tlops.package import Predictor

    data = make_few_shot_text(tmp_path / "data", per_class=14)
    cfg = tiny_config(tmp_path, data, tiny_bert, registry__model_name="tiny-inner-groups",
                      strategy={**STRATEGY, "name": "maml", "inner_lr": 0.05, "inner_groups": 1})
    out = train_flow(cfg, progress=False)
    assert out.version == "1" and "champion" in out.aliases and out.strategy == "maml"
    assert 0 <= out.test_metrics["accuracy_5w1s"] <= 1 and out.test_metrics["ci95_5w1s"] > 0
    uri, model_uri = cfg["tracking"]["uri"], "models:/tiny-inner-groups@champion"
    proc = subprocess.run([sys.executable, "-c", FRESH, uri, model_uri, json.dumps([TEXTS, SUPPORT])], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(fresh["registered"]) <= set(TOPICS[15:20]) and fresh["columns"] == ["car", "cat", "dog"]

    mlflow.set_tracking_uri(uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(tmp_path / "download")))
    package = next(local.rglob("tlops_model.json")).parent
    pred = Predictor(package)
    assert pred.meta["few_shot"]["backbone_params"], "the registered package adapts backbone groups"
    assert np.allclose(fresh["proba"], pred.predict_proba(TEXTS, pred.support(SUPPORT)), atol=1e-5)
    assert fresh["registered"] == pred.predict(TEXTS)
