"""Transfer strategies: one module each, registered by name (see `registry`)."""

from tlops.strategies.registry import StrategyEntry, all_strategies, get_strategy, register_strategy

__all__ = ["StrategyEntry", "all_strategies", "get_strategy", "register_strategy"]  # TrainContext: tlops.strategies.context
