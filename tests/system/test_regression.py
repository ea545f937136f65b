"""Regression targets through the linear probe (issue 15, part 1): dataset contract and GX target rules,
config/task mismatch, metrics on known values, the head's target scaler round trip, the gate's direction,
a package (and the pyfunc class) predicting floats; one slow `tlops run` on the real text demo."""

from __future__ import annotations

import json

import pytest

from tests.cli import cli
from tests.helpers import REPO
from tests.servers import demo_data, run_demo


def test_tlops_run_on_the_text_regression_demo_beats_the_train_mean(tmp_path, prefect_api):
    """Real MiniLM: the registered model's R² on test > 0 (better than predicting the mean), its gate on MAE,
    and the registered pyfunc returns floats through `tlops predict` (the commands in-process)."""
    config = REPO / "configs" / "text_regression.yaml"
    data = demo_data(config, needs="train.csv")
    result, uri = run_demo(config, tmp_path, prefect_api)
    assert result["test_metrics"]["r2"] > 0, result["test_metrics"]
    assert result["promotion"]["metric"] == "mae" and "champion" in result["aliases"], result["promotion"]
    # the registered pyfunc, loaded by `tlops predict`: floats, printed as values
    fresh = cli("predict", "models:/wordnet-noun-depth@champion", "a young dog", "a general concept", "--json", "--tracking-uri", uri)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    values = [r["value"] for r in json.loads(fresh.stdout.strip().splitlines()[-1])["predictions"]]
    # `tlops evaluate` on the test split gives the run's own regression metrics, and its plots
    ev = cli("evaluate", "models:/wordnet-noun-depth@champion", "--data", str(data), "--json", "--out", str(tmp_path / "eval"),
             "--tracking-uri", uri)
    assert ev.returncode == 0, ev.stderr[-3000:]
    report = json.loads(ev.stdout.strip().splitlines()[-1])
    assert report["metrics"] == pytest.approx(result["test_metrics"], rel=1e-6), (report["metrics"], result["test_metrics"])
    assert {"predicted_vs_true.png", "residuals.png"} <= {f.name for f in (tmp_path / "eval").iterdir()}
    assert len(values) == 2 and all(isinstance(v, float) and 1 <= v <= 30 for v in values), values
