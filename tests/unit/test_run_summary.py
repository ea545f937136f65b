"""What `tlops run` prints at the end: user-written names and reasons printed as written (never read as Rich
markup), and the commands it suggests carry the tracking URI they need when pasted (issues 25/27)."""

from __future__ import annotations

from tlops.records import CacheTotals, Gate, RunOutcome


def _outcome(**over) -> RunOutcome:
    fields = dict(run_id="a" * 32, experiment="exp [/b]", experiment_id="7", tracking_uri="sqlite:///mlruns/mlflow.db", model_name="close [/bold] tag",
                  version="1", aliases=["champion"], test_metrics={"accuracy": 0.5, "macro_f1": 0.4}, val_metrics={"macro_f1": 0.4},
                  promotion=Gate(promoted=True, reason="see [/ops] ticket", metric="macro_f1", challenger=0.4, margin=0.0, version="1"),
                  cache=CacheTotals(hits=1, misses=2), backbone="hf:/models/[red]x", strategy="linear_probe", flow_pid=1)
    return RunOutcome(**{**fields, **over})


def test_the_summary_prints_user_strings_as_written_and_pastable_commands_name_the_store(capsys):
    from flows.commands.run import print_summary as _print_summary

    _print_summary(_outcome())
    out = capsys.readouterr().out
    for written in ("close [/bold] tag", "see [/ops] ticket", "hf:/models/[red]x", "'exp [/b]'"):
        assert written in out, (written, out)
    lines = {line.split(":", 1)[0].strip(): line for line in out.splitlines() if ":" in line}
    assert "--tracking-uri sqlite:///mlruns/mlflow.db" in lines["Predict (checked)"]
    ui = lines["Open the MLflow UI"]  # the experiment's runs in the Model training view, not MLflow 3's GenAI view
    assert "--backend-store-uri sqlite:///mlruns/mlflow.db" in ui and "/#/experiments/7?workflowType=machine_learning" in ui, ui
    python = lines["Load it in Python"]
    assert "mlflow.set_tracking_uri('sqlite:///mlruns/mlflow.db')" in python and "without tlops's sha256 check" in python


def test_the_predict_hints_of_a_model_of_named_fields_show_a_json_row(capsys, tmp_path):
    """Extractive QA takes {question, context} rows: the pasted predict command and the Python hint show one."""
    from types import SimpleNamespace

    from flows.commands.run import _input_example, print_summary

    (tmp_path / "dataset.yaml").write_text("modality: text\ntask: extractive_qa\n")
    row = _input_example(SimpleNamespace(data=SimpleNamespace(path=str(tmp_path))))
    assert row == '{"question": "...", "context": "..."}'
    print_summary(_outcome(), row)
    lines = {line.split(":", 1)[0].strip(): line for line in capsys.readouterr().out.splitlines() if ":" in line}
    assert f"@champion '{row}' --tracking-uri" in lines["Predict (checked)"]
    assert f".predict([{row}])" in lines["Load it in Python"]
    (tmp_path / "dataset.yaml").write_text("modality: text\n")  # plain texts: INPUT ...
    assert _input_example(SimpleNamespace(data=SimpleNamespace(path=str(tmp_path)))) is None


def test_the_summary_names_the_classic_baseline_and_warns_when_it_wins(capsys):
    """Issue 30: every probe and fine-tune knows its trivial baseline; a user is told when it beats the model."""
    from flows.commands.run import print_summary

    base = {"name": "raw_pixels_ridge", "metrics": {"mae": 3.0, "r2": 0.68}, "kept": 10.0, "val_metric": 3.1, "gate_metric": "mae"}
    print_summary(_outcome(test_metrics={"mae": 4.0, "r2": 0.4}, baseline={**base, "wins": True}))
    out = capsys.readouterr().out
    assert "warning the classic baseline beats this model: raw_pixels_ridge mae=3.0000" in out, out
    print_summary(_outcome(test_metrics={"mae": 2.0, "r2": 0.8}, baseline={**base, "wins": False}))
    out = capsys.readouterr().out
    assert "baseline raw_pixels_ridge mae=3.0000 on the same test split (the model beats it)" in out and "warning" not in out
    print_summary(_outcome())  # a run with no baseline (few-shot, NER, ...) prints no baseline line
    assert "baseline" not in capsys.readouterr().out.lower()
