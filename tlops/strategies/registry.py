"""The strategy registry: name -> (config model, train entry point), filled by the strategy modules themselves.

Every module in `tlops.strategies` (other than this one) is imported by `all_strategies()`; each registers
itself with `@register_strategy(name, ConfigModel)` on its train function (timm's `@register_model`
table, not an if-chain). The run config builds its `strategy:` union and its "valid strategies" message
from this table, and the pipeline looks the entry up by name, so adding a strategy is adding a module.

Strategy modules are imported whenever a config is parsed, so they keep torch-heavy imports inside
their train function: a config error stays sub-second.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from pydantic import BaseModel

if TYPE_CHECKING:
    from tlops.config import ExecutionConfig
    from tlops.records import TrainResult
    from tlops.strategies.context import TrainContext


@dataclass(frozen=True)
class StrategyEntry:
    """What the rest of tlops may know about a strategy, declared where it registers (no name lists elsewhere)."""

    name: str
    config: type[BaseModel]
    train: Callable[[TrainContext], "TrainResult"]
    summary: str  # first line of the train function's docstring
    splits: tuple[str, ...] = ()  # dataset splits it needs besides train/val/test (e.g. "unlabeled"): validated and featurised
    few_shot: bool = False  # episodic: val/test hold novel classes, a support split is carved from test when absent
    tasks: tuple[str, ...] = ("classification",)  # the task types (dataset.yaml `task:`) it trains
    heads: tuple[str, ...] | None = None  # `strategy.head` kinds that fit every task; None: the task type's probe heads
    ddp: bool = False  # its loop shards the global batch over ranks (execution.nproc_per_node > 1; tlops.training.distributed)
    head_only: bool = False  # trains only a head on the frozen backbone: a reproduction audit expects the same weights
    starter: str | None = None  # the `tlops init --strategy` starter kind it is the default strategy of (tlops/starters/<modality>_<kind>.yaml)
    classic_baseline: bool = False  # its runs are scored beside the classic baseline (`tlops.classic_baseline`; few-shot and
    # domain adaptation score their own baselines)
    # settings (`strategy.<key>`) read only for one head kind or one task type: the run's params leave them out otherwise
    setting_heads: dict[str, str] = field(default_factory=dict)
    setting_tasks: dict[str, str] = field(default_factory=dict)


_REGISTRY: dict[str, StrategyEntry] = {}
_discovered = False


def register_strategy(name: str, config: type[BaseModel], splits: Sequence[str] = (), few_shot: bool = False,
                      tasks: Sequence[str] = ("classification",), heads: Sequence[str] | None = None, ddp: bool = False,
                      head_only: bool = False, starter: str | None = None, setting_heads: dict[str, str] | None = None,
                      setting_tasks: dict[str, str] | None = None, classic_baseline: bool = False) -> Callable:
    """Decorator for a strategy's train entry point: `@register_strategy("finetune", FinetuneConfig)`.
    `splits`: the extra dataset splits it trains on (`("unlabeled",)` for domain adaptation); validation
    then requires them and the features step caches them like the others. `few_shot`: the dataset follows the
    few-shot contract (`tlops.data.fewshot`) and validation checks it with the config's ways/shots/queries.
    The other keywords are the `StrategyEntry` facts of the same names."""
    declared = config.model_fields.get("name")
    if declared is None or declared.default != name:
        raise TypeError(f"{config.__name__} must have a field `name` defaulting to {name!r} (the discriminator of `strategy:`)")

    def wrap(fn: Callable[[TrainContext], "TrainResult"]) -> Callable[[TrainContext], "TrainResult"]:
        if name in _REGISTRY and _REGISTRY[name].train is not fn:
            raise ValueError(f"strategy {name!r} is registered twice ({_REGISTRY[name].train.__module__} and {fn.__module__})")
        _REGISTRY[name] = StrategyEntry(name, config, fn, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
                                        tuple(splits), few_shot, tuple(tasks), tuple(heads) if heads is not None else None, ddp,
                                        head_only, starter, classic_baseline, dict(setting_heads or {}), dict(setting_tasks or {}))
        return fn

    return wrap


_NOT_STRATEGIES = ("registry", "context")


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    package = sys.modules[__package__]  # imported before this module, its parent: looked up, not imported (no cycle)
    for module in pkgutil.iter_modules(package.__path__):  # __path__: a folder added to it is searched too
        if module.name not in _NOT_STRATEGIES and not module.name.startswith("_"):
            importlib.import_module(f"{__package__}.{module.name}")
    _discovered = True


def all_strategies() -> dict[str, StrategyEntry]:
    """Every registered strategy, by name (in registration order)."""
    _discover()
    return dict(_REGISTRY)


def starter_kinds() -> list[str]:
    """The `tlops init --strategy` starter kinds, in registration order."""
    return list(dict.fromkeys(e.starter for e in all_strategies().values() if e.starter))


def get_strategy(name: str) -> StrategyEntry:
    entries = all_strategies()
    if name not in entries:
        raise KeyError(f"unknown strategy {name!r}; valid: {', '.join(entries)}")
    return entries[name]


def check_ddp(strategy: str, execution: ExecutionConfig) -> None:
    """ConfigError unless the strategy's registry entry says its loop shards over ranks (asked when the run config
    asks for several processes: `execution.nproc_per_node * execution.nnodes > 1`)."""
    if not get_strategy(strategy).ddp:
        from tlops.errors import ConfigError

        able = [name for name, e in all_strategies().items() if e.ddp]
        raise ConfigError(f"execution.nproc_per_node={execution.nproc_per_node}, nnodes={execution.nnodes}: "
                          f"strategy {strategy!r} trains in one process; several processes are supported for "
                          f"{', '.join(able)}. Set execution.nproc_per_node and nnodes to 1")
