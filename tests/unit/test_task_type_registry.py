"""The task-type registry discovers its modules from the package's `__path__` (as `tlops.strategies` does): a module
in a folder added to `tlops.task_types.__path__` registers a task type with no other change."""

from __future__ import annotations

import sys
import textwrap

import tlops.task_types as task_types
from tlops.task_types import registry

PLUGIN = '''
from tlops.task_types.base import TaskType
from tlops.task_types.registry import register_task_type


@register_task_type
class Ranking(TaskType):
    name = "plugged_ranking"
    gate_metrics = ("ndcg",)
    default_gate_metric = "ndcg"
    higher_is_better = {"ndcg": True}
    selection_metric = "ndcg"
'''


def test_a_task_type_module_in_a_folder_on_the_package_path_is_discovered(tmp_path, monkeypatch):
    (tmp_path / "plugged_ranking.py").write_text(textwrap.dedent(PLUGIN))
    registry.all_task_types()  # the shipped ones first
    monkeypatch.setattr(task_types, "__path__", [*task_types.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the plugin leaves the real table as it was
    try:
        names = set(registry.all_task_types())
        assert "plugged_ranking" in names and {"classification", "regression"} <= names
        assert registry.task_type("plugged_ranking").default_gate_metric == "ndcg"
    finally:
        sys.modules.pop("tlops.task_types.plugged_ranking", None)
