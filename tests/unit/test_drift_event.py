"""The scheduled drift check's Prefect event and the retrain trigger that listens to it, without a server: the event's
resource names the model and carries what a trigger matches (verdict, announce), its payload the numbers; a `drift`
verdict asks for a retrain once per champion version and inputs file; `tlops schedule add --retrain-on-drift`'s trigger
matches exactly those events, and Prefect's own template renderer turns its `source` into `drift:<the check's run id>`.
The trigger firing on a real server and worker is in tests/system/test_stack.py (the schedule test)."""

from __future__ import annotations

from uuid import uuid4

from prefect.server.utilities.user_templates import render_user_template_sync

from tlops.drift import DRIFT_EVENT, announce_key, drift_event, should_announce

RESULT = {"model_uri": "models:/sched@champion", "model": "sched", "version": "3", "data": "/d/new.csv", "data_md5": "ab12",
          "reference": "/d/sched (train)", "reference_rows": 42, "new_rows": 40, "mmd2": 0.21, "mmd_p_value": 0.002,
          "domain_auc": 0.97, "verdict": "drift", "alpha": 0.01, "auc_threshold": 0.75, "run_id": "r123",
          "prediction_shift": {"kind": "classes", "total_variation": 0.4, "new_share": {"a": 1.0}, "new_confidence": 0.6},
          "most_out_of_distribution": [{"row": 0, "score": 3.0, "input": "zz"}], "reasons": ["..."]}


def test_the_event_names_the_model_and_carries_the_verdict_and_numbers():
    e = drift_event(RESULT, "nightly", announce=True)
    assert e["event"] == DRIFT_EVENT == "tlops.data.drift"
    assert e["resource"] == {"prefect.resource.id": "tlops.model.sched", "prefect.resource.name": "sched",
                             "tlops.model.version": "3", "tlops.drift.verdict": "drift", "tlops.drift.announce": "true",
                             "tlops.schedule": "nightly"}
    assert all(isinstance(v, str) for v in e["resource"].values())  # Prefect resource labels are strings
    p = e["payload"]
    assert (p["verdict"], p["mmd_p_value"], p["domain_auc"], p["run_id"], p["new_rows"], p["version"]) == ("drift", 0.002, 0.97, "r123", 40, "3")
    assert p["prediction_shift"] == {"kind": "classes", "total_variation": 0.4, "new_confidence": 0.6}  # numbers only
    assert "most_out_of_distribution" not in p  # the inputs themselves stay in the MLflow run
    assert drift_event({**RESULT, "verdict": "no drift"}, "nightly", announce=False)["resource"]["tlops.drift.announce"] == "false"


def test_drift_asks_for_a_retrain_once_per_champion_version_and_inputs():
    key = announce_key("3", "ab12")
    assert should_announce("drift", key, None)
    assert not should_announce("drift", key, key)  # the same inputs against the same champion: its retrain is on the way
    assert should_announce("drift", announce_key("4", "ab12"), key)  # a new champion still sees them drifted
    assert should_announce("drift", announce_key("3", "cd34"), key)  # new inputs
    assert not should_announce("possible drift", key, None) and not should_announce("no drift", key, None)


def test_retrain_on_drift_trigger_matches_the_models_announced_drift_and_names_the_check():
    from flows.schedule import drift_trigger

    params = {"registry": {"model_name": "sched"}}
    t = drift_trigger("on-data", "sched", params)
    assert t.expect == {DRIFT_EVENT} and t.posture == "Reactive" and t.threshold == 1
    labels = {k: v for k, v in t.match.model_dump().items()}
    assert labels == {"prefect.resource.id": "tlops.model.sched", "tlops.drift.verdict": "drift", "tlops.drift.announce": "true"}
    t.set_deployment_id(uuid4())  # as .deploy() does
    automation = t.as_automation()  # what deploying it creates: a run-deployment action with these parameters
    assert automation.actions[0].parameters["config"] == params and automation.trigger.expect == {DRIFT_EVENT}
    event = drift_event(RESULT, "nightly", announce=True)
    for label, value in labels.items():  # the announced event's resource has every label the trigger matches
        assert event["resource"][label] == value
    rendered = render_user_template_sync(t.parameters["source"], {"event": {"payload": event["payload"]}})
    assert rendered == "trigger:tlops.data.drift (on-data) drift:r123"


def test_schedule_drift_without_a_server_says_what_it_needs_in_one_line(tmp_path):
    import os

    from tests.cli import cli, no_prefect_api

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    with no_prefect_api():
        out = cli("schedule", "drift", "models:/sched@champion", "--data", str(tmp_path / "new.csv"), "--cron", "0 * * * *", env=env)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: tlops schedule needs a Prefect server"), lines
