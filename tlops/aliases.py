"""Alias moves of the model registry (`champion`, `challenger`): the history record and the pure rules.

A move names the version it expects the alias to point at and is refused when it points elsewhere
(compare-and-set), so two people (or two training runs) moving `champion` at once cannot silently
overwrite each other: one wins, the other is told who moved it. Every attempt, applied or refused,
becomes one history entry. Storage (MLflow) and the lock live in `tasks/registry.py`; this module only
decides.
"""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tlops.records import Gate

CHAMPION, CHALLENGER = "champion", "challenger"
MoveKind = Literal["gate", "promote", "rollback"]


class AliasMove(BaseModel):
    """One attempt to point `alias` of `model` at `to_version`."""

    model_config = ConfigDict(extra="forbid")

    model: str
    alias: str
    from_version: str | None  # what the alias pointed at when the move was decided (None: nothing)
    to_version: str
    expected: str | None  # what the mover expected it to point at
    applied: bool
    kind: MoveKind
    reason: str
    actor: str  # user@host
    when_ms: int = 0  # set by the store (the history run's start time)
    source_run: str | None = None  # the training run (gate) that made the move
    command: str | None = None  # the command line that made it
    gate: Gate | None = None  # the gate's decision with both metrics (gate moves, promote --if-better)
    entry_id: str | None = None  # the store's id of this entry

    def arrow(self) -> str:
        return f"{_v(self.from_version)} -> {_v(self.to_version)}"


def _v(version: str | None) -> str:
    return f"v{version}" if version is not None else "(none)"


def actor() -> str:
    """Who is moving: $TLOPS_ACTOR (e.g. a scheduler's identity), else user@host."""
    return os.environ.get("TLOPS_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def refusal(current: str | None, expected: str | None, last_applied: AliasMove | None, alias: str = CHAMPION) -> str | None:
    """Why a move that expects `expected` must be refused when the alias points at `current`; None if it may go."""
    if current == expected:
        return None
    who = ""
    if last_applied is not None and last_applied.to_version == current:
        who = f" by {last_applied.actor} ({last_applied.kind}: {last_applied.reason})"
    return (f"{alias} is {_v(current)}, not {_v(expected)} as this move expected: it was moved{who} in between. "
            f"Look at `tlops history` and retry against the current {alias}")


def alias_as_of(moves: list[AliasMove], alias: str, current: str | None, as_of_ms: int | None) -> str | None:
    """Where `alias` pointed at `as_of_ms`, from the recorded moves (oldest first) and where it points now: the
    version the first applied move after that moment moved it from, else `current` (nothing moved it since)."""
    if as_of_ms is None:
        return current
    later = [m for m in moves if m.applied and m.alias == alias and m.when_ms is not None and m.when_ms > as_of_ms]
    return later[0].from_version if later else current


def previous_champion(moves: list[AliasMove], current: str | None) -> str | None:
    """The champion before the current one, replaying the applied champion moves (oldest first) as a stack:
    a promotion (by hand or by the gate) pushes the champion it replaced, a rollback to the top of the stack
    pops it, so rolling back twice goes back two champions. None when the history holds no earlier champion,
    or does not end at `current` (the alias was moved outside tlops)."""
    stack: list[str | None] = []
    champion: str | None = None
    for m in moves:
        if not (m.applied and m.alias == CHAMPION):
            continue
        if m.kind == "rollback" and stack and stack[-1] == m.to_version:
            stack.pop()
        else:
            stack.append(m.from_version)
        champion = m.to_version
    if champion != current or not stack:
        return None
    return stack[-1]


def challenger_may_move(current: str | None, to_version: str) -> bool:
    """`challenger` is the newest version that passed its gates: never move it back to an older one."""
    return current is None or int(to_version) > int(current)


def as_row(m: AliasMove) -> dict[str, Any]:
    """A history entry as one flat row (tables and --json)."""
    row = {"when_ms": m.when_ms, "actor": m.actor, "alias": m.alias, "from": m.from_version, "to": m.to_version,
           "applied": m.applied, "kind": m.kind, "reason": m.reason, "source_run": m.source_run, "command": m.command}
    if m.gate is not None:
        row["gate"] = m.gate.model_dump(mode="json")
    return row
