"""A registered model whose code files were altered after registration is refused everywhere it is checked: `tlops
audit` fails its integrity check (and tags the version failed), and `tlops predict`/`evaluate` refuse it before
MLflow loads (runs) anything, by every URI form they accept (issue 25: the audit checked only the package files, and
runs:/ URIs were not checked at all). Model trained here (its files are tampered with), on the tiny random-weight
BERT fixture."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tests.helpers import flow_run, tiny_config
from tests.zoo import mlflow_uris_kept

NAME = "tamper-target"


def _append_marker(marker: Path):
    return lambda f: f.write_text(f.read_text() + f"\nopen({str(marker)!r}, 'w').write('tampered code ran')\n")


def _flip_streamable(f: Path) -> None:
    meta = yaml.safe_load(f.read_text())
    meta["flavors"]["python_function"]["streamable"] = not meta["flavors"]["python_function"].get("streamable", False)
    f.write_text(yaml.safe_dump(meta))


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_bert):
    from tests.helpers import make_text_dataset

    tmp = tmp_path_factory.mktemp("tamper")
    data = make_text_dataset(tmp / "data")
    cfg = tiny_config(tmp, data, tiny_bert, registry__model_name=NAME)
    with mlflow_uris_kept():  # a module fixture runs outside the per-test restore: leave no process-wide store behind
        r = flow_run(cfg)
    model_dirs = {p.parent for p in (tmp / "mlruns").rglob("MLmodel")}
    assert len(model_dirs) == 1, model_dirs  # the logged model's own files, which every URI form reads
    return cfg["tracking"]["uri"], next(iter(model_dirs)), r.run_id, data


CASES = {  # (file under the logged model, how it is altered) as the hostile probe did
    "pyfunc_model.py": "append",
    "MLmodel": "streamable",
    "requirements.txt": "requirement",
    "code/tlops/package.py": "append",
    "pyfunc_model.py ": "delete",
}


@pytest.mark.parametrize("case", list(CASES))
def test_altered_code_files_fail_the_audit_and_are_refused_by_every_uri_form(case, registered, tmp_path):
    uri, model_dir, run_id, data = registered
    rel, how = case.strip(), CASES[case]
    target = model_dir / rel
    saved = tmp_path / "saved"
    shutil.copy2(target, saved)
    marker = tmp_path / "marker"
    target.chmod(0o644)
    try:
        if how == "append":
            _append_marker(marker)(target)
        elif how == "streamable":
            _flip_streamable(target)
        elif how == "requirement":
            target.write_text(target.read_text() + "evil-package==6.6.6\n")
        else:
            target.unlink()
        audit = cli("audit", f"models:/{NAME}/1", "--json", "--tracking-uri", uri)
        assert audit.returncode == 1, (audit.stdout[-2000:], audit.stderr[-2000:])
        report = json.loads(audit.stdout.strip().splitlines()[-1])
        integrity = next(c for c in report["checks"] if c["name"] == "integrity")
        assert not report["passed"] and integrity["passed"] is False and rel in integrity["detail"], integrity
        assert report["checks"][-1]["passed"] is None  # nothing re-run on an altered model
        assert MlflowClient(uri, registry_uri=uri).get_model_version(NAME, "1").tags["tlops.audit"] == "failed"
        for model_uri in (f"models:/{NAME}/1", f"models:/{NAME}@champion", f"runs:/{run_id}/model"):
            refused = cli("predict", model_uri, "a dog", "--tracking-uri", uri)
            assert refused.returncode == 1 and f"refusing to load {NAME} v1" in refused.stderr, (model_uri, refused.stderr[-2000:])
            assert f"code files differ from what was registered: {rel}" in refused.stderr, refused.stderr[-2000:]
            assert "Traceback" not in refused.stderr
        scored = cli("evaluate", f"runs:/{run_id}/model", "--data", str(data), "--tracking-uri", uri)
        assert scored.returncode == 1 and "refusing to load" in scored.stderr, scored.stderr[-2000:]
        assert not marker.exists(), "the altered code ran"
    finally:
        shutil.copy2(saved, target)


def test_a_run_with_no_registered_version_is_refused_and_a_failed_run_fails_the_audit_lineage(registered):
    uri, _, run_id, _ = registered
    client = MlflowClient(uri, registry_uri=uri)
    stray = client.create_run(client.get_experiment_by_name("tests").experiment_id).info.run_id
    out = cli("predict", f"runs:/{stray}/model", "a dog", "--tracking-uri", uri)
    assert out.returncode == 1 and f"no registered version was made from run {stray}" in out.stderr, out.stderr[-2000:]
    bad = cli("predict", "runs:/x' OR '1'='1/model", "a dog", "--tracking-uri", uri)
    assert bad.returncode == 1 and "a 32-character hex run id" in bad.stderr, bad.stderr[-2000:]
    assert re.fullmatch(r"[0-9a-f]{32}", run_id)
    client.set_terminated(run_id, "FAILED")  # as a run killed after registering, or marked failed later
    try:
        audit = cli("audit", f"models:/{NAME}/1", "--json", "--tracking-uri", uri)
        report = json.loads(audit.stdout.strip().splitlines()[-1])
        lineage = next(c for c in report["checks"] if c["name"] == "lineage")
        assert audit.returncode == 1 and lineage["passed"] is False and "is FAILED, not FINISHED" in lineage["detail"], lineage
    finally:
        client.set_terminated(run_id, "FINISHED")


def test_a_version_whose_registration_did_not_finish_is_refused_not_taken_for_an_old_one(registered):
    """Killed between its two sha256 tags, a version has the package tag but not the code tag: it loaded as an 'older
    version' whose code files were never recorded. The run's recorded code manifest says otherwise."""
    uri, _, _, _ = registered
    client = MlflowClient(uri, registry_uri=uri)
    tags = client.get_model_version(NAME, "1").tags
    try:
        for tag in ("tlops.code_sha256", "tlops.package_sha256"):
            client.delete_model_version_tag(NAME, "1", tag)
            out = cli("predict", f"models:/{NAME}/1", "a dog", "--tracking-uri", uri)
            assert out.returncode == 1 and "its registration did not finish" in out.stderr and tag in out.stderr, out.stderr[-2000:]
        for tag in ("tlops.code_sha256", "tlops.package_sha256"):
            client.set_model_version_tag(NAME, "1", tag, tags[tag])
        client.set_model_version_tag(NAME, "1", "tlops.incomplete", "true")  # as the next run marks a killed run's version
        out = cli("predict", f"models:/{NAME}/1", "a dog", "--tracking-uri", uri)
        assert out.returncode == 1 and "its registration did not finish" in out.stderr, out.stderr[-2000:]
    finally:
        for tag in ("tlops.code_sha256", "tlops.package_sha256"):
            client.set_model_version_tag(NAME, "1", tag, tags[tag])
        client.delete_model_version_tag(NAME, "1", "tlops.incomplete")
    assert cli("predict", f"models:/{NAME}/1", "a dog", "--tracking-uri", uri).returncode == 0
