"""The strategy registry: the config's `strategy:` union and the pipeline's dispatch come from it, so a
new strategy is one new module and nothing else."""

from __future__ import annotations


import pytest
from pydantic import Field

from tlops.config_base import Strict
from tlops.strategies import all_strategies, get_strategy, register_strategy


def test_builtin_strategies_are_registered_with_their_config_models():
    entries = all_strategies()
    assert {"linear_probe", "finetune"} <= set(entries), entries
    for name, entry in entries.items():
        assert entry.config.model_fields["name"].default == name, f"{name}: config's name field must default to the registry name"
        assert entry.summary, f"{name}: the train entry point needs a docstring (shown to users)"
    with pytest.raises(KeyError, match="unknown strategy 'nope'; valid: .*linear_probe"):
        get_strategy("nope")


def test_registration_rejects_a_mismatched_name_and_a_second_entry_point():
    class Mismatch(Strict):
        name: str = "something_else"

    with pytest.raises(TypeError, match="must have a field `name` defaulting to 'probe2'"):
        register_strategy("probe2", Mismatch)

    class LinearAgain(Strict):
        name: str = Field("linear_probe")

    with pytest.raises(ValueError, match="strategy 'linear_probe' is registered twice"):
        register_strategy("linear_probe", LinearAgain)(lambda ctx: None)
