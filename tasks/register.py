from __future__ import annotations

from importlib import metadata
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from prefect import task

import tlops
from tasks.tracking import log_json, setup
from tlops.config import RunConfig
from tlops.pipeline import package_step
from tlops.promotion import decide
from tlops.records import ChampionScore, FeatureSet, Gate, Registration, TrainResult
from tlops.resolve import open_dataset
from tlops.scoring import score_package

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")  # logged as code, never imported here
# What the pyfunc needs at load time; pinned to this environment's versions (the audit trail).
MODEL_REQUIREMENTS = ("torch", "transformers", "safetensors", "numpy", "rich", "huggingface_hub", "pyyaml", "pandas")


def pip_requirements() -> list[str]:
    return [f"{p}=={metadata.version(p)}" for p in MODEL_REQUIREMENTS]


def champion_score(cfg: RunConfig, client, features: FeatureSet) -> ChampionScore | None:
    """The current champion scored on this run's test split (by the core), or None when there is none.
    This task's part is only fetching the champion's package files from MLflow."""
    try:
        mv = client.get_model_version_by_alias(cfg.registry.model_name, "champion")
    except MlflowException:
        return None
    package_uri = f"models:/{cfg.registry.model_name}/{mv.version}/artifacts/package"

    def fetch(relpath: str) -> Path:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{package_uri}/{relpath}".rstrip("/")))

    return score_package(str(mv.version), fetch, features, open_dataset(cfg), cfg.registry.metric)


@task(name="register")
def register_task(cfg: RunConfig, run_id: str, features: FeatureSet, result: TrainResult, metrics: dict[str, float],
                  out_dir: str) -> Registration:
    """Log the pyfunc model, register it as `challenger`, and move `champion` only if the gate passes."""
    client, _ = setup(cfg)
    name = cfg.registry.model_name
    package = package_step(cfg, features, result, Path(out_dir))
    champ = champion_score(cfg, client, features)  # scored before registering: never compared with itself
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={"package": str(package)},
            code_paths=[str(Path(tlops.__file__).parent)],
            pip_requirements=pip_requirements(),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, "challenger", version)
    challenger = metrics[cfg.registry.metric]
    decision = decide(cfg.registry.metric, challenger, champ.value if champ else None, cfg.registry.margin)
    if decision.promote:
        client.set_registered_model_alias(name, "champion", version)
    gate = Gate(promoted=decision.promote, reason=decision.reason, metric=cfg.registry.metric, challenger=challenger,
                champion_version=champ.version if champ else None, champion_metric=champ.value if champ else None,
                champion_scored_via=champ.scored_via if champ else "", margin=cfg.registry.margin, version=version)
    log_json(client, run_id, gate.model_dump(mode="json"), "registry/promotion.json")
    client.set_tag(run_id, "tlops.promotion", decision.reason)
    client.set_model_version_tag(name, version, "tlops.run_id", run_id)
    if champ is not None:
        client.log_metric(run_id, f"champion_test_{cfg.registry.metric}", champ.value)
    aliases = sorted(client.get_model_version(name, version).aliases)
    return Registration(model_name=name, version=version, aliases=aliases, gate=gate, model_uri=info.model_uri)
