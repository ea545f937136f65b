"""`tlops audit`: reproduce a registered version from its lineage and say, with evidence, whether it is the
same model. The MLflow side (lineage, the registered files, the report run, the version's audit tag); the
checks and the verdict come from the core (`tlops.audit`, `tlops.reproduce`, `tlops.data.versions`)."""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from tasks.registry import CODE_MANIFEST_ARTIFACT, MANIFEST_ARTIFACT, Registry, _artifact_location
from tasks.tracking import INCOMPLETE_TAG, REPO_ROOT, log_json
from tlops.errors import RegistryError
from tlops.audit import AuditReport, Check, compare, to_markdown, tolerances_for
from tlops.data import load_dataset
from tlops.data.dataset import dataset_content_md5
from tlops.data_version import recorded_data_version, short_data_version
from tlops.data.versions import dir_md5, has_version, restore_version
from tlops.package import code_manifest, drop_bytecode, manifest_digest, package_manifest
from tlops.reproduce import NotReproducible, checkout, rerun

AUDIT_EXPERIMENT = "tlops-audits"


def _run_artifact(run_id: str, path: str, dst: Path) -> Path | None:
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst)))
    except (MlflowException, OSError):
        return None


def _lineage(run, tmp: Path) -> tuple[Check, dict | None]:
    t = run.data.tags
    cfg_file = _run_artifact(run.info.run_id, "config.yaml", tmp / "lineage")
    identity = _run_artifact(run.info.run_id, "backbone/identity.json", tmp / "lineage")
    provenance = _run_artifact(run.info.run_id, "provenance.json", tmp / "lineage")
    evidence = {"git_commit": t.get("git.commit"), "git_dirty": t.get("git.dirty"), "data_path": run.data.params.get("data.path"),
                "data_version_md5": t.get("data.version_md5"), "data_dataset_md5": t.get("data.dataset_md5"),
                "data_dvc_md5": t.get("data.dvc_md5"), "data_version_store": t.get("data.version_store"), "seed": t.get("tlops.seed"),
                "backbone_identity": json.loads(identity.read_text()) if identity else None,
                "packages": json.loads(provenance.read_text())["packages"] if provenance else None}
    if cfg_file is None:
        return Check(name="lineage", passed=False, detail="the run has no config.yaml: it was not made by `tlops run`", evidence=evidence), None
    cfg = yaml.safe_load(cfg_file.read_text())
    evidence["config"] = cfg
    evidence["run_status"] = run.info.status
    if run.info.status != "FINISHED":  # as `tlops promote` refuses it: a failed or killed run's model was never gated
        return Check(name="lineage", passed=False, detail=f"its run {run.info.run_id} is {run.info.status}, not FINISHED: the model "
                     "did not come out of a completed run (training, evaluation or registration did not finish)",
                     evidence=evidence), cfg
    return Check(name="lineage", passed=True, detail=f"commit {str(evidence['git_commit'])[:10]}, data {short_data_version(recorded_data_version(t))}, "
                 f"seed {evidence['seed']}", evidence=evidence), cfg


def package_check(client, run_id: str, package: Path, tmp: Path, version_tag: str | None, registered: bool = True) -> Check:
    """A downloaded package's files against the sha256 manifest its run recorded, and that manifest against the
    registered version's `tlops.package_sha256` tag (so the manifest itself cannot be swapped)."""
    actual = package_manifest(package) if package.is_dir() else {}
    recorded_file = _run_artifact(run_id, MANIFEST_ARTIFACT, tmp / "lineage")
    if registered and version_tag is None and recorded_file is not None:
        return Check(name="integrity", passed=False, detail="its registration did not finish: the run recorded a package manifest, but "
                     "the version has no tlops.package_sha256 tag (the run was killed or failed while registering it), so its files "
                     "cannot be checked; train and register it again with `tlops run`", evidence={"files": actual})
    if recorded_file is None or (registered and version_tag is None):
        return Check(name="integrity", passed=False, detail="no package manifest was recorded for this version (registered before "
                     "tlops recorded one), so its files cannot be checked", evidence={"files": actual})
    recorded = json.loads(recorded_file.read_text())
    bad = sorted(f for f in set(recorded) | set(actual) if recorded.get(f) != actual.get(f))
    if registered and manifest_digest(recorded) != version_tag:
        return Check(name="integrity", passed=False, detail="the recorded manifest does not match the version's tlops.package_sha256 tag "
                     "(the manifest itself was altered)", evidence={"tag": version_tag})
    if bad:
        return Check(name="integrity", passed=False, detail=f"registered files differ from what the run recorded: {', '.join(bad)}",
                     evidence={f: {"recorded": recorded.get(f), "registered": actual.get(f)} for f in bad})
    return Check(name="integrity", passed=True, detail=f"{len(actual)} registered files match the recorded sha256", evidence={"files": actual})


def code_check(actual: dict[str, str], version_tag: str | None, run_id: str, tmp: Path) -> Check:
    """A downloaded model's code files (MLmodel, the pyfunc file, the bundled tlops code) against the manifest
    recorded at registration and the version's `tlops.code_sha256` tag. Versions registered before tlops recorded
    it pass on the package check alone, and say so."""

    if version_tag is None:
        if _run_artifact(run_id, CODE_MANIFEST_ARTIFACT, tmp / "code-lineage") is not None:  # recorded, then killed before the tag
            return Check(name="integrity", passed=False, detail="its registration did not finish: the run recorded the model's code "
                         "manifest, but the version has no tlops.code_sha256 tag (the run was killed or failed while registering it), "
                         "so its code files cannot be checked; train and register it again with `tlops run`", evidence={"files": actual})
        return Check(name="integrity", passed=True, detail="package files match; the model's code files were not recorded at "
                     "registration (an older version), so they are not checked", evidence={"files": actual})
    if manifest_digest(actual) == version_tag:
        return Check(name="integrity", passed=True, detail=f"{len(actual)} code files match the recorded sha256", evidence={"files": actual})
    recorded_file = _run_artifact(run_id, CODE_MANIFEST_ARTIFACT, tmp / "code-lineage")
    recorded = json.loads(recorded_file.read_text()) if recorded_file else {}
    bad = sorted(f for f in set(recorded) | set(actual) if recorded.get(f) != actual.get(f)) or ["(the recorded code manifest)"]
    return Check(name="integrity", passed=False, detail=f"the model's code files differ from what was registered: {', '.join(bad[:5])}",
                 evidence={f: {"recorded": recorded.get(f), "registered": actual.get(f)} for f in bad})


def _integrity(reg: Registry, name: str, version: str, run_id: str, tmp: Path) -> tuple[Check, Path]:
    """The registered version's package AND code files (MLmodel, the pyfunc file, the bundled tlops code,
    requirements) against what registration recorded: the same check `verified_model` makes before loading."""
    mv = reg.client.get_model_version(name, version)
    check, local = model_files_check(reg, f"models:/{name}/{version}", run_id, mv.tags, True, tmp)
    return check, local / _package_path(local)


def _package_path(model_dir: Path) -> str:
    """Where the logged model keeps its package: MLmodel's `artifacts.package.path` (MLflow names the folder after
    the one that was logged: `artifacts/package` from the pipeline)."""
    try:
        meta = yaml.safe_load((model_dir / "MLmodel").read_text())
        return meta["flavors"]["python_function"]["artifacts"]["package"]["path"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return "artifacts/package"


RUN_ID = re.compile(r"[0-9a-f]{32}")


def model_files_check(reg: Registry, source: str, run_id: str, tags: dict, registered: bool, dst: Path) -> tuple[Check, Path]:
    """Download the model at `source` and check every file of it: the package against the manifest its run recorded
    (itself pinned by the version's `tlops.package_sha256` tag), then the code files against `tlops.code_sha256`.
    One check, passed only when both hold; returns it with the local copy (the checked files)."""
    if tags.get(INCOMPLETE_TAG) == "true":  # tagged by the run that found its registering run killed or failed
        return Check(name="integrity", passed=False, detail=f"its registration did not finish (its run {run_id} ended before it did); "
                     "train and register it again with `tlops run`"), dst
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst / "model")))
    bytecode = drop_bytecode(local)
    package = package_check(reg.client, run_id, local / _package_path(local), dst, tags.get("tlops.package_sha256"), registered=registered)
    if not package.passed:
        return package, local
    code = code_check(code_manifest(local), tags.get("tlops.code_sha256"), run_id, dst)
    if not code.passed or tags.get("tlops.code_sha256") is None:
        return code, local
    pkg_files, code_files = package.evidence["files"], code.evidence["files"]
    dropped = (f"; {len(bytecode)} compiled __pycache__ file(s) beside them in the store (written when `mlflow.pyfunc.load_model` "
               "or `mlflow models serve` ran the model's code in place) were left out of the checked copy, so Python compiles "
               "the checked sources") if bytecode else ""
    return Check(name="integrity", passed=True, detail=f"{len(pkg_files)} package files and {len(code_files)} code files match the "
                 f"sha256 recorded at registration{dropped}", evidence={"files": pkg_files, "code_files": code_files,
                                                                         "bytecode_left_out": bytecode}), local


def _version_of_run(reg: Registry, model_uri: str):
    """runs:/RUN_ID/PATH -> the registered version made from that run, whose tags pin the files' sha256. A run's own
    artifacts cannot vouch for themselves (whoever can rewrite the model can rewrite a manifest next to it), so a
    run with no registered version is refused."""
    run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
    if not RUN_ID.fullmatch(run_id) or not path:
        raise RegistryError(f"{model_uri!r}: expected runs:/RUN_ID/model (a 32-character hex run id)")
    made = [v for v in reg.client.search_model_versions(f"run_id='{run_id}'") if v.tags.get("tlops.package_sha256")]
    if not made:
        raise RegistryError(f"refusing to load {model_uri}: no registered version was made from run {run_id}, so nothing "
                            "outside the run's own (rewritable) artifacts records its files' sha256; load a registered "
                            "version instead (models:/NAME/VERSION; `tlops models NAME` lists each version's run)")
    return max(made, key=lambda v: int(v.version))


def verified_model(reg: Registry, model_uri: str, dst: Path) -> Path:
    """Download a model and check its package and code files against the sha256 recorded at registration BEFORE
    anything loads it: loading an MLflow pyfunc model runs code. Every URI form goes through the same check:
    models:/NAME@ALIAS and models:/NAME/VERSION against that version's tags, runs:/RUN/model against the tags of
    the version registered from that run. Returns the local copy to load (the checked files, not a new download);
    a model that fails the check is refused with the files that differ."""
    if model_uri.startswith("models:/"):
        mv = reg.resolve_uri(model_uri)  # a clear error for an unknown model, version or alias
        source = f"models:/{mv.name}/{mv.version}"
    elif model_uri.startswith("runs:/"):
        mv, source = _version_of_run(reg, model_uri), model_uri
    else:
        raise RegistryError(f"{model_uri!r}: use models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model; "
                            "tlops loads only models whose files it can check against their recorded sha256")
    label = f"{mv.name} v{mv.version}" + (f" (as {model_uri})" if source != f"models:/{mv.name}/{mv.version}" else "")
    check, local = model_files_check(reg, source, mv.run_id, mv.tags, True, dst)
    if not check.passed:
        raise RegistryError(f"refusing to load {label}: {check.detail}. Loading a model runs its code, so tlops loads only "
                            f"files that match the sha256 manifest recorded at registration; re-register it from a trusted run, "
                            f"and `tlops audit models:/{mv.name}/{mv.version}` for the evidence")
    return local


def _code(lineage: dict) -> Check:
    commit, dirty = lineage["git_commit"], lineage["git_dirty"]
    if not commit or commit == "none":
        return Check(name="code", passed=False, detail="not reproducible: the run recorded no git commit (trained outside a git checkout)")
    if dirty == "True":
        return Check(name="code", passed=False, detail=f"not reproducible: trained from a dirty working tree (uncommitted changes on top "
                     f"of {commit[:10]}), so the code that made it is in no commit", evidence={"commit": commit})
    return Check(name="code", passed=True, detail=f"commit {commit[:10]} (clean tree)", evidence={"commit": commit})


def _data(lineage: dict, tmp: Path) -> tuple[Check, Path | None]:
    """The data at the recorded path when its content still matches, else the recorded version from the DVC cache."""
    path, version, content = lineage["data_path"], lineage["data_version_md5"], lineage["data_dataset_md5"]
    folder = Path(path) if path else None
    if folder is not None and folder.is_dir():
        if version and version != "none" and dir_md5(folder) == version:
            return Check(name="data", passed=True, detail=f"{folder} still holds data version {short_data_version(version)}"), folder
        if (not version or version == "none") and content and dataset_content_md5(folder) == content:
            return Check(name="data", passed=True, detail=f"{folder} still holds data version {short_data_version(content)}"), folder
    recorded_store = lineage.get("data_version_store")
    store = (recorded_store if recorded_store not in (None, "none") else None) or lineage["config"].get("data", {}).get("dvc_cache") \
        or (str(REPO_ROOT / ".dvc" / "cache") if (REPO_ROOT / ".dvc").is_dir() else None)
    if version and version != "none" and store and has_version(version, Path(store)):
        restored = restore_version(version, Path(store), tmp / "data")
        return Check(name="data", passed=True, detail=f"{folder} changed or is gone; data version {short_data_version(version)} restored from the DVC cache {store}",
                     evidence={"restored_to": str(restored)}), restored
    why = "changed" if folder is not None and folder.is_dir() else "is gone"
    return Check(name="data", passed=False, detail=f"not reproducible: {path} {why} and data version {short_data_version(version) if version else '(not recorded)'} is not in "
                 f"the DVC cache {store or '(none)'}; `dvc pull` it or point data.dvc_cache at the cache it was stored in"), None


def _log(reg: Registry, report: AuditReport, name: str, version: str) -> str:
    client = reg.client
    exp = client.get_experiment_by_name(AUDIT_EXPERIMENT)
    exp_id = exp.experiment_id if exp else None
    if exp_id is None:
        try:
            exp_id = client.create_experiment(AUDIT_EXPERIMENT, artifact_location=_artifact_location(client))
        except MlflowException:
            exp_id = client.get_experiment_by_name(AUDIT_EXPERIMENT).experiment_id
    verdict = "passed" if report.passed else "failed"
    run = client.create_run(exp_id, tags={"mlflow.runName": f"audit {name} v{version}: {verdict}", "tlops.audit.model": name,
                                          "tlops.audit.version": version, "tlops.audit.of_run": report.run_id, "tlops.audit": verdict})
    run_id = run.info.run_id
    log_json(client, run_id, report.model_dump(mode="json"), "audit/report.json")
    with tempfile.TemporaryDirectory() as d:
        md = Path(d) / "report.md"
        md.write_text(to_markdown(report))
        client.log_artifact(run_id, str(md), "audit")
    for k, v in {"audit_wall_s": report.wall_s, "agreement": report.agreement}.items():
        if v is not None:
            client.log_metric(run_id, k, v)
    client.set_terminated(run_id, "FINISHED")
    client.set_model_version_tag(name, version, "tlops.audit", verdict)
    client.set_model_version_tag(name, version, "tlops.audit.date", report.audited_at)
    client.set_model_version_tag(name, version, "tlops.audit.run", run_id)
    return run_id


def audit(reg: Registry, model_uri: str, use_cache: bool = False, repo: Path | None = None) -> tuple[AuditReport, str]:
    """Audit one registered version; returns the report and the id of the MLflow run that holds it."""
    t0 = time.perf_counter()
    mv = reg.resolve_uri(model_uri)
    name, version = mv.name, str(mv.version)
    run = reg.client.get_run(mv.run_id)
    strategy = run.data.tags.get("tlops.strategy", "?")
    tol = tolerances_for(strategy)
    recorded = {k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k in ("test_accuracy", "test_macro_f1")}
    checks: list[Check] = []
    extra: dict = {}
    with tempfile.TemporaryDirectory(prefix="tlops-audit-") as tmp:
        tmp = Path(tmp)
        lineage_check, cfg = _lineage(run, tmp)
        checks.append(lineage_check)
        integrity, registered = _integrity(reg, name, version, run.info.run_id, tmp)
        checks.append(integrity)
        checks.append(_code(lineage_check.evidence | {"config": cfg or {}}))
        data_check, data_dir = _data(lineage_check.evidence | {"config": cfg or {}}, tmp) if cfg else (Check(name="data", passed=None, detail="no config"), None)
        checks.append(data_check)
        reproduced: dict = {}
        if all(c.passed for c in checks):
            try:
                with checkout(repo or REPO_ROOT, lineage_check.evidence["git_commit"]) as code:
                    cfg["data"]["path"] = str(data_dir)
                    cfg["execution"].update(work_dir=str(tmp / "work"), train_pool=None)
                    if not use_cache:
                        cfg["features"]["cache_dir"] = str(tmp / "feature-cache")  # features recomputed from the data
                    out = rerun(code, cfg, tmp / "rerun")
                checks.append(Check(name="re-run", passed=True, detail=f"pipeline re-run at {lineage_check.evidence['git_commit'][:10]} in an "
                                    f"isolated folder ({'feature cache reused' if use_cache else 'features recomputed'}); nothing registered"))
                reproduced = out["metrics"]
                ds = load_dataset(data_dir, seed=cfg["seed"], val_fraction=cfg["data"]["val_fraction"])
                same, extra = compare(registered, Path(out["package"]), ds.inputs("test"), recorded, reproduced, tol)
                checks.append(same)
            except NotReproducible as e:
                checks.append(Check(name="re-run", passed=False, detail=str(e)))
        else:
            checks.append(Check(name="re-run", passed=None, detail="skipped: an earlier check failed"))
    report = AuditReport(model=name, version=version, run_id=run.info.run_id, strategy=strategy, passed=all(c.passed for c in checks),
                         checks=checks, tolerances=tol, recorded_metrics=recorded, reproduced_metrics=reproduced,
                         agreement=extra.get("agreement"), max_weight_diff=extra.get("max_weight_diff", {}),
                         bit_identical=extra.get("bit_identical"), wall_s=time.perf_counter() - t0,
                         original_wall_s=(run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None,
                         audited_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return report, _log(reg, report, name, version)


__all__ = ["AUDIT_EXPERIMENT", "audit", "model_files_check", "package_check", "verified_model"]
