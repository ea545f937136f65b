"""Trust holes of the registry (issue 25, parts 2 and 3), on copies of the zoo's tiny-text store (v1 weak, v2 champion,
v3 challenger; the tiny random-weight BERT, a code path, not a pretrained model):

- a version whose registration did not finish (killed before the sha256 tags, or its run not FINISHED) shows as
  incomplete in `tlops models NAME`, and the next run on the host, closing a killed run, tags the versions it registered;
- a run under the registered name of another kind of model (another modality or task) is refused before features and
  training, not in the gate at the end."""

from __future__ import annotations

import json
import os
import socket

import pytest
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tests.helpers import flow_run, make_image_dataset, make_regression_dataset, tiny_config
from tlops.errors import ConfigError


NAME = "tiny-text"


def _models(uri: str) -> tuple[dict, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    listed = cli("models", NAME, "--json", env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    table = cli("models", NAME, env=env)
    assert table.returncode == 0, table.stderr[-2000:]
    return {v["version"]: v for v in json.loads(listed.stdout.strip().splitlines()[-1])["versions"]}, table.stdout


def test_versions_whose_registration_did_not_finish_show_as_incomplete(zoo, tmp_path):
    uri = zoo.text.copy_store(tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    for tag in ("tlops.package_sha256", "tlops.code_sha256"):  # v3 as a SIGKILL mid-registration leaves it: READY, no tags
        client.delete_model_version_tag(NAME, "3", tag)
    client.delete_model_version_tag(NAME, "2", "tlops.code_sha256")  # killed between the two tags
    client.set_terminated(zoo.text.results[0].run_id, "KILLED")  # v1: all tags, but its run never finished
    versions, table = _models(uri)
    assert not any(v["incomplete"] for v in _models(zoo.text.uri)[0].values())  # the zoo's store as registered: complete
    assert all(versions[v]["incomplete"] for v in ("1", "2", "3")), versions
    assert versions["3"]["incomplete_reason"].startswith("no tlops.package_sha256 / tlops.code_sha256 tag: its registration did not finish")
    assert versions["2"]["incomplete_reason"].startswith("no tlops.code_sha256 tag"), versions["2"]
    assert versions["1"]["incomplete_reason"] == "its run is KILLED, not FINISHED: registered, but the run did not finish"
    assert "3 incomplete" in table and "v3 is incomplete: no tlops.package_sha256 / tlops.code_sha256 tag" in table, table
    assert "do not serve or promote it: train and register it again with `tlops run`" in table


def test_the_next_run_closing_a_killed_run_tags_the_versions_it_registered_incomplete(zoo, tmp_path):
    """A SIGKILLed `tlops run` leaves its run RUNNING, owned by a dead process on this host: closing it (what the next run
    on the host does first) marks it KILLED and tags the version it had registered, with a description saying so."""
    from tasks.tracking import close_orphaned_runs

    uri = zoo.text.copy_store(tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    killed = zoo.text.results[2].run_id  # v3's run, as a SIGKILL in its gate leaves it
    client.update_run(killed, status="RUNNING")
    dead = 4_194_303  # a pid no process here has (and were one to, it started later than 1.0 s after the epoch)
    client.set_tag(killed, "tlops.owner", json.dumps({"host": socket.gethostname(), "pid": dead, "started": 1.0}))
    experiment = client.get_run(killed).info.experiment_id
    assert close_orphaned_runs(client, experiment) == [killed]
    mv = client.get_model_version(NAME, "3")
    assert mv.tags["tlops.incomplete"] == "true" and client.get_run(killed).info.status == "KILLED"
    assert client.get_run(killed).data.tags["tlops.outcome"] == "killed"  # the run list filter README gives
    assert mv.description.startswith(f"**Incomplete**: run `{killed}` that registered this version ended before it finished "
                                      f"(KILLED: process {dead} on {socket.gethostname()} ended without closing it)"), mv.description
    assert "linear_probe" in mv.description  # what it said before is kept below
    assert client.get_model_version(NAME, "2").tags.get("tlops.incomplete") is None
    versions, table = _models(uri)
    assert [v for v, row in versions.items() if row["incomplete"]] == ["3"], versions
    assert versions["3"]["incomplete_reason"] == "its run ended (killed or failed) before its registration and gate finished"
    assert "v3 is incomplete" in table


@pytest.mark.parametrize("kind", ["image", "regression"])
def test_a_run_under_the_name_of_another_kind_of_model_is_refused_before_training(zoo, tmp_path, tiny_bert, kind):
    """tiny-text is a text classifier: an image run, or a text regression run, under its name is refused right after the
    data checks (no features, nothing trained or registered), naming the model's kind and the fix."""
    uri = zoo.text.copy_store(tmp_path)
    if kind == "image":
        data = make_image_dataset(tmp_path / "images")
        cfg = tiny_config(tmp_path, data, tmp_path, backbone__name="packaged:efficientnet-lite0", backbone__image_size=32,
                          tracking__uri=uri)
        message = r"registry.model_name 'tiny-text' is a text classification model \(v2\), and this run trains an image classification"
        fix = "registry.model_name=tiny-text-image"
    else:
        data = make_regression_dataset(tmp_path / "numbers", n=(40, 10, 12))
        cfg = tiny_config(tmp_path, data, tiny_bert, strategy={"name": "linear_probe", "head": "ridge"}, registry__metric="mae",
                          tracking__uri=uri)
        message = r"registry.model_name 'tiny-text' is a text classification model \(v2\), and this run trains a text regression"
        fix = "registry.model_name=tiny-text-regression"
    with pytest.raises(ConfigError, match=message) as refused:
        flow_run(cfg)
    assert fix in str(refused.value) and "choose another registry.model_name" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*")), "features were computed"
    client = MlflowClient(uri, registry_uri=uri)
    assert sorted(int(v.version) for v in client.search_model_versions(f"name='{NAME}'")) == [1, 2, 3]
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id], order_by=["attributes.start_time DESC"],
                                max_results=1)
    assert run.info.status == "FAILED" and "is a text classification model" in run.data.tags["tlops.error"], run.data.tags


def test_a_run_that_fails_after_registering_tags_its_version_incomplete(zoo, tmp_path, monkeypatch):
    """A run that registered its version and then failed (here: describing the version) closes FAILED and tags it."""
    import flows.train

    uri = zoo.text.copy_store(tmp_path)
    cfg = {**zoo.text.configs[1], "tracking": {**zoo.text.configs[1]["tracking"], "uri": uri},
           "features": {"cache_dir": str(tmp_path / "cache")}, "execution": {"work_dir": str(tmp_path / "runs")}}

    def fail(*a, **k):
        raise RuntimeError("injected: describing the version failed")

    monkeypatch.setattr(flows.train, "describe_version", fail)
    with pytest.raises(RuntimeError, match="injected"):
        flow_run(cfg)
    client = MlflowClient(uri, registry_uri=uri)
    mv = client.get_model_version(NAME, "4")
    assert mv.tags["tlops.incomplete"] == "true" and client.get_run(mv.run_id).info.status == "FAILED"
    assert mv.description.startswith(f"**Incomplete**: run `{mv.run_id}` that registered this version ended before it finished "
                                      "(FAILED: RuntimeError: injected: describing the version failed)"), mv.description
    versions, _ = _models(uri)
    assert versions["4"]["incomplete"] and not any(versions[v]["incomplete"] for v in ("1", "2", "3")), versions
