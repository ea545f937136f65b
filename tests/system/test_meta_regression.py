"""Meta-transfer for numbers (issue 15): few-shot regression episodes over a dataset's `group:` tasks, the MAML
family's inner loop on the support MSE, the folded registered head, the baselines, the dataset contract and its
refusals, and one run of the whole core on a tiny dataset of tasks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import TEXTS, make_task_dataset, tiny_config

FRESH = """
import json, sys
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
texts, support = json.loads(sys.argv[3])
print(json.dumps([[float(v) for v in model.predict(texts)], [float(v) for v in model.predict(texts, params={"support": json.dumps(support)})]]))
"""


@pytest.mark.usefixtures("prefect_api")
def test_a_flow_run_registers_the_few_shot_regressor_and_a_fresh_process_predicts_floats(tmp_path, tiny_bert, capsys):
    """`tlops run`'s flow on a dataset of tasks: MLflow gets the episodic metrics and the MAE-vs-shots plot, the gate
    compares the support task's test MAE, and the registered pyfunc returns floats in a fresh process."""
    import json
    import os
    import subprocess
    import sys

    import mlflow

    from flows.train import train_flow
    from tests.helpers import REPO

    data = make_task_dataset(tmp_path / "data")
    cfg = tiny_config(tmp_path, data, tiny_bert, registry__model_name="tiny-task-regression", registry__metric="mae", strategy={
        "name": "fomaml", "shots": 2, "queries": 3, "projection": "linear", "embedding_dim": 8, "meta_epochs": 1,
        "episodes_per_epoch": 8, "val_episodes": 10, "eval_shots": [1, 2]})
    out = train_flow(cfg, progress=False)
    assert out.version == "1" and "champion" in out.aliases and out.strategy == "fomaml"
    assert out.test_metrics["mae"] > 0 and {"mae_1s", "mae_2s", "pooled_ridge_mae_2s"} <= set(out.test_metrics)
    from flows.cli import _print_summary

    _print_summary(out)  # what `tlops run` prints: the kept epoch's val MAE (a regression has no macro-F1)
    assert f"mae={out.val_metrics['mae']:.4f}, kept epoch" in capsys.readouterr().out
    client = mlflow.MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])
    plots = {a.path for a in client.list_artifacts(out.run_id, "plots")}
    assert {"plots/mae_vs_shots.png", "plots/predicted_vs_true.png"} <= plots, plots
    texts = TEXTS[:4]
    support = [{"text": t, "label": 3.0 * len(t) + 7} for t in TEXTS[150:153]]  # a new task's few labelled rows
    proc = subprocess.run([sys.executable, "-c", FRESH, cfg["tracking"]["uri"], "models:/tiny-task-regression@champion",
                           json.dumps([texts, support])], capture_output=True, text=True, cwd=REPO, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    values, adapted = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(values) == 4 and len(set(values)) > 1 and len(adapted) == 4 and not np.allclose(values, adapted)
    # `tlops predict --support` on a CSV with a target that is not a number: named by its CSV line, nothing predicted
    from tests.servers import tlops_cli

    bad = tmp_path / "support.csv"
    bad.write_text("text,label\n" + "".join(f"{r['text']},{v}\n" for r, v in zip(support, ["12.5", "abc", "3"])))
    cli = tlops_cli("predict", "models:/tiny-task-regression@champion", texts[0], "--support", str(bad), "--tracking-uri",
                    cfg["tracking"]["uri"])
    assert cli.returncode == 1 and f"{bad} line 3 has label 'abc'; this model predicts numbers" in cli.stderr, cli.stderr[-2000:]
