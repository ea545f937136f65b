"""The data watch's decision. The schedule and trigger themselves run on the native team stack in
tests/system/test_stack.py (a real PostgreSQL-backed Prefect server and a real worker)."""

from __future__ import annotations

from tlops.retrain import watch_decision


def test_watch_announces_a_change_once_and_only_against_a_champion():
    assert not watch_decision("d1", None, None, None).announce  # no champion: the schedule trains the first one
    assert not watch_decision("d1", "3", "d1", None).announce and "unchanged since champion v3" in watch_decision("d1", "3", "d1", None).message
    assert watch_decision("d2", "3", "d1", None).announce
    assert not watch_decision("d2", "3", "d1", "d2").announce  # announced already: its run is on the way
    assert watch_decision("d3", "3", "d1", "d2").announce  # changed again
