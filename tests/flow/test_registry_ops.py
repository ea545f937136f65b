"""Operating the registry on a real MLflow store: the alias history of gate and manual moves, promote,
rollback, their refusals, and the registry commands' JSON and one-line errors (in-process). Served over HTTP:
tests/system/test_serving.py; compare-and-set under concurrency against a real `mlflow server`:
tests/system/test_registry_ops.py.

The store is the zoo's tiny-text (v1 weak, v2 good, v3 kept out by a margin; the real flow on the tiny
random-weight BERT fixture, a code path, not a pretrained model), copied for each test that moves aliases."""

from __future__ import annotations

import json
import os
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tests.helpers import flow_run, tiny_config
from tests.servers import free_port
from tlops.errors import AliasMoveRefused, RegistryError


NAME = "tiny-text"


@pytest.fixture
def store(zoo, tmp_path):
    """The zoo's three versions by the gate, in a copy of its registry: v1 weak (champion first), v2 good (takes
    champion), v3 kept out by a margin."""
    from tasks.operate import connect

    uri = zoo.text.copy_store(tmp_path)
    return connect(uri), uri, zoo.text.results


def test_history_records_every_gate_move_with_both_metrics(store):
    reg, _, (v1, v2, v3) = store
    moves = reg.history(NAME)
    applied = [(m.alias, m.from_version, m.to_version) for m in moves if m.applied]
    assert applied == [("challenger", None, "1"), ("champion", None, "1"), ("challenger", "1", "2"), ("champion", "1", "2"),
                       ("challenger", "2", "3")], applied
    assert all(m.kind == "gate" and "@" in m.actor for m in moves)
    second = [m for m in moves if m.alias == "champion"][1]
    assert second.source_run == v2.run_id and second.gate.champion_version == "1"
    assert second.gate.challenger == v2.test_metrics["macro_f1"] and second.gate.champion_metric == v1.test_metrics["macro_f1"]
    assert [m.when_ms for m in moves] == sorted(m.when_ms for m in moves)


def test_promote_and_rollback_move_champion_and_are_recorded(store):
    from tasks.operate import promote, rollback

    reg, _, _ = store
    move = promote(reg, NAME, "3", "manual: v3 reviewed", command="tlops promote tiny-text 3")
    assert (move.from_version, move.to_version, move.kind) == ("2", "3", "promote") and reg.alias(NAME, "champion") == "3"
    back = rollback(reg, NAME, "v3 misbehaves in production")
    assert (back.from_version, back.to_version, back.kind) == ("3", "2", "rollback") and reg.alias(NAME, "champion") == "2"
    again = rollback(reg, NAME, "go back further")  # before v2 (by the gate) came v1
    assert again.to_version == "1" and reg.alias(NAME, "champion") == "1"
    to = rollback(reg, NAME, "pin v3", to="3")
    assert to.to_version == "3" and reg.alias(NAME, "champion") == "3"
    kinds = [(m.kind, m.from_version, m.to_version) for m in reg.history(NAME) if m.alias == "champion"]
    assert kinds[-4:] == [("promote", "2", "3"), ("rollback", "3", "2"), ("rollback", "2", "1"), ("rollback", "1", "3")]


def test_a_promote_expects_the_champion_of_when_it_started_so_of_two_started_together_one_applies(store):
    """Without --expect, a promote compares against the champion as it was when its command started (read under the
    lock from the history), not when its process got round to reading it: the second of two promotes started
    together is refused and told who moved the champion, however late it reads."""
    import threading

    from tasks.operate import connect, promote

    reg, uri, _ = store
    started = int(time.time() * 1000)  # alice and bob start `tlops promote` now; the champion is v2
    time.sleep(0.005)
    first = promote(reg, NAME, "3", "alice: v3 reviewed", started_ms=started)
    assert (first.from_version, first.to_version) == ("2", "3")
    with pytest.raises(AliasMoveRefused, match=r"champion is v3, not v2 as this move expected: it was moved by .*alice: v3 reviewed"):
        promote(reg, NAME, "1", "bob: v1 is safer", started_ms=started)  # bob's process reads only now, after alice's move
    assert reg.alias(NAME, "champion") == "3"

    # two at once, released by a barrier: exactly one applies, whichever takes the lock first
    barrier, outcomes = threading.Barrier(2), {}

    def go(version: str) -> None:
        mine = connect(uri)
        at = int(time.time() * 1000)
        barrier.wait()
        try:
            outcomes[version] = promote(mine, NAME, version, f"race {version}", started_ms=at).to_version
        except AliasMoveRefused as e:
            outcomes[version] = str(e)

    time.sleep(0.005)
    threads = [threading.Thread(target=go, args=(v,)) for v in ("1", "2")]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    won = [v for v, o in outcomes.items() if o == v]
    assert len(won) == 1 and len(outcomes) == 2, outcomes
    lost = next(o for v, o in outcomes.items() if v not in won)
    assert f"champion is v{won[0]}, not v3 as this move expected" in lost, outcomes
    assert reg.alias(NAME, "champion") == won[0]
    attempts = [m for m in reg.history(NAME) if m.kind == "promote"]
    assert [m.applied for m in attempts].count(True) == 2 and [m.applied for m in attempts].count(False) == 2


def test_refusals_name_the_thing_and_move_nothing(store):
    from tasks.operate import promote

    reg, uri, _ = store
    before = reg.alias(NAME, "champion")
    with pytest.raises(RegistryError, match=r"unknown model 'nope'; registered models: tiny-text"):
        promote(reg, "nope", "1", "x")
    with pytest.raises(RegistryError, match=r"model 'tiny-text' has no version '9'; its versions: 1, 2, 3"):
        promote(reg, NAME, "9", "x")
    with pytest.raises(RegistryError, match=r"already the champion"):
        promote(reg, NAME, before, "x")
    with pytest.raises(RegistryError, match=r"does not beat champion"):  # v1 is weaker than the champion v2
        promote(reg, NAME, "1", "try", if_better=True)
    with pytest.raises(AliasMoveRefused, match=r"champion is v2, not v1 as this move expected: it was moved by .* in between"):
        promote(reg, NAME, "3", "stale view", expected="1")
    client = MlflowClient(uri, registry_uri=uri)
    for status, metric in (("FAILED", True), ("FINISHED", False)):  # a failed run's model; an unevaluated one
        run = client.create_run(client.get_experiment_by_name("tests").experiment_id)
        if metric is False:
            client.log_param(run.info.run_id, "registry.metric", "macro_f1")
        client.set_terminated(run.info.run_id, status)
        mv = client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        with pytest.raises(RegistryError, match="is FAILED, not FINISHED" if status == "FAILED" else "has no test evaluation"):
            promote(reg, NAME, mv.version, "x")
    assert reg.alias(NAME, "champion") == before
    refused = [m for m in reg.history(NAME) if not m.applied]
    assert [m.kind for m in refused] == ["promote", "promote"] and "--if-better" in refused[0].reason


def test_rollback_without_an_earlier_champion_is_refused(tmp_path, text_dataset, tiny_bert):
    from tasks.operate import connect, rollback

    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, registry__model_name="solo")
    flow_run(cfg)
    reg = connect(cfg["tracking"]["uri"])
    with pytest.raises(RegistryError, match=r"solo: the history holds no champion before v1; name the version"):
        rollback(reg, "solo", "nothing to go back to")
    assert reg.alias("solo", "champion") == "1"


def test_cli_commands_print_json_and_one_line_errors(store, zoo):
    _, uri, _ = store
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    ok = cli("promote", NAME, "3", "--reason", "release 3", "--json", env=env)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout.strip().splitlines()[-1])["to"] == "3"
    hist = json.loads(cli("history", NAME, "--json", env=env).stdout.strip().splitlines()[-1])
    assert hist["moves"][-1]["command"] == f"tlops promote {NAME} 3 --reason 'release 3' --json"  # as typed and hist["moves"][-1]["kind"] == "promote"
    listed = json.loads(cli("models", NAME, "--json", env=env).stdout.strip().splitlines()[-1])
    assert [v["aliases"] for v in listed["versions"]] == [[], [], ["challenger", "champion"]]
    assert all(v["strategy"] == "linear_probe" and v["test_metric"] is not None and v["data_version"].endswith(".dir") for v in listed["versions"])
    table = cli("history", NAME, env=env)
    assert table.returncode == 0 and "promote" in table.stdout and "release 3" in table.stdout
    pred = cli("predict", f"models:/{NAME}@champion", "a small dog that barks at the moon", "a red car parked by the sea",
                "--proba", "--json", env=env)
    assert pred.returncode == 0, pred.stderr[-2000:]
    rows = json.loads(pred.stdout.strip().splitlines()[-1])["predictions"]
    assert len(rows) == 2 and all(r["label"] in ("animal", "food", "vehicle") for r in rows)
    assert all(abs(sum(r["proba"].values()) - 1) < 1e-5 and max(r["proba"], key=r["proba"].get) == r["label"] for r in rows)
    csv_pred = cli("predict", f"models:/{NAME}/2", "--csv", str(zoo.text.data / "test.csv"), "--json", env=env)
    assert len(json.loads(csv_pred.stdout.strip().splitlines()[-1])["predictions"]) == 18
    for args, message in [(("promote", "nope", "1", "--reason", "x"), "error: unknown model 'nope'"),
                          (("rollback", NAME, "--to", "7", "--reason", "x"), "has no version '7'"),
                          (("predict", f"models:/{NAME}@staging", "hi"), "has no alias 'staging'"),
                          (("history", NAME, "--tracking-uri", f"http://127.0.0.1:{free_port()}"), "is unreachable")]:
        bad = cli(*args, env=env)
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr[-1500:])
        assert len([line for line in bad.stderr.splitlines() if line.strip()]) <= 3, bad.stderr


def test_a_lock_left_by_a_process_killed_on_this_host_is_broken_at_once_and_a_live_holders_is_not(store):
    """SIGKILL while a run held a model's registry lock left it for STALE_AFTER_S (120 s): the next run failed with
    'the registry lock ... is held' (seen in the orphans test). Its holder's pid and start time say it is gone."""
    import json
    import socket

    import psutil

    from tasks.operate import promote
    from tasks.registry import LOCK_PREFIX, LOCK_PROCESS_TAG
    from tasks.tracking import owner_tag

    reg, _, _ = store
    dead = next(p for p in range(4_000_000, 4_100_000) if not psutil.pid_exists(p))
    reg.client.create_experiment(f"{LOCK_PREFIX}{NAME}", tags={"tlops.lock.owner": "ghost@here", LOCK_PROCESS_TAG: json.dumps(
        {"host": socket.gethostname(), "pid": dead, "started": 1.0})})
    move = promote(reg, NAME, "3", "after a killed holder")  # before: RegistryError "lock held" after the 60 s lock timeout
    assert move.applied and reg.alias(NAME, "champion") == "3"
    held = reg.client.create_experiment(f"{LOCK_PREFIX}{NAME}", tags={"tlops.lock.owner": "me@here", LOCK_PROCESS_TAG: owner_tag()})
    with pytest.raises(RegistryError, match=r"the registry lock of 'tiny-text' is held by me@here"):
        with reg.lock(NAME, timeout_s=1.0):
            pass
    reg._release(held, NAME)
