"""An MLflow run and its registered version explain themselves: only the params that apply, the data as dataset
inputs with split sizes, metric names without doubled prefixes, a version description with the test metrics
as version tags. One flow run (a text probe, tiny random-weight backbone: code path only) serves every check."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import make_text_dataset, tiny_config
from tests.zoo import mlflow_uris_kept



@pytest.fixture(scope="module")
def probe_run(tmp_path_factory, tiny_bert, prefect_api):
    from flows.train import train_flow

    tmp = tmp_path_factory.mktemp("explains")
    data = make_text_dataset(tmp / "data", with_val=False)  # val carved from train: its input says so
    cfg = tiny_config(tmp, data, tiny_bert, registry__model_name="explained")
    with mlflow_uris_kept():  # a module fixture runs outside the per-test restore: leave no process-wide store behind
        out = train_flow(cfg, progress=False)
    client = MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])
    return out, client, client.get_run(out.run_id), data


def test_a_text_probe_logs_only_the_params_that_apply(probe_run):
    _, _, run, _ = probe_run
    params = run.data.params
    for absent in ("backbone.image_size", "backbone.clip_seconds", "validation.min_image_side", "validation.max_audio_seconds",
                   "validation.min_audio_peak", "strategy.hidden", "strategy.epochs", "strategy.lr",
                   "validation.allow_unlabeled_test_overlap"):
        assert absent not in params, absent
    for present in ("backbone.max_length", "validation.max_chars", "strategy.C", "strategy.max_iter", "strategy.head", "seed"):
        assert present in params, present
    assert (params["data.rows.train"], params["data.rows.val"], params["data.rows.test"]) == ("36", "6", "18")


def test_each_split_is_a_dataset_input_with_digest_source_and_size(probe_run):
    _, _, run, data = probe_run
    md5 = run.data.tags["data.version_md5"]  # the run's data version (tlops.data_version)
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"tiny-train", "tiny-val", "tiny-test"}, set(inputs)
    for split, context, rows, csv in (("train", "training", 36, "train.csv"), ("val", "validation", 6, "train.csv"),
                                      ("test", "testing", 18, "test.csv")):
        i = inputs[f"tiny-{split}"]
        tags = {t.key: t.value for t in i.tags}
        assert i.dataset.digest == md5[:32] and str(data / csv) in i.dataset.source, (split, i.dataset)
        assert tags["mlflow.data.context"] == context and tags["rows"] == str(rows) and tags["split"] == split, tags
    assert {t.key: t.value for t in inputs["tiny-val"].tags}["carved_from"] == "train.csv"


def test_the_probe_curve_is_logged_once_named(probe_run):
    out, client, run, _ = probe_run
    metrics = run.data.metrics
    assert "train_iters" in metrics and not any(k.startswith("train_train_") for k in metrics), sorted(metrics)
    curve = client.get_metric_history(out.run_id, "train_val_macro_f1")
    assert [m.step for m in curve] == [0] and curve[0].value == pytest.approx(out.val_metrics["macro_f1"])
    by_rows = client.get_metric_history(out.run_id, "val_macro_f1_by_train_rows")  # its learning curve is over data
    assert sorted(m.step for m in by_rows)[-1] == 36 and len(by_rows) >= 3, by_rows
    assert "plots/learning_curves.png" in [a.path for a in client.list_artifacts(out.run_id, "plots")]


def test_the_version_has_a_description_and_its_test_metrics_as_tags(probe_run):
    out, client, run, data = probe_run
    mv = client.get_model_version("explained", out.version)
    for expected in ("linear_probe", f"data version `{run.data.tags['data.version_md5'][:12]}`", f"macro_f1 {out.test_metrics['macro_f1']:.4f}",
                     out.promotion.reason, out.run_id, "train 36"):
        assert expected in mv.description, (expected, mv.description)
    for k, v in out.test_metrics.items():
        assert float(mv.tags[f"test_{k}"]) == pytest.approx(v, rel=1e-5) == pytest.approx(run.data.metrics[f"test_{k}"], rel=1e-5)
    assert mv.tags["tlops.strategy"] == "linear_probe" and mv.tags["data.version_md5"] == run.data.tags["data.version_md5"]
    import mlflow

    model = mlflow.pyfunc.load_model(client.get_model_version_download_uri("explained", out.version))  # an input example, in what serving accepts
    example = model.input_example
    texts = list(example.iloc[:, 0]) if hasattr(example, "iloc") else list(example)
    assert texts == list(pd.read_csv(data / "train.csv")["text"][:2]), example
    assert len(model.predict(example)) == 2
    note = run.data.tags["mlflow.note.content"]  # the run page's description: the same facts and where the card is
    assert f"version {out.version}" in note and mv.description in note and "`model_card.html`" in note, note
