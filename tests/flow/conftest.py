"""The flow tier: every test here runs against the session's one Prefect test harness (a real Prefect API on
SQLite, started once)."""

import pytest


@pytest.fixture(autouse=True)
def _prefect(prefect_api):
    return prefect_api
