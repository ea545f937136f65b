"""Config errors name where the wrong key or value is: its line and column in the config file, or the --set item that
gave it (not the file), and a near-miss key or value gets a 'did you mean' (issue 27 item 8)."""

from __future__ import annotations

import pytest

from tlops.config import load_config
from tlops.errors import ConfigError

CONFIG = """\
data:
  path: d
backbone:
  name: hf:x
  pooling: meen
strategy:
  name: linear_probe
  hed: mlp
  C: abc
registry:
  metric: macro_f1
execution:
  max_length: 3
"""


def _error(tmp_path, text: str = CONFIG, overrides: list[str] | None = None) -> list[str]:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yaml", overrides)
    return str(e.value).splitlines()


def _line(lines: list[str], key: str) -> str:
    (line,) = [x for x in lines if f" {key}: " in x]
    return line


def test_each_problem_names_its_line_and_column(tmp_path):
    lines = _error(tmp_path)
    assert lines[0] == f"invalid config {tmp_path / 'c.yaml'}:"
    assert _line(lines, "strategy.hed").startswith("  line 8 column 3: strategy.hed: unknown key; valid keys here: name, head")
    assert _line(lines, "strategy.C").startswith("  line 9 column 6: strategy.C: ") and "'abc'" in _line(lines, "strategy.C")
    assert _line(lines, "registry.model_name") == "  line 10 column 1: registry.model_name: required key is missing"


def test_a_near_miss_gets_did_you_mean(tmp_path):
    lines = _error(tmp_path)
    assert _line(lines, "strategy.hed").endswith("; did you mean 'head'?")
    assert _line(lines, "backbone.pooling").startswith("  line 5 column 12: ") and _line(lines, "backbone.pooling").endswith(
        "(got 'meen'); did you mean 'mean'?")
    assert _line(lines, "execution.max_length").endswith("max_length is a key of backbone: write it under backbone:")
    (line,) = [x for x in _error(tmp_path, CONFIG.replace("linear_probe", "finetun")) if "unknown strategy name" in x]
    assert line.startswith("  line 7 column 9: strategy: ") and line.endswith("did you mean 'finetune'?")
    lower = _error(tmp_path, CONFIG.replace("  C: abc", "  c: 0.5"))
    assert _line(lower, "strategy.c").endswith("did you mean 'C'?")


def test_a_set_value_is_blamed_on_the_set_not_the_file(tmp_path):
    good = "data: {path: d}\nbackbone: {name: 'hf:x'}\nregistry: {model_name: m}\n"
    lines = _error(tmp_path, good, ["strategy.C=zz", "backbone.pooling=cl", "strategy.nam=probe"])
    assert lines[0] == f"invalid --set value for config {tmp_path / 'c.yaml'}:"
    assert _line(lines, "strategy.C").startswith("  --set strategy.C=zz: strategy.C: ")
    assert _line(lines, "backbone.pooling").startswith("  --set backbone.pooling=cl: ") and _line(lines, "backbone.pooling").endswith(
        "did you mean 'cls'?")
    assert _line(lines, "strategy.nam").startswith("  --set strategy.nam=probe: ") and _line(lines, "strategy.nam").endswith(
        "did you mean 'name'?")
    (line,) = _error(tmp_path, good, ["strategy.name=protonett"])[1:]
    assert line.startswith("  --set strategy.name=protonett: strategy: unknown strategy name") and "did you mean 'protonet'" in line
    # the file's own mistakes keep their lines beside an override's
    mixed = _error(tmp_path, CONFIG, ["strategy.C=zz"])
    assert mixed[0].startswith("invalid config ") and _line(mixed, "strategy.C").startswith("  --set strategy.C=zz: ")
    assert _line(mixed, "strategy.hed").startswith("  line 8 column 3: ")


def test_errors_of_a_config_built_in_code_name_no_line():
    from tlops.config import config_from_dict

    with pytest.raises(ConfigError) as e:
        config_from_dict({"data": {"path": "d"}, "backbone": {"name": "hf:x"}, "registry": {"model_name": "m"}, "strategy": {"hed": 1}})
    assert str(e.value).splitlines()[1].startswith("  strategy.hed: unknown key")


GOOD = "data:\n  path: d\nbackbone:\n  name: hf:x\nregistry:\n  model_name: m\n"


@pytest.mark.parametrize("section, expected", [
    # a model validator's check across a strategy's keys (pydantic locates it at the whole section): the key it names
    ("strategy:\n  name: finetune\n  trainable: all\n  unfreeze_every: 2\n",
     "  line 10 column 19: strategy.unfreeze_every: unfreeze_every needs a starting number of groups"),
    ("strategy:\n  name: maml\n  trainable: 0\n  inner_groups: 2\n", "  line 10 column 17: strategy.inner_groups: inner_groups: 2 > trainable: 0"),
    ("strategy:\n  name: domain_adapt\n  mode: features\n  trainable: 2\n",
     "  line 10 column 14: strategy.trainable: {'trainable': 2} only apply to mode: finetune"),
    # a field validator on a key the file does not set (rdzv_endpoint): the key whose value made it needed
    ("execution:\n  nnodes: 2\n", "  line 8 column 11: execution.nnodes: nnodes > 1 needs the rendezvous address"),
    # checks raised as ConfigError by RunConfig's own validators (they named no file before)
    ("execution:\n  task_runner: dask\n", "  line 8 column 16: execution.task_runner: dask sends feature shards to Dask workers"),
    ("execution:\n  nproc_per_node: 2\n", "  line 8 column 19: execution.nproc_per_node=2, nnodes=1: strategy 'linear_probe' trains in one"),
])
def test_a_validator_error_names_the_line_of_the_key_it_is_about(tmp_path, section, expected):
    """Issue 27: config errors raised by validators (not the key checks) name the file and the line and column of the
    offending key, and do not echo the whole section as the 'got' value."""
    lines = _error(tmp_path, GOOD + section)
    assert lines == [f"invalid config {tmp_path / 'c.yaml'}:", lines[1]], lines
    assert lines[1].startswith(expected), lines[1]
    assert "Value error" not in lines[1] and "(got {" not in lines[1] and "(got None)" not in lines[1], lines[1]


def test_a_validator_error_from_a_set_value_is_blamed_on_the_set(tmp_path):
    lines = _error(tmp_path, GOOD, ["execution.task_runner=dask"])
    assert lines == [f"invalid --set value for config {tmp_path / 'c.yaml'}:",
                     "  --set execution.task_runner=dask: execution.task_runner: dask sends feature shards to Dask workers, but "
                     "features.shard_rows is 0 (no shards); set it too, e.g. --set features.shard_rows=5000"]
    (line,) = _error(tmp_path, GOOD + "strategy:\n  name: finetune\n  trainable: all\n", ["strategy.unfreeze_every=3"])[1:]
    assert line.startswith("  --set strategy.unfreeze_every=3: strategy.unfreeze_every: unfreeze_every needs"), line
