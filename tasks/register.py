from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from prefect import task

import tlops
from tasks.tracking import log_json, setup
from tlops.config import RunConfig
from tlops.data import load_dataset
from tlops.evaluate import classification_metrics
from tlops.package import META_FILE
from tlops.pipeline import load_head, package_step
from tlops.promotion import decide

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")  # logged as code, never imported here
# What the pyfunc needs at load time; pinned to this environment's versions (the audit trail).
MODEL_REQUIREMENTS = ("torch", "transformers", "safetensors", "numpy", "rich", "huggingface_hub", "pyyaml", "pandas")


def pip_requirements() -> list[str]:
    return [f"{p}=={metadata.version(p)}" for p in MODEL_REQUIREMENTS]


def champion_score(cfg: RunConfig, client, features_dir: Path, identity: dict) -> tuple[str | None, float | None, str]:
    """(version, metric, how) of the current champion scored on this run's test split, or (None, None, "")."""
    name = cfg.registry.model_name
    try:
        mv = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None, None, ""
    ds = load_dataset(cfg.data.path, seed=cfg.seed, val_fraction=cfg.data.val_fraction)
    y_true = ds.splits["test"]["label"].tolist()
    uri = f"models:/{name}/{mv.version}"
    meta = json.loads(Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/artifacts/package/{META_FILE}")).read_text())
    if meta["backbone"]["identity"] == identity:
        # Same weights and preprocessing as this run: its features are this run's cached test features.
        head_file = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/artifacts/package/head.safetensors")
        head = load_head({"spec": meta["head"], "head_path": head_file})
        with np.load(features_dir / "test.npz") as z, torch.inference_mode():
            pred = [meta["labels"][i] for i in head(torch.from_numpy(z["x"])).argmax(1).numpy()]
        how = "champion head on this run's cached test features (same backbone identity)"
    else:
        pred = [str(p) for p in mlflow.pyfunc.load_model(uri).predict(ds.inputs("test"))]
        how = "champion pyfunc on raw test inputs (different backbone)"
    metrics = classification_metrics(y_true, pred, ds.labels)
    return str(mv.version), metrics[cfg.registry.metric], how


@task(name="register")
def register_task(cfg: RunConfig, run_id: str, features_dir: str, head: dict, metrics: dict, out_dir: str) -> dict:
    """Log the pyfunc model, register it as `challenger`, and move `champion` only if the gate passes."""
    client, _ = setup(cfg)
    name = cfg.registry.model_name
    package = package_step(cfg, Path(features_dir), head, Path(out_dir))
    identity = json.loads((Path(features_dir) / "features.json").read_text())["identity"]
    # scored before registering, so the new version is never compared with itself
    champ_version, champ_metric, scored_via = champion_score(cfg, client, Path(features_dir), identity)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={"package": package},
            code_paths=[str(Path(tlops.__file__).parent)],
            pip_requirements=pip_requirements(),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, "challenger", version)
    challenger = metrics[cfg.registry.metric]
    decision = decide(cfg.registry.metric, challenger, champ_metric, cfg.registry.margin)
    if decision.promote:
        client.set_registered_model_alias(name, "champion", version)
    gate = {"promoted": decision.promote, "reason": decision.reason, "metric": cfg.registry.metric,
            "challenger": challenger, "champion_version": champ_version, "champion_metric": champ_metric, "champion_scored_via": scored_via,
            "margin": cfg.registry.margin, "version": version}
    log_json(client, run_id, gate, "registry/promotion.json")
    client.set_tag(run_id, "tlops.promotion", decision.reason)
    client.set_model_version_tag(name, version, "tlops.run_id", run_id)
    if champ_metric is not None:
        client.log_metric(run_id, f"champion_test_{cfg.registry.metric}", champ_metric)
    aliases = sorted(client.get_model_version(name, version).aliases)
    return {"model_name": name, "version": version, "aliases": aliases, "gate": gate, "model_uri": info.model_uri}
