from __future__ import annotations

import io
import os
import sys
import time
import warnings
from contextlib import contextmanager, redirect_stderr
from importlib import metadata
from pathlib import Path

import mlflow
from prefect import task

import tlops
from tasks.registry import CODE_MANIFEST_ARTIFACT, MANIFEST_ARTIFACT, Registry  # noqa: F401  (re-exported; the audit reads them there)
from tasks.tracking import log_json, run_left_running, setup
from tlops.aliases import CHALLENGER, CHAMPION, challenger_may_move
from tlops.config import RunConfig
from tlops.errors import AliasMoveRefused
from tlops.package import code_manifest, manifest_digest, package_manifest
from tlops.pipeline import package_step
from tlops.promotion import decide
from tlops.records import ChampionScore, FeatureSet, Gate, Registration, TrainResult
from tlops.resolve import open_dataset
from tlops.scoring import score_package
from tlops.task_types import task_type
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")  # logged as code, never imported here
# What the pyfunc needs at load time; pinned to this environment's versions (the audit trail).
MODEL_REQUIREMENTS = ("torch", "transformers", "safetensors", "numpy", "rich", "huggingface_hub", "pyyaml", "pandas")


def pip_requirements() -> list[str]:
    return [f"{p}=={metadata.version(p)}" for p in MODEL_REQUIREMENTS]


@contextmanager
def requirements_pinned_here():
    """`pip_requirements()` pins this environment's own versions, so MLflow's re-check of them against the
    environment cannot find a mismatch, yet it walks every installed distribution's file list (~1.7 s a run)."""
    import mlflow.utils.environment as environment

    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None:  # another MLflow: nothing to skip
        yield
        return
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check


@contextmanager
def example_not_served():
    """MLflow serves a logged model's input example through the model once (`_validate_serving_input`: a full
    package and backbone load, 2-3 s of a warm demo run) and only logs a warning when that fails, so it guards
    nothing; `pyfunc.log_model` has no switch for it (`Model.log`'s `validate_serving_input` does not reach it)."""
    import mlflow.models.utils as utils

    serve = getattr(utils, "_validate_serving_input", None)
    if serve is None:  # another MLflow: nothing to skip
        yield
        return
    utils._validate_serving_input = lambda model_uri, serving_input, **kwargs: None
    try:
        yield
    finally:
        utils._validate_serving_input = serve


def champion_score(cfg: RunConfig, reg: Registry, features: FeatureSet) -> ChampionScore | None:
    """The current champion scored on this run's test split (by the core), or None when there is none.
    This task's part is only fetching the champion's package files from MLflow."""
    version = reg.alias(cfg.registry.model_name, CHAMPION)  # None only when the alias does not exist: errors raise
    if version is None:
        return None
    package_uri = f"models:/{cfg.registry.model_name}/{version}/artifacts/package"

    def fetch(relpath: str) -> Path:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{package_uri}/{relpath}".rstrip("/")))

    return score_package(version, fetch, features, open_dataset(cfg), cfg.registry.metric)


# Fault injection for the concurrency tests: sleep this long between scoring the champion and moving it,
# so overlapping runs really race for the alias.
GATE_DELAY_ENV = "TLOPS_FAULT_GATE_DELAY_S"
MAX_GATE_ATTEMPTS = 5  # champion re-scored and the gate re-decided when another run moved it in between


def _made_by(source: str) -> str:
    """What started the run, for the alias history: a schedule, a data trigger, or `tlops run CONFIG`."""
    return source if source.startswith(("schedule:", "trigger:")) else f"tlops run {source}"


def input_example(cfg: RunConfig) -> list[str] | None:
    """Two training texts as the model's input example: MLflow stores it with a serving-format copy (what a
    `mlflow models serve` request looks like; the MLflow UI shows both). MLflow would also serve it through the
    model at logging (see `example_not_served`). Image and audio models take file paths,
    which mean nothing on another machine: no example (the signature says "strings: file paths")."""
    ds = open_dataset(cfg)
    return ds.inputs("train")[:2] if ds.modality == "text" else None


def model_signature(columns: tuple[str, ...] = (), params: tuple = ()):
    """Raw inputs (strings: texts or file paths) in; the `proba` param asks for class probabilities; `support`
    (a JSON list of labelled rows, "" for none) adapts a meta-transfer model to new classes (tasks/pyfunc_model.py).
    The input column is declared `Any`, not `string`: MLflow's server casts a request's values to the declared type
    before the model sees them, and a string column turned `1` and `null` into the texts "1" and "None", labelled like
    any other; as sent, the pyfunc refuses what is not a string (issue 25). `columns`: the named fields of one input
    row, for a task type whose input is not one raw value (extractive QA: question, context), each declared `Any` too.
    `params`: the task type's own pyfunc params, (name, type, default) each (`TaskType.pyfunc_params`)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec(AnyType(), c) for c in columns] if columns else [ColSpec(AnyType())]),
                          params=ParamSchema([ParamSpec("proba", "boolean", False), ParamSpec("support", "string", ""),
                                              *(ParamSpec(n, t, d) for n, t, d in params)]))


def advance_challenger(reg: Registry, name: str, version: str, run_id: str, source: str) -> None:
    """`challenger` = the newest version that passed its gates: moved forward only, compare-and-set."""
    for _ in range(MAX_GATE_ATTEMPTS):
        current = reg.alias(name, CHALLENGER)
        if not challenger_may_move(current, version):
            return
        try:
            reg.move(name, CHALLENGER, version, expected=current, kind="gate", reason=f"v{version} registered and passed validation",
                     source_run=run_id, command=_made_by(source))
            return
        except AliasMoveRefused:
            continue  # another run moved it meanwhile: look again


def logged_code_manifest(model_uri: str, dst: Path) -> dict[str, str]:
    """`code_manifest` of a logged model, from the files as stored: everything but `artifacts/` is fetched (a few small
    files; the package, the bulk, was hashed before logging)."""
    for entry in mlflow.artifacts.list_artifacts(artifact_uri=model_uri):
        if entry.path.split("/")[-1] != "artifacts":
            mlflow.artifacts.download_artifacts(artifact_uri=f"{model_uri}/{entry.path.split('/')[-1]}", dst_path=str(dst))
    return code_manifest(dst)


REGISTRY_NOTICES = ("Successfully registered model ", "Created version ", "Registered model ")  # MLflow's own prints; tlops's summary says them


@contextmanager
def registry_notices_dropped():
    """MLflow prints its registration notices to stderr itself (no logger to quiet); everything else written to
    stderr meanwhile (warnings, errors) still reaches it, after the block."""
    buf = io.StringIO()
    try:
        with redirect_stderr(buf):
            yield
    finally:
        sys.stderr.write("".join(line for line in buf.getvalue().splitlines(keepends=True) if not line.startswith(REGISTRY_NOTICES)))


@task(name="register")
def register_task(cfg: RunConfig, run_id: str, features: FeatureSet, result: TrainResult, metrics: dict[str, float],
                  out_dir: str, source: str = "(api)") -> Registration:
    """Log the pyfunc model, register it as `challenger`, and move `champion` only if the gate passes. Both
    moves are compare-and-set: when another run moved `champion` between scoring and moving, the new
    champion is scored and the gate decides again, so the champion is always the best that passed."""
    client, _ = setup(cfg)
    reg = Registry(client)
    name = cfg.registry.model_name
    package = package_step(cfg, features, result, Path(out_dir))
    manifest = package_manifest(package)  # what `tlops audit` checks the registered files against
    log_json(client, run_id, manifest, MANIFEST_ARTIFACT)
    champ = champion_score(cfg, reg, features)  # scored before registering: never compared with itself
    with (run_left_running(run_id), warnings.catch_warnings(), requirements_pinned_here(), example_not_served(),
          registry_notices_dropped()):
        warnings.filterwarnings("ignore", message=".*input example.*")
        info = mlflow.pyfunc.log_model(
            input_example=input_example(cfg),
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={"package": str(package)},
            code_paths=[str(Path(tlops.__file__).parent)],
            pip_requirements=pip_requirements(),
            signature=model_signature(task_type(features.task).input_columns, task_type(features.task).pyfunc_params),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    code = logged_code_manifest(f"models:/{name}/{version}", Path(out_dir) / "logged-code")
    log_json(client, run_id, code, CODE_MANIFEST_ARTIFACT)
    client.set_model_version_tag(name, version, "tlops.run_id", run_id)
    client.set_model_version_tag(name, version, "tlops.package_sha256", manifest_digest(manifest))
    client.set_model_version_tag(name, version, "tlops.code_sha256", manifest_digest(code))
    advance_challenger(reg, name, version, run_id, source)
    time.sleep(float(os.environ.get(GATE_DELAY_ENV, "0") or 0))
    challenger = metrics[cfg.registry.metric]
    for _ in range(MAX_GATE_ATTEMPTS):
        decision = decide(cfg.registry.metric, challenger, champ.value if champ else None, cfg.registry.margin)
        gate = Gate(promoted=decision.promote, reason=decision.reason, metric=cfg.registry.metric, challenger=challenger,
                    champion_version=champ.version if champ else None, champion_metric=champ.value if champ else None,
                    champion_scored_via=champ.scored_via if champ else "", margin=cfg.registry.margin, version=version)
        if not decision.promote:
            break
        try:
            reg.move(name, CHAMPION, version, expected=champ.version if champ else None, kind="gate", reason=decision.reason,
                     source_run=run_id, gate=gate, command=_made_by(source))
            break
        except AliasMoveRefused:
            champ = champion_score(cfg, reg, features)  # someone else's champion now: score it and decide again
    else:
        gate = gate.model_copy(update={"promoted": False, "reason": f"{gate.reason}; not applied: the champion kept moving "
                                                                    f"({MAX_GATE_ATTEMPTS} attempts), see `tlops history {name}`"})
    log_json(client, run_id, gate.model_dump(mode="json"), "registry/promotion.json")
    client.set_tag(run_id, "tlops.promotion", gate.reason)
    if champ is not None:
        client.log_metric(run_id, f"champion_test_{cfg.registry.metric}", champ.value)
    aliases = reg.aliases_of(name, version)  # as they are after the moves, not as this run hoped
    return Registration(model_name=name, version=version, aliases=aliases, gate=gate, model_uri=info.model_uri)
