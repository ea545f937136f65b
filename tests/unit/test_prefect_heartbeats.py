"""Flow-run heartbeats that stop with the flow (flows/prefect_heartbeats.py): same heartbeats, no blind 1 s sleep."""

from __future__ import annotations

import threading
import types

import prefect.flow_engine

from flows.prefect_heartbeats import _expected_original, send_heartbeats, stop_heartbeats_promptly


class FakeEngine:
    """What the heartbeat context reads from Prefect's flow-run engine."""

    def __init__(self, seconds):
        self.heartbeat_seconds = seconds
        self.flow_run = None
        self.beats = []
        self.logger = types.SimpleNamespace(debug=lambda *a, **k: None)

    def _build_heartbeat_event_template(self):
        return "resource", ["related"]

    def _emit_flow_run_heartbeat(self, resource, related):
        self.beats.append((resource, related, threading.current_thread().name))


def _heartbeat_threads(before):
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_installed_over_this_prefect_only_if_it_is_the_code_replaced():
    original = prefect.flow_engine._send_heartbeats
    installed = stop_heartbeats_promptly()
    if original is send_heartbeats or _expected_original(original):  # the Prefect it was written against (3.9 here)
        assert installed and prefect.flow_engine._send_heartbeats is send_heartbeats
    else:  # a Prefect whose heartbeats differ keeps its own, untouched (its flow runs are only slower)
        assert not installed and prefect.flow_engine._send_heartbeats is original


def test_refuses_a_heartbeat_context_it_was_not_written_for():
    def _send_heartbeats(engine, join_on_exit=True):  # a future Prefect's, say: waits on an event already
        yield

    assert not _expected_original(_send_heartbeats)
    assert not _expected_original(print)  # no source to read


def test_heartbeats_sent_then_the_thread_ends_with_the_flow(monkeypatch):
    # a sleep that never returns: a heartbeat loop that sleeps blind would still be alive after the join's 2 s
    monkeypatch.setattr(prefect.flow_engine, "time", types.SimpleNamespace(sleep=lambda s: threading.Event().wait()))
    engine = FakeEngine(seconds=30)
    before = set(threading.enumerate())
    with send_heartbeats(engine):
        for _ in range(500):  # the first heartbeat goes out as the flow starts
            if engine.beats:
                break
            threading.Event().wait(0.01)
        assert len(_heartbeat_threads(before)) == 1
    assert engine.beats == [("resource", ["related"], engine.beats[0][2])]
    assert engine.beats[0][2] != threading.current_thread().name
    assert _heartbeat_threads(before) == []


def test_no_heartbeats_when_prefect_turns_them_off():
    engine = FakeEngine(seconds=None)
    before = set(threading.enumerate())
    with send_heartbeats(engine):
        assert _heartbeat_threads(before) == []
    assert engine.beats == []


def test_a_finished_flow_run_sends_no_heartbeat():
    engine = FakeEngine(seconds=30)
    engine.flow_run = types.SimpleNamespace(state=types.SimpleNamespace(is_final=lambda: True))
    with send_heartbeats(engine):
        pass
    assert engine.beats == []
