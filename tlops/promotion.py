"""The champion/challenger decision, as a pure function."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(metric: str, challenger: float, champion: float | None, margin: float) -> Decision:
    """Promote when there is no champion, or the challenger beats it by more than `margin` on the same split."""
    if champion is None:
        return Decision(True, f"no champion yet; challenger {metric}={challenger:.4f} becomes champion")
    if challenger > champion + margin:
        return Decision(True, f"challenger {metric}={challenger:.4f} > champion {champion:.4f} + margin {margin}")
    return Decision(False, f"challenger {metric}={challenger:.4f} does not beat champion {champion:.4f} + margin {margin}; champion unchanged")
