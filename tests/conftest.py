"""Shared fixtures. Unit tests use a tiny random-weight BERT saved to a temp folder: it exercises the
real Hugging Face loading code path and is NOT a pretrained model (the `slow` tests use real MiniLM)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import make_text_dataset, make_tiny_bert

# TLOPS_LOCAL_SERVER=temporary: a test's `tlops run` without PREFECT_API_URL gets a server that ends with it (nothing
# outlives the suite); tests/test_local_server.py covers the kept server, the default.
for _k, _v in {"TLOPS_LOCAL_SERVER": "temporary", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
               "GX_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
               "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def text_dataset(tmp_path) -> Path:
    return make_text_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect server (real API, SQLite) for all flow tests of the session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()

