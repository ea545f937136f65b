"""The training flow end to end on a real (temporary) Prefect API and a real MLflow SQLite store.

The backbone is the tiny random-weight fixture (code path only); tests/test_real_models.py runs MiniLM.
"""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pandas as pd
import pytest

from tests.helpers import flow_run, tiny_config

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_champion_loads_and_predicts_in_a_fresh_process(tmp_path, text_dataset, tiny_bert):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy__head="mlp", strategy__epochs=5)
    r = flow_run(cfg)
    code = (
        "import json, mlflow; mlflow.set_tracking_uri(%r);"
        "m = mlflow.pyfunc.load_model('models:/tiny-text@champion');"
        "print(json.dumps(m.predict(['a small dog that barks at the moon', 'a red car parked by the sea'])))"
    ) % cfg["tracking"]["uri"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    preds = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(preds) == 2 and set(preds) <= {"animal", "food", "vehicle"}
    # the served model gives what the run measured: its test predictions match the run's metric
    from tlops.evaluate import classification_metrics

    test = pd.read_csv(text_dataset / "test.csv")
    model = mlflow.pyfunc.load_model(f"models:/tiny-text/{r.version}")
    got = classification_metrics(test["label"].tolist(), model.predict(test["text"].tolist()), ["animal", "food", "vehicle"])
    assert got["macro_f1"] == pytest.approx(r.test_metrics["macro_f1"], abs=1e-9)
