"""The flow tier: every test here runs against the session's one Prefect test harness (a real Prefect API on
SQLite, started once), and each new MLflow SQLite store starts as a copy of one empty store that tlops's own
`init_sqlite_store` built once per process (`_seeded_stores`)."""

import contextlib
import os
import sqlite3
import time
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _prefect(prefect_api):
    return prefect_api


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """An empty store as `tasks.tracking.init_sqlite_store` leaves it (MLflow's tables migrated, write-ahead logging)."""
    from tasks.tracking import init_sqlite_store

    db = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    init_sqlite_store(f"sqlite:///{db}")
    return db


@pytest.fixture(autouse=True)
def _seeded_stores(monkeypatch, _empty_store):
    """A flow test's new SQLite store is the empty store copied, then opened by the real `init_sqlite_store`: MLflow's
    migrations of a new store (~100 Alembic steps) cost ~2 s of CPU each, and the flow tier makes one per test.
    Creating a store from nothing, and concurrent first runs racing to create one, are tested in
    tests/unit/test_tracking_race.py and by every system test's fresh project."""
    import tasks.tracking as tracking

    init = tracking.init_sqlite_store

    def seeded(uri: str) -> None:
        db = Path(uri.removeprefix("sqlite:///"))
        if uri not in tracking._initialised and not db.exists():
            db.parent.mkdir(parents=True, exist_ok=True)
            now = int(time.time() * 1000)
            with contextlib.closing(sqlite3.connect(_empty_store)) as src, contextlib.closing(sqlite3.connect(db)) as dst:
                src.backup(dst)
                # what MLflow writes for the Default experiment of a store it creates here and now
                dst.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                            "WHERE experiment_id = 0", (os.path.abspath(os.path.join("mlruns", "0")), now, now))
                dst.commit()
        init(uri)

    monkeypatch.setattr(tracking, "init_sqlite_store", seeded)
