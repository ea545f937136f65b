"""`tlops audit`: a registered version re-run from its lineage (its commit in a git worktree, its data
version, its config) and compared. Training runs here come from a scratch git repository holding a
committed copy of this checkout's code, as a user's project would: the recorded commit is clean and
real. Models are probes and fine-tunes of the tiny random-weight BERT (code path, not pretrained). The verdicts on
recorded evidence (dirty tree, data restored from the DVC cache or gone, tolerances): tests/unit/test_audit.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tests.helpers import REPO, tiny_config

pytestmark = pytest.mark.usefixtures("prefect_api")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A committed copy of the code (tlops, tasks, flows): a clean tree to train from."""
    root = tmp_path_factory.mktemp("project")
    for d in ("tlops", "tasks", "flows"):
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    _git(root, "init", "-q")
    _git(root, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    _git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "project code")
    return root


def _train(project: Path, cfg: dict, prefect_api: str) -> dict:
    f = Path(cfg["execution"]["work_dir"]).parent / f"{cfg['registry']['model_name']}.yaml"
    f.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(f), "--json"], capture_output=True, text=True, cwd=project,
                         env={**os.environ, "PREFECT_API_URL": prefect_api}, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _audit(project: Path, uri: str, model: str):
    from tasks.audit import audit
    from tasks.operate import connect

    return audit(connect(uri), model, repo=project)


def test_a_fresh_probe_run_reproduces_exactly(tmp_path, text_dataset, tiny_bert, project, prefect_api):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, registry__model_name="probe")
    trained = _train(project, cfg, prefect_api)
    report, run_id = _audit(project, cfg["tracking"]["uri"], "models:/probe@champion")
    assert report.passed, [c.model_dump() for c in report.checks]
    assert [c.name for c in report.checks] == ["lineage", "integrity", "code", "data", "re-run", "same model"]
    assert report.agreement == 1.0 and report.bit_identical and report.reproduced_metrics == pytest.approx(trained["test_metrics"])
    client = MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])
    mv = client.get_model_version("probe", "1")
    assert mv.tags["tlops.audit"] == "passed" and mv.tags["tlops.audit.run"] == run_id
    audit_run = client.get_run(run_id)
    assert audit_run.data.tags["tlops.audit.of_run"] == trained["run_id"]
    assert {a.path for a in client.list_artifacts(run_id, "audit")} == {"audit/report.json", "audit/report.md"}
    assert not any(p.name.startswith("tlops-audit") for p in Path(os.environ.get("TMPDIR", "/tmp")).iterdir() if p.is_dir() and
                   (p / "code").exists()), "the audit's worktree is removed"


def test_a_fine_tuned_model_reproduces_on_this_machine(tmp_path, text_dataset, tiny_bert, project, prefect_api):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, registry__model_name="ft",
                      strategy={"name": "finetune", "epochs": 2, "batch_size": 8, "head_lr": 1e-2, "backbone_lr": 1e-3})
    _train(project, cfg, prefect_api)
    report, _ = _audit(project, cfg["tracking"]["uri"], "models:/ft/1")
    assert report.passed and report.tolerances.min_agreement == 0.95, [c.model_dump() for c in report.checks]
    assert report.agreement == 1.0 and report.bit_identical, report.max_weight_diff  # same machine type: bit for bit
    assert set(report.max_weight_diff) == {"backbone/model.safetensors", "head.safetensors"}


def test_tampered_weights_fail_the_integrity_check(tmp_path, text_dataset, tiny_bert, project, prefect_api):
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, registry__model_name="tampered")
    _train(project, cfg, prefect_api)
    (head,) = [p for p in (tmp_path / "mlruns").rglob("head.safetensors") if "package" in p.parts]
    data = bytearray(head.read_bytes())
    data[-3] ^= 0xFF
    head.chmod(0o644)
    head.write_bytes(bytes(data))
    out = cli("audit", "models:/tampered/1", "--repo", str(project), "--json", "--tracking-uri", cfg["tracking"]["uri"])
    assert out.returncode == 1, out.stderr[-2000:]  # exit 0 only on pass
    report = json.loads(out.stdout.strip().splitlines()[-1])
    failed = [c for c in report["checks"] if c["passed"] is False]
    assert not report["passed"] and [c["name"] for c in failed] == ["integrity"] and "head.safetensors" in failed[0]["detail"]
    assert report["checks"][-1]["passed"] is None  # nothing re-run on a tampered model
    assert MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"]).get_model_version("tampered", "1").tags["tlops.audit"] == "failed"
    # loading a pyfunc model runs its code: predict refuses the tampered files before MLflow loads anything
    refused = cli("predict", "models:/tampered/1", "a dog", "--tracking-uri", cfg["tracking"]["uri"])
    assert refused.returncode == 1 and "refusing to load tampered v1" in refused.stderr, refused.stderr[-2000:]
    assert "head.safetensors" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    # the model's own code is what loading runs: with the package restored, an edited pyfunc file is refused too
    data[-3] ^= 0xFF
    head.write_bytes(bytes(data))
    (code,) = (tmp_path / "mlruns").rglob("pyfunc_model.py")  # the logged model's own copy, beside MLmodel
    code.chmod(0o644)
    code.write_text(code.read_text() + "\nraise SystemExit('code that was never registered ran')\n")
    refused = cli("predict", "models:/tampered/1", "a dog", "--tracking-uri", cfg["tracking"]["uri"])
    assert refused.returncode == 1 and "code files differ from what was registered: pyfunc_model.py" in refused.stderr, refused.stderr[-2000:]
    assert "never registered ran" not in refused.stderr + refused.stdout


def test_git_state_is_recorded_clean_or_dirty(project):
    """What the code check reads: the commit and whether the tree had uncommitted changes (a dirty tree's run is not
    reproducible: the verdict on that evidence is tests/unit/test_audit.py)."""
    from tlops.repro import git_commit

    clean = git_commit(project)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    marker = project / "tlops" / "__init__.py"
    original = marker.read_text()
    try:
        marker.write_text(original + "# an uncommitted change\n")
        assert git_commit(project) == {"commit": clean["commit"], "dirty": True}
    finally:
        marker.write_text(original)
    assert git_commit(project.parent)["commit"] is None  # not a git checkout: no commit to reproduce from


def test_stored_data_versions_are_real_dvc_objects(tmp_path, text_dataset):
    """What `tlops run` stores, a real `dvc checkout` restores (so `dvc push`/`pull` can move it between machines)."""
    from tlops.data.versions import dir_md5, store_version

    cache = tmp_path / "cache"
    version = store_version(text_dataset, cache)
    assert version == dir_md5(text_dataset) and store_version(text_dataset, cache) == version  # idempotent
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(a, cwd=repo, check=True, capture_output=True, text=True, timeout=300)  # noqa: E731
    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "cache", "dir", str(cache))
    (repo / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": version, "path": "data", "hash": "md5"}]}))
    run(sys.executable, "-m", "dvc", "checkout", "-q")
    assert sorted(p.name for p in (repo / "data").iterdir()) == sorted(p.name for p in text_dataset.iterdir())
    assert (repo / "data" / "train.csv").read_bytes() == (text_dataset / "train.csv").read_bytes()


def test_the_default_dvc_cache_is_what_dvc_says(tmp_path):
    """tlops reads the cache folder from DVC's config files itself (importing dvc costs every run ~0.6 s)."""
    from tlops.repro import default_dvc_cache

    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(a, cwd=repo, check=True, capture_output=True, text=True, timeout=300).stdout.strip()  # noqa: E731
    run("git", "init", "-q")
    assert default_dvc_cache(repo) is None  # not a DVC repository
    run(sys.executable, "-m", "dvc", "init", "-q")
    for setting in ([], ["../shared-cache"], ["--local", str(tmp_path / "local-cache")]):
        if setting:
            run(sys.executable, "-m", "dvc", "cache", "dir", *setting)
        assert default_dvc_cache(repo) == Path(run(sys.executable, "-m", "dvc", "cache", "dir")), setting
