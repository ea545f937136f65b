import pytest

from tlops.config import config_from_dict, load_config
from tlops.errors import ConfigError


BASE = {"data": {"path": "d"}, "backbone": {"name": "hf:x"}, "registry": {"model_name": "m"}}


def test_defaults_fill_in():
    cfg = config_from_dict(BASE)
    assert cfg.strategy.name == "linear_probe" and cfg.backbone.layers == [-1] and cfg.execution.train_pool is None


def test_unknown_key_is_named_with_the_valid_keys():
    with pytest.raises(ConfigError) as e:
        config_from_dict({**BASE, "strategy": {"hed": "mlp"}})
    msg = str(e.value)
    assert "strategy.hed" in msg and "unknown key" in msg and "head" in msg


def test_bad_value_is_named_with_the_value():
    with pytest.raises(ConfigError) as e:
        config_from_dict({**BASE, "strategy": {"head": "forest"}})
    assert "strategy.head" in str(e.value) and "forest" in str(e.value)


def test_missing_required_section():
    with pytest.raises(ConfigError, match="registry: required key is missing"):
        config_from_dict({"data": {"path": "d"}, "backbone": {"name": "hf:x"}})


def test_overrides_parse_yaml_values(tmp_path):
    import yaml

    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(BASE))
    cfg = load_config(f, ["strategy.head=mlp", "backbone.layers=[-1, -2]", "registry.margin=0.05"])
    assert cfg.strategy.head == "mlp" and cfg.backbone.layers == [-1, -2] and cfg.registry.margin == 0.05
    with pytest.raises(ConfigError, match="nosuch"):
        load_config(f, ["nosuch.key=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(f, ["strategy.head"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_repeated_layers_rejected():
    with pytest.raises(ConfigError, match="repeat"):
        config_from_dict({**BASE, "backbone": {"name": "hf:x", "layers": [-1, -1]}})
