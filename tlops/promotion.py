"""The champion/challenger decision, as a pure function."""

from __future__ import annotations

from dataclasses import dataclass

from tlops.task_types import higher_is_better


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(metric: str, challenger: float, champion: float | None, margin: float) -> Decision:
    """Promote when there is no champion, or the challenger beats it by more than `margin` on the same split, in
    the metric's direction: higher for accuracy, macro_f1, r2, spearman; lower for the errors mae and rmse."""
    if champion is None:
        return Decision(True, f"no champion yet; challenger {metric}={challenger:.4f} becomes champion")
    if higher_is_better(metric):
        beats, bar = challenger > champion + margin, f"champion {champion:.4f} + margin {margin}"
    else:
        beats, bar = challenger < champion - margin, f"champion {champion:.4f} - margin {margin} (lower is better)"
    if beats:
        return Decision(True, f"challenger {metric}={challenger:.4f} {'>' if higher_is_better(metric) else '<'} {bar}")
    return Decision(False, f"challenger {metric}={challenger:.4f} does not beat {bar}; champion unchanged")
