"""Hooks into the training loop: epoch logging (the flow's MLflow logger is one), live progress
(`tlops.progress`) and fault injection for the crash-safety tests. The loop calls them; they never change
what it computes."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tlops.training.loop import LoopState

# Fault injection for the crash-safety tests: SIGKILL this process (or raise) right after optimizer step N.
SIGKILL_ENV = "TLOPS_FAULT_SIGKILL_AT_STEP"
RAISE_ENV = "TLOPS_FAULT_RAISE_AT_STEP"


class Callback:
    def on_epoch_begin(self, state: LoopState, batches: int, epochs: int) -> None:
        """Before the epoch's first batch (or the first batch left, `state.batch`, in a resumed epoch)."""

    def on_step_end(self, state: LoopState) -> None:
        """After an optimizer step (and any mid-epoch checkpoint it triggered)."""

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        """After an epoch's validation and checkpoint; also replayed for the epochs a resumed run inherits."""

    def on_fit_end(self, state: LoopState) -> None:
        """When `fit` ends, normally or by an exception (a display must stop before the error is printed)."""


class EpochRows(Callback):
    """Hands each epoch's row to `log` as the epoch ends (a caller's progress line or history)."""

    def __init__(self, log):
        self.log = log

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        self.log(row)


def epoch_rows(log) -> list[Callback]:
    """`[EpochRows(log)]`, or no callback when `log` is None."""
    return [EpochRows(log)] if log is not None else []


class KillAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state: LoopState) -> None:
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class InjectedFault(RuntimeError):
    pass


class RaiseAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state: LoopState) -> None:
        if state.global_step == self.step:
            raise InjectedFault(f"injected failure after optimizer step {self.step} ({RAISE_ENV})")


def faults_from_env() -> list[Callback]:
    faults: list[Callback] = []
    if int(os.environ.get(SIGKILL_ENV, "0") or 0):
        faults.append(KillAtStep(int(os.environ[SIGKILL_ENV])))
    if int(os.environ.get(RAISE_ENV, "0") or 0):
        faults.append(RaiseAtStep(int(os.environ[RAISE_ENV])))
    return faults
