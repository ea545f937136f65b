"""`tlops drift MODEL_URI --data NEW_INPUTS.csv`: have the inputs a registered model now sees moved away from its
training data? No labels needed: the new inputs and the model's training split are embedded by the model's own backbone
(through the feature cache: the training features a run cached are hits), compared by an MMD permutation test and a
domain-classifier AUC (`tlops.drift`), with the model's predicted-class mix and confidence on each; the verdict, its
numbers and the new rows that look most out of distribution are printed and logged as an MLflow run tagged with the
model version."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import JSON, TRACKING
from flows.commands._registry_read import check_model_uri
from flows.console import esc, out, print_json, quiet_third_party, user_errors

VERDICT_STYLE = {"drift": "bold red", "possible drift": "yellow", "no drift": "green"}


def drift(model_uri: str = typer.Argument(..., help="models:/NAME@champion or models:/NAME/VERSION"),
          data: Path = typer.Option(..., "--data", help="the new inputs: a CSV with a 'text' or 'path' column (no labels needed)"),
          reference: str = typer.Option("train", "--reference", help="the split of the model's training data to compare with"),
          alpha: float = typer.Option(0.01, "--alpha", min=1e-6, max=0.5, help="the MMD test's significance level"),
          auc: float = typer.Option(0.75, "--auc", min=0.5, max=1.0, help="a domain-classifier AUC this high calls the shift sizeable"),
          permutations: int = typer.Option(500, "--permutations", min=20, help="permutations of the MMD test"),
          cache_dir: Path = typer.Option(Path(".tlops/cache"), "--cache-dir", help="the feature cache (a run's features.cache_dir)"),
          log: bool = typer.Option(True, "--log/--no-log", help="log the check as an MLflow run tagged with the model version"),
          json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Check new inputs for drift from a model's training data, in the model's own feature space."""
    from flows.commands.predict import items_from, rows_for
    from tlops.errors import DataError

    quiet_third_party()
    if not model_uri.startswith("models:/"):
        raise DataError(f"{model_uri!r}: drift compares with a registered version's training data; use models:/NAME@ALIAS or "
                        "models:/NAME/VERSION")
    new_items = rows_for((), items_from([], data), data)  # a CSV without a 'text' or 'path' column: one error line
    check_model_uri(tracking_uri, model_uri)
    t0 = time.perf_counter()
    import mlflow
    import numpy as np

    from tasks.audit import verified_model
    from tasks.operate import connect
    from tasks.registry import lineage
    from tlops.cache import FeatureCache
    from tlops.data.dataset import load_dataset
    from tlops.drift import check_drift, prediction_shift
    from tlops.features import cached_features

    reg = connect(tracking_uri)
    mv = reg.resolve_uri(model_uri)
    info = lineage(reg.client, mv)
    data_path = info["data_path"]
    if not data_path or not Path(data_path).is_dir():
        raise DataError(f"{mv.name} v{mv.version}: its training data folder {data_path} is gone; restore it (`dvc checkout`) "
                        "to compare new inputs with it")
    with tempfile.TemporaryDirectory(prefix="tlops-drift-") as tmp:  # loading runs the model's code: check its files first
        model = mlflow.pyfunc.load_model(str(verified_model(reg, model_uri, Path(tmp))))
        predictor = model.unwrap_python_model().predictor
        kind = predictor._task_type
        if kind.feature_level != "item" or kind.input_columns or predictor.few_shot is not None:
            raise DataError(f"{mv.name} v{mv.version} is a {kind.name.replace('_', ' ')}"
                            f"{' few-shot' if predictor.few_shot is not None else ''} model; drift checks models of one pooled "
                            "feature vector per input and a registered head (classification, regression) for now")
        ds = load_dataset(data_path, seed=int(info["seed"] or 0), val_fraction=info["val_fraction"])
        if reference not in ds.splits or ds.splits[reference].empty:
            raise DataError(f"{data_path} has no {reference!r} rows; pass --reference train, val or test")
        new = predictor._inputs(new_items, where=str(data))  # checked and stripped as predict would
        cache = FeatureCache(cache_dir)
        identity = predictor.backbone.identity()
        x_ref, ref_stats = cached_features(predictor.backbone, ds.inputs(reference), cache, identity=identity, label="reference")
        x_new, new_stats = cached_features(predictor.backbone, new, cache, identity=identity, label="new inputs")
        outputs = _outputs(predictor, x_ref), _outputs(predictor, x_new)
        shift = prediction_shift(*outputs, predictor.labels if kind.class_probabilities else None)
        report = check_drift(x_ref, x_new, alpha=alpha, auc_threshold=auc, permutations=permutations, prediction=shift)
    result = {"model_uri": model_uri, "model": mv.name, "version": str(mv.version), "data": str(data),
              "reference": f"{data_path} ({reference})", **report.as_dict(),
              "most_out_of_distribution": [{**r, "input": new[r["row"]]} for r in report.most_out_of_distribution],
              "cache": {"hits": ref_stats.hits + new_stats.hits, "misses": ref_stats.misses + new_stats.misses},
              "seconds": round(time.perf_counter() - t0, 2)}
    if log:
        result["run_id"] = _log_run(mlflow, result, x_ref, x_new)
    if json_out:
        return print_json(result)
    _print(result)


def _outputs(predictor, x) -> "np.ndarray":
    """The registered head's outputs on features: class probabilities, or the numbers in the target's units."""
    import torch

    if predictor._task_type.numeric_target:
        from tlops.modules.heads import predict_values

        return predict_values(predictor.head, x)
    with torch.inference_mode():
        return torch.softmax(predictor.head(torch.from_numpy(x.astype("float32"))), dim=1).numpy()


def _log_run(mlflow, result: dict, x_ref, x_new) -> str:
    """An MLflow run in the model's experiment (its name): the numbers as metrics, the verdict and the model version as
    tags, the report and a plot of the two samples as artifacts. Through a client: `mlflow.set_experiment` would leave
    the process's active experiment on this one (a later `start_run` in the same process then refuses its own run)."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    from tlops.drift import drift_png

    client = MlflowClient()
    exp = client.get_experiment_by_name(result["model"])
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(result["model"])
    run = client.create_run(exp_id, run_name=f"drift {result['model']} v{result['version']}",
                            tags={"tlops.kind": "drift_check", "tlops.drift.verdict": result["verdict"],
                                  "tlops.drift.model": f"{result['model']}/{result['version']}", "tlops.drift.data": result["data"]})
    run_id, now = run.info.run_id, int(time.time() * 1000)
    metrics = {"mmd2": result["mmd2"], "mmd_p_value": result["mmd_p_value"], "domain_auc": result["domain_auc"],
               "reference_rows": result["reference_rows"], "new_rows": result["new_rows"],
               **{k: v for k, v in result["prediction_shift"].items() if isinstance(v, (int, float))}}
    try:
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                         tags=[RunTag("tlops.outcome", "finished")])
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "drift.json").write_text(json.dumps({**result, "run_id": run_id}, indent=1, default=str))
            drift_png(x_ref, x_new, Path(tmp) / "drift.png", title=f"{result['model']} v{result['version']}: {result['verdict']}")
            client.log_artifacts(run_id, tmp)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _print(r: dict) -> None:
    style = VERDICT_STYLE[r["verdict"]]
    out.print(f"[{style}]{r['verdict']}[/{style}]  {esc(r['model_uri'])}: {r['new_rows']} new inputs ({esc(r['data'])}) vs "
              f"{r['reference_rows']} of {esc(r['reference'])}")
    for reason in r["reasons"]:
        out.print(f"  {esc(reason)}")
    s = r["prediction_shift"]
    if s.get("kind") == "classes":
        out.print(f"  predicted classes: total variation {s['total_variation']:.3f}; mean confidence "
                  f"{s['reference_confidence']:.3f} -> {s['new_confidence']:.3f}")
    elif s:
        out.print(f"  predictions: mean {s['reference_mean']:.4g} -> {s['new_mean']:.4g}, std {s['reference_std']:.4g} -> "
                  f"{s['new_std']:.4g}")
    if r["most_out_of_distribution"]:
        t = Table("row", "distance (x typical)", "input", title="new inputs farthest from the training data")
        for o in r["most_out_of_distribution"][:5]:
            t.add_row(str(o["row"] + 1), f"{o['score']:.2f}", esc(str(o["input"])[:70]))
        out.print(t)
    if r.get("run_id"):
        out.print(f"logged as MLflow run {r['run_id']} (tag tlops.drift.model={esc(r['model'])}/{r['version']})")


def register(app: typer.Typer) -> None:
    app.command("drift")(user_errors(drift))
