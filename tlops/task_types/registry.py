"""The task-type registry: dataset.yaml `task:` name -> the `TaskType` that owns that task, filled by the task-type
modules themselves.

Every module in `tlops.task_types` (other than this one and `base`) is imported on the first lookup; each registers
its task type with `@register_task_type` on the class (as `tlops.strategies` register strategies), so adding a task
type is adding a module. The modules import only numpy at import time: a config error stays sub-second.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from tlops.errors import ConfigError
from tlops.strategies.registry import all_strategies, get_strategy

if TYPE_CHECKING:
    from tlops.config import RunConfig
    from tlops.data.dataset import Dataset
    from tlops.task_types.base import TaskType

_REGISTRY: dict[str, TaskType] = {}
_discovered = False
_NOT_TASK_TYPES = ("registry", "base")


def register_task_type(cls: type[TaskType]) -> type[TaskType]:
    """Class decorator: registers one instance of the task type under its `name`."""
    entry = cls()
    if not entry.name:
        raise TypeError(f"{cls.__name__} must set `name` (its dataset.yaml `task:` value)")
    if entry.name in _REGISTRY and type(_REGISTRY[entry.name]) is not cls:
        raise ValueError(f"task type {entry.name!r} is registered twice ({type(_REGISTRY[entry.name]).__module__} and {cls.__module__})")
    missing = [m for m in entry.gate_metrics if m not in entry.higher_is_better]
    if entry.default_gate_metric not in entry.gate_metrics or missing or entry.selection_metric not in entry.higher_is_better:
        raise TypeError(f"{cls.__name__}: default_gate_metric must be a gate metric, and every gate metric and the selection "
                        f"metric need a direction in higher_is_better (missing: {missing or entry.selection_metric})")
    _REGISTRY[entry.name] = entry
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    package = sys.modules[__package__]  # imported before this module, its parent: looked up, not imported (no cycle)
    for module in pkgutil.iter_modules(package.__path__):  # __path__: a folder added to it is searched too
        if module.name not in _NOT_TASK_TYPES and not module.name.startswith("_"):
            importlib.import_module(f"{__package__}.{module.name}")
    _discovered = True


def all_task_types() -> dict[str, TaskType]:
    """Every registered task type, by name (in discovery order)."""
    _discover()
    return dict(_REGISTRY)


def task_type(name: str) -> TaskType:
    entries = all_task_types()
    if name not in entries:
        raise ConfigError(f"unknown task {name!r}; valid: {', '.join(entries)}")
    return entries[name]


def training_task(task: str, y: np.ndarray, opts: Any = None):
    """The training loop's task (`tlops.training.objectives`: loss, validation metrics, selection metric) for a dataset's
    task type, fitted to the train targets `y` (a regression task's scaler) and the strategy options `opts` (`loss`,
    `huber_delta`)."""
    return task_type(task).loop_task(y, opts)


def train_probe(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int, cfg: Any, seed: int = 0,
                task: str = "classification", scaler=None, curve: bool = True):
    """The configured linear_probe head on train, selected on val, as the task type fits it (`TaskType.fit_probe`, with
    `tlops.training.probe`'s fitters). `y`: class indices, or float targets for a regression. `scaler`: the features'
    (mean, std) to standardise with (LP-FT passes `finetune_scaler`), else train's own; `curve`: also fit the closed-form
    heads' learning curve over train rows (LP-FT only wants the head)."""
    return task_type(task).fit_probe(x.astype(np.float32), y, xv.astype(np.float32), yv, n_classes, cfg, seed, scaler=scaler, curve=curve)


def higher_is_better(metric: str) -> bool:
    """Whether a higher value of a gate metric (of any task type) is better: the promotion gate compares in that direction."""
    directions = {m: t.higher_is_better[m] for t in all_task_types().values() for m in t.gate_metrics}
    if metric not in directions:
        raise ConfigError(f"unknown gate metric {metric!r}; valid: {', '.join(sorted(directions))}")
    return directions[metric]


def check_config_fits(cfg: RunConfig, ds: Dataset) -> None:
    """The config must be one for the dataset's task (dataset.yaml `task:`): its strategy supports it, the
    probe's head and the gate metric belong to it. Raises ConfigError naming the key and the fix."""
    task = task_type(ds.task)
    where = f"{ds.root / 'dataset.yaml'} says task: {task.name}"
    entry = get_strategy(cfg.strategy.name)
    if task.name in entry.tasks and getattr(cfg.strategy, "head", None) not in (None, *(entry.heads or task.heads)):
        raise ConfigError(f"strategy.head: {cfg.strategy.head} is not a {task.name} head ({where}); set strategy.head to one of "
                          f"{', '.join(entry.heads or task.heads)}")
    if task.name not in entry.tasks:
        able = [e for e in all_strategies().values() if task.name in e.tasks]
        plain, episodic = [e.name for e in able if not e.few_shot], [e.name for e in able if e.few_shot]
        few_shot = f"; {', '.join(episodic)} on a few-shot dataset" if episodic else ""
        raise ConfigError(f"strategy {cfg.strategy.name} does not train {task.name} models yet ({where}); "
                          f"use a strategy that does ({', '.join(plain)}{few_shot}), or a {' / '.join(entry.tasks)} dataset")
    refusal = getattr(cfg.strategy, "refusal_for_task", None)  # options of a strategy that only one task type has
    why = refusal(task.name) if refusal is not None else None
    if why:
        raise ConfigError(f"{why} ({where})")
    if cfg.registry.metric not in task.gate_metrics:
        raise ConfigError(f"registry.metric: {cfg.registry.metric} is not a {task.name} metric ({where}); set registry.metric "
                          f"to one of {', '.join(task.gate_metrics)} (e.g. {task.default_gate_metric})")
