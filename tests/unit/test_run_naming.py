"""Where a run is logged and what it is called (issue 27 item 4): the experiment defaults to the model's name (a copied
demo config no longer logs in the demo's experiment), and the --set overrides show in the run's name."""

from __future__ import annotations

import re

import pytest
import yaml

from tlops.config import RUN_NAME_MAX, load_config


def _config(tmp_path, **tracking) -> str:
    tree = {"data": {"path": "data"}, "backbone": {"name": "hf:x"}, "registry": {"model_name": "licences"}}
    if tracking:
        tree["tracking"] = tracking
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tree))
    return str(tmp_path / "c.yaml")


def test_the_experiment_defaults_to_the_model_name(tmp_path):
    assert load_config(_config(tmp_path)).tracking.experiment == "licences"
    assert load_config(_config(tmp_path, experiment="mine")).tracking.experiment == "mine"
    assert load_config(_config(tmp_path), ["tracking.experiment=other"]).tracking.experiment == "other"
    assert load_config(_config(tmp_path), ["registry.model_name=renamed"]).tracking.experiment == "renamed"


def test_no_demo_config_names_an_experiment():
    """A copied demo config logs where its model's other runs are: none sets tracking.experiment."""
    from tests.helpers import REPO

    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert "experiment" not in (yaml.safe_load(path.read_text()).get("tracking") or {}), path


def test_overrides_show_in_the_run_name(tmp_path):
    path = _config(tmp_path)
    assert load_config(path).tracking.run_name is None  # the run names itself <model>-<date>-<time> when it starts
    name = load_config(path, ["strategy.C=0.1", "strategy.head=logreg"]).tracking.run_name
    assert re.fullmatch(r"licences-\d{8}-\d{6} strategy\.C=0\.1 strategy\.head=logreg", name), name
    # where the run is logged is not a setting of the model; a secret in an override is masked
    name = load_config(path, ["tracking.uri=http://u:hunter2@host:5000", "strategy.C=10"]).tracking.run_name
    assert name.endswith(" strategy.C=10") and "tracking" not in name, name
    long = load_config(path, [f"data.path={'d' * 400}"]).tracking.run_name
    assert len(long) <= RUN_NAME_MAX


def test_a_named_run_keeps_its_name(tmp_path):
    assert load_config(_config(tmp_path), ["strategy.C=0.1", "tracking.run_name=c-small"]).tracking.run_name == "c-small"
    # a name in the file still shows what the command line changed
    assert load_config(_config(tmp_path, run_name="base"), ["strategy.C=0.1"]).tracking.run_name == "base strategy.C=0.1"
    with pytest.raises(Exception, match="run_name"):
        load_config(_config(tmp_path), ["tracking.run_name=" + "x" * 300])
