"""Two runs logging the same dataset at the same moment both succeed (MLflow's SQL store looks the dataset up,
then inserts it: the loser of that race gets a unique-constraint error, which tlops retries)."""

from __future__ import annotations

import threading

from mlflow.tracking import MlflowClient
from sqlalchemy import event

from tasks.tracking import log_dataset_inputs
from tlops.data.dataset import load_dataset
from tlops.data.versions import dir_md5


def test_two_runs_logging_one_dataset_at_once_both_succeed(tmp_path, text_dataset):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("race")
    runs = [client.create_run(experiment).info.run_id for _ in range(2)]
    ds, md5 = load_dataset(text_dataset), dir_md5(text_dataset)

    # force the race: each thread's first dataset lookup waits until both have looked (and found nothing)
    both_looked, waited = threading.Barrier(2, timeout=60), set()

    def hold_first_lookup(conn, cursor, statement, *args):
        me = threading.get_ident()
        if statement.lstrip().upper().startswith("SELECT") and "FROM datasets" in statement and me not in waited:
            waited.add(me)
            both_looked.wait()

    engine = client._tracking_client.store.engine
    event.listen(engine, "after_cursor_execute", hold_first_lookup)
    errors: list[BaseException] = []

    def log(run_id: str) -> None:
        try:
            log_dataset_inputs(client, run_id, ds, md5)
        except BaseException as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=log, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    event.remove(engine, "after_cursor_execute", hold_first_lookup)

    assert errors == []
    assert len(waited) == 2  # both lookups happened before either insert: the race did occur
    for run_id in runs:
        names = sorted(i.dataset.name for i in client.get_run(run_id).inputs.dataset_inputs)
        assert names == sorted(f"{ds.name}-{s}" for s in ds.splits)
    # one dataset row per split in the experiment, shared by both runs
    ids = {run_id: {i.dataset.name: i.dataset.digest for i in client.get_run(run_id).inputs.dataset_inputs} for run_id in runs}
    assert ids[runs[0]] == ids[runs[1]]
