"""The audit's verdicts on recorded evidence (`tasks.audit`, `tlops.audit`), without training or re-running: the code
check (clean commit, dirty tree, no commit), the data check (the folder still holds the version; changed, and restored
from the DVC cache; gone from the cache), the package and code manifests, and the "same model" comparison with each
strategy's tolerances. Real re-run audits (a probe, a fine-tune, a tampered package): tests/system/test_audit.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from tests.helpers import tiny_config
from tlops.audit import compare, max_weight_diff, to_markdown, tolerances_for

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_the_code_check_passes_a_clean_commit_and_refuses_a_dirty_tree_or_no_commit():
    from tasks.audit import _code

    clean = _code({"git_commit": COMMIT, "git_dirty": "False"})
    assert clean.passed and "clean tree" in clean.detail and clean.evidence == {"commit": COMMIT}
    dirty = _code({"git_commit": COMMIT, "git_dirty": "True"})
    assert dirty.passed is False and "dirty working tree" in dirty.detail and COMMIT[:10] in dirty.detail
    for commit in (None, "none"):
        missing = _code({"git_commit": commit, "git_dirty": None})
        assert missing.passed is False and "recorded no git commit" in missing.detail


def _lineage(data, version, store) -> dict:
    from tlops.data.dataset import dataset_content_md5

    return {"data_path": str(data), "data_version_md5": version, "data_dataset_md5": dataset_content_md5(data),
            "data_version_store": str(store), "config": {"data": {"dvc_cache": str(store)}}}


def test_the_data_check_restores_changed_data_from_the_dvc_cache_and_fails_once_that_version_is_gone(tmp_path, text_dataset):
    from tasks.audit import _data
    from tlops.data.versions import dir_md5, store_version

    store = tmp_path / "dvc-cache"
    version = store_version(text_dataset, store)  # what `tlops run` stores for every run
    original = {p.name: p.read_bytes() for p in text_dataset.iterdir()}
    lineage = _lineage(text_dataset, version, store)

    same, folder = _data(lineage, tmp_path / "a")
    assert same.passed and folder == text_dataset and f"still holds data version {version[:12]}" in same.detail

    with open(text_dataset / "test.csv", "a") as f:
        f.write("a new kind of sentence about the harbor,vehicle\n")  # the data moved on after training
    restored, folder = _data(lineage, tmp_path / "b")
    assert restored.passed and "restored from the DVC cache" in restored.detail, restored
    assert folder != text_dataset and dir_md5(folder) == version
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == original

    shutil.rmtree(store)
    gone, folder = _data(lineage, tmp_path / "c")
    assert gone.passed is False and folder is None and "not in the DVC cache" in gone.detail and "dvc pull" in gone.detail
    shutil.rmtree(text_dataset)
    gone, _ = _data(lineage, tmp_path / "d")
    assert gone.passed is False and "is gone" in gone.detail


@pytest.fixture
def package(tmp_path, text_dataset, tiny_bert):
    from tlops.config import RunConfig
    from tlops.pipeline import run_core

    core = run_core(RunConfig.model_validate(tiny_config(tmp_path, text_dataset, tiny_bert)), tmp_path / "work")
    return Path(core.package), core.evaluation.metrics


def test_a_bit_identical_package_is_the_same_model_and_a_moved_head_is_not_for_a_probe(tmp_path, package, text_dataset):
    from tlops.data import load_dataset

    registered, metrics = package
    inputs = load_dataset(text_dataset).inputs("test")
    copy = tmp_path / "reproduced"
    shutil.copytree(registered, copy)
    same, extra = compare(registered, copy, inputs, metrics, metrics, tolerances_for("linear_probe"))
    assert same.passed and extra == {"agreement": 1.0, "max_weight_diff": {"backbone/model.safetensors": 0.0, "head.safetensors": 0.0},
                           "bit_identical": True}, extra

    head = copy / "head.safetensors"
    tensors = load_file(str(head))
    key = next(iter(tensors))
    tensors[key] = tensors[key] + 1e-4  # a re-run that did not reproduce the weights to float rounding
    save_file(tensors, str(head))
    moved, extra = compare(registered, copy, inputs, metrics, metrics, tolerances_for("linear_probe"))
    assert moved.passed is False and "weights differ by up to" in moved.detail and not extra["bit_identical"]
    assert max_weight_diff(registered, copy)["head.safetensors"] == pytest.approx(1e-4, rel=1e-3)
    # a fine-tune's weights are measured and reported, not bounded: the same difference passes its tolerance
    tuned, _ = compare(registered, copy, inputs, metrics, metrics, tolerances_for("finetune"))
    assert tuned.passed and tolerances_for("finetune").max_weight_diff is None

    off = {k: v - 0.5 for k, v in metrics.items()}  # the recorded test metrics are not what the re-run measured
    wrong, _ = compare(registered, copy, inputs, off, metrics, tolerances_for("finetune"))
    assert wrong.passed is False and "test metric differs by 0.500000 > 0.02" in wrong.detail


def test_a_package_whose_files_changed_fails_the_integrity_check_naming_them(tmp_path, package, monkeypatch):
    import json

    import tasks.audit as audit_module
    from tasks.audit import package_check
    from tlops.package import manifest_digest, package_manifest

    registered, _ = package
    recorded = package_manifest(registered)
    manifest = tmp_path / "recorded" / "package_manifest.json"  # what the run recorded at registration
    manifest.parent.mkdir()
    manifest.write_text(json.dumps(recorded))
    monkeypatch.setattr(audit_module, "_run_artifact", lambda run_id, path, dst: manifest)

    ok = package_check(None, "run", registered, tmp_path, manifest_digest(recorded))
    assert ok.passed and f"{len(recorded)} registered files match" in ok.detail
    swapped = package_check(None, "run", registered, tmp_path, manifest_digest({**recorded, "x": "0"}))
    assert swapped.passed is False and "the manifest itself was altered" in swapped.detail
    head = registered / "head.safetensors"
    data = bytearray(head.read_bytes())
    data[-3] ^= 0xFF
    head.write_bytes(bytes(data))
    tampered = package_check(None, "run", registered, tmp_path, manifest_digest(recorded))
    assert tampered.passed is False and "registered files differ from what the run recorded: head.safetensors" in tampered.detail
    unfinished = package_check(None, "run", registered, tmp_path, None)  # the run recorded a manifest, the version has no tag
    assert unfinished.passed is False and "its registration did not finish" in unfinished.detail


def test_the_report_states_each_check_its_tolerances_and_the_numbers():
    from tlops.audit import AuditReport, Check

    report = AuditReport(model="m", version="3", run_id="r1", strategy="finetune", passed=False, tolerances=tolerances_for("finetune"),
                         checks=[Check(name="code", passed=False, detail="dirty | tree"), Check(name="re-run", passed=None, detail="skipped")],
                         recorded_metrics={"macro_f1": 0.9}, reproduced_metrics={"macro_f1": 0.85}, wall_s=3.0, original_wall_s=6.0,
                         max_weight_diff={"head.safetensors": 0.5})
    md = to_markdown(report)
    assert md.startswith("# Audit of m v3: FAILED") and "ratio 0.50" in md and "agreement >= 0.95" in md
    assert "| code | **FAIL** | dirty / tree |" in md and "| re-run | not run | skipped |" in md
    assert "| macro_f1 | 0.900000 | 0.850000 |" in md and "| head.safetensors | 0.5 |" in md
    assert report.failures() == [report.checks[0]]
