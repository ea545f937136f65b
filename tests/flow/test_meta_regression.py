"""Few-shot regression through the flow (the zoo's FOMAML model on a tiny dataset of tasks): MLflow gets the
episodic metrics and the MAE-vs-shots plot, the gate compares the support task's test MAE, `tlops run`'s summary
shows the kept epoch's val MAE, and `tlops predict --support` names a target that is not a number by its CSV line.
tests/system/test_fresh_process.py checks the registered pyfunc returns floats in a fresh process."""

from __future__ import annotations

import mlflow

from tests.cli import cli
from tests.helpers import TEXTS


def test_a_flow_run_registers_the_few_shot_regressor_with_its_episodic_metrics(zoo, tmp_path, capsys):
    reg = zoo.task_regression
    out = reg.results[0]
    assert out.version == "1" and "champion" in out.aliases and out.strategy == "fomaml"
    assert out.test_metrics["mae"] > 0 and {"mae_1s", "mae_2s", "pooled_ridge_mae_2s"} <= set(out.test_metrics)
    from flows.commands.run import print_summary as _print_summary

    _print_summary(out)  # what `tlops run` prints: the kept epoch's val MAE (a regression has no macro-F1)
    assert f"mae={out.val_metrics['mae']:.4f}, kept epoch" in capsys.readouterr().out
    client = mlflow.MlflowClient(reg.uri, registry_uri=reg.uri)
    plots = {a.path for a in client.list_artifacts(out.run_id, "plots")}
    assert {"plots/mae_vs_shots.png", "plots/predicted_vs_true.png"} <= plots, plots
    # `tlops predict --support` on a CSV with a target that is not a number: named by its CSV line, nothing predicted
    support = [{"text": t, "label": 3.0 * len(t) + 7} for t in TEXTS[150:153]]
    bad = tmp_path / "support.csv"
    bad.write_text("text,label\n" + "".join(f"{r['text']},{v}\n" for r, v in zip(support, ["12.5", "abc", "3"])))
    run = cli("predict", reg.model_uri(), TEXTS[0], "--support", str(bad), "--tracking-uri", reg.uri)
    assert run.returncode == 1 and f"{bad} line 3 has label 'abc'; this model predicts numbers" in run.stderr, run.stderr[-2000:]
