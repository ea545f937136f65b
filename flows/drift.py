"""A drift check of a registered model against new inputs: what `tlops drift` prints and what the scheduled drift check
(`flows/drift_flow.py`, `tlops schedule drift`) announces. No Prefect here (the command does not pay for its import).

`check` embeds the new inputs and the version's training split with the model's own backbone (through the feature
cache: the training features a run cached are hits), compares them (`tlops.drift.check_drift`) with the model's
predicted-class mix and confidence on each; `log_run` records the check as an MLflow run in the model's experiment,
tagged with the model version."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def check(model_uri: str, data: Path, tracking_uri: str | None = None, reference: str = "train", alpha: float = 0.01,
          auc: float = 0.75, permutations: int = 500, cache_dir: Path = Path(".tlops/cache")) -> tuple[dict, np.ndarray, np.ndarray]:
    """(the result `tlops drift --json` prints, the reference features, the new inputs' features)."""
    from flows.commands._registry_read import check_model_uri
    from flows.commands.predict import items_from, rows_for
    from tlops.errors import DataError

    if not model_uri.startswith("models:/"):
        raise DataError(f"{model_uri!r}: drift compares with a registered version's training data; use models:/NAME@ALIAS or "
                        "models:/NAME/VERSION")
    data = Path(data)
    new_items = rows_for((), items_from([], data), data)  # a CSV without a 'text' or 'path' column: one error line
    check_model_uri(tracking_uri, model_uri)
    t0 = time.perf_counter()
    import mlflow

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
              "data_md5": hashlib.md5(data.read_bytes()).hexdigest(),
              "reference": f"{data_path} ({reference})", **report.as_dict(),
              "most_out_of_distribution": [{**r, "input": new[r["row"]]} for r in report.most_out_of_distribution],
              "cache": {"hits": ref_stats.hits + new_stats.hits, "misses": ref_stats.misses + new_stats.misses},
              "seconds": round(time.perf_counter() - t0, 2)}
    return result, x_ref, x_new


def _outputs(predictor, x) -> np.ndarray:
    """The registered head's outputs on features: class probabilities, or the numbers in the target's units."""
    import torch

    if predictor._task_type.numeric_target:
        from tlops.modules.heads import predict_values

        return predict_values(predictor.head, x)
    with torch.inference_mode():
        return torch.softmax(predictor.head(torch.from_numpy(x.astype("float32"))), dim=1).numpy()


def log_run(result: dict, x_ref, x_new, tags: dict[str, str] | None = None) -> str:
    """An MLflow run in the model's experiment (its name) on the tracking URI `check` connected to: the numbers as
    metrics, the verdict, the model version and `tags` as tags, the report and a plot of the two samples as artifacts.
    Through a client: `mlflow.set_experiment` would leave the process's active experiment on this one (a later
    `start_run` in the same process then refuses its own run)."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    from tlops.drift import drift_png

    client = MlflowClient()
    exp = client.get_experiment_by_name(result["model"])
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(result["model"])
    run = client.create_run(exp_id, run_name=f"drift {result['model']} v{result['version']}",
                            tags={"tlops.kind": "drift_check", "tlops.drift.verdict": result["verdict"],
                                  "tlops.drift.model": f"{result['model']}/{result['version']}", "tlops.drift.data": result["data"],
                                  **(tags or {})})
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
