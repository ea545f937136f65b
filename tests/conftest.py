"""The suite's tiers and shared fixtures.

Tiers by folder (a test's marks come from where it lives, so it cannot sit in the wrong tier by a forgotten
decorator):
- `tests/unit`: no server, no subprocess, tiny in-memory or temp-folder fixtures; seconds. Starting a process fails
  the test (move it to tests/system).
- `tests/flow`: the Prefect + MLflow flow in-process, on tiny random-weight backbones, against the session's one
  Prefect test harness and SQLite MLflow stores; CLI commands in-process through typer's runner (`tests.cli.cli`).
- `tests/system`: real servers, subprocesses, signals, the PostgreSQL stack, real pretrained weights, the demo data.
`make test-fast` runs unit + flow; `make test` (CI) runs all three and prints each tier's time at the end.

Unit tests use a tiny random-weight BERT saved to a temp folder: it exercises the real Hugging Face loading code
path and is NOT a pretrained model (the system tier uses real MiniLM)."""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers import make_text_dataset, make_tiny_bert

# TLOPS_LOCAL_SERVER=temporary: a test's `tlops run` without PREFECT_API_URL gets a server that ends with it (nothing
# outlives the suite); tests/system/test_local_server.py covers the kept server, the default.
for _k, _v in {"TLOPS_LOCAL_SERVER": "temporary", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
               "GX_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
               "TOKENIZERS_PARALLELISM": "false", "DO_NOT_TRACK": "1"}.items():
    os.environ.setdefault(_k, _v)

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "flow", "system")
# fixtures that start servers or orchestration: a unit test may not use them, a flow test may not use the system's
FLOW_FIXTURES = {"prefect_api", "zoo"}
SYSTEM_FIXTURES = {"mlflow_server", "stack"}


def _tier(path: Path) -> str | None:
    try:
        rel = Path(path).resolve().relative_to(TESTS)
    except ValueError:
        return None
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in TIERS else None


def pytest_configure(config):
    for tier, what in (("unit", "no server, no subprocess; seconds (tests/unit)"),
                       ("flow", "the flow in-process on tiny random-weight backbones (tests/flow)"),
                       ("system", "real servers, subprocesses, signals, the stack, real weights, demo data (tests/system)")):
        config.addinivalue_line("markers", f"{tier}: {what}")


def pytest_collection_modifyitems(session, config, items):
    """Mark each test by its folder, refuse tests outside the tiers or using a costlier tier's fixtures, and run
    the tiers in order (unit, flow, system): the cheap failures come first."""
    problems = []
    for item in items:
        tier = _tier(item.path)
        if tier is None:
            problems.append(f"{item.nodeid}: tests live in tests/unit, tests/flow or tests/system")
            continue
        item.add_marker(getattr(pytest.mark, tier))
        item.stash[TIER_KEY] = tier
        used = set(getattr(item, "fixturenames", ()))
        too_costly = (used & (FLOW_FIXTURES | SYSTEM_FIXTURES)) if tier == "unit" else (used & SYSTEM_FIXTURES) if tier == "flow" else set()
        if too_costly:
            problems.append(f"{item.nodeid}: a {tier} test uses {', '.join(sorted(too_costly))}; move it to the tier that starts those")
    if problems:
        raise pytest.UsageError("\n".join(problems))
    items.sort(key=lambda it: TIERS.index(it.stash[TIER_KEY]))


TIER_KEY = pytest.StashKey[str]()
_times: dict[str, float] = defaultdict(float)
_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def pytest_runtest_logreport(report):
    parts = report.nodeid.split("::")[0].split("/")  # rootdir-relative: not moved by a test that changed directory
    tier = parts[1] if len(parts) > 2 and parts[0] == "tests" and parts[1] in TIERS else None
    if tier is None:
        return
    _times[tier] += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _counts[tier]["passed" if report.passed else "skipped" if report.skipped else "failed"] += 1
    elif report.when == "teardown" and report.failed:
        _counts[tier]["error"] += 1


def pytest_terminal_summary(terminalreporter):
    if not _times:
        return
    tr = terminalreporter
    tr.write_sep("=", "time per tier (setup + call + teardown of its tests)")
    for tier in TIERS:
        if tier in _times:
            c = _counts[tier]
            tr.write_line(f"{tier:<7} {sum(c.values()):>4} tests  {c['passed']:>4} passed  {c['failed'] + c['error']:>3} failed  "
                          f"{c['skipped']:>3} skipped  {_times[tier]:8.1f} s  ({_times[tier] / 60:.1f} min)")
    total = sum(_times.values())
    tr.write_line(f"{'all':<7} {sum(sum(c.values()) for c in _counts.values()):>4} tests{'':39}{total:8.1f} s  ({total / 60:.1f} min)")


# ---- the unit tier starts no process ---------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _unit_tier_starts_no_process(request, monkeypatch):
    if request.node.stash.get(TIER_KEY, None) != "unit":
        yield
        return

    def refuse(self, args, *a, **k):
        raise AssertionError(f"a unit test started a process ({args!r}): move it to tests/system, or test the code in-process")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield


# ---- shared fixtures --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """Under `TLOPS_TEST_ZOO` (make test): one folder for every pytest process of the run, so the zoo's configs, which
    name it, hold in each of them."""
    shared = os.environ.get("TLOPS_TEST_ZOO")
    if not shared:
        return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
    from filelock import FileLock

    folder = Path(shared) / "tiny-bert"
    with FileLock(f"{folder}.lock"):
        if not (folder / "done").exists():
            make_tiny_bert(folder)
            (folder / "done").touch()
    return folder


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


@pytest.fixture
def image_dataset(tmp_path) -> Path:
    from tests.helpers import make_image_dataset

    return make_image_dataset(tmp_path / "images")


@pytest.fixture
def audio_dataset(tmp_path) -> Path:
    from tests.helpers import make_audio_dataset

    return make_audio_dataset(tmp_path / "audio")


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, tiny_bert, prefect_api):
    """Registered models trained once per session, each on first use (tests/zoo.py); under `TLOPS_TEST_ZOO` (make test)
    once per run of the suite, shared by its pytest processes."""
    from tests.zoo import SHARED_ENV, Zoo

    shared = os.environ.get(SHARED_ENV)
    root = Path(shared) / "zoo" if shared else tmp_path_factory.mktemp("zoo")
    root.mkdir(parents=True, exist_ok=True)
    return Zoo(root, tiny_bert)


def pytest_sessionstart(session):
    import platform

    import torch

    # the tiny models here gain nothing from intra-op threads, and on 2 busy cores their spin-waits cost up to ~7x
    # (measured on the meta-learning tests); processes the tests start keep torch's default
    torch.set_num_threads(1)
    platform.processor()  # runs `uname -p` once and caches it (MLflow asks on import): not a process a unit test started
    import matplotlib

    if not any(Path(matplotlib.get_cachedir()).glob("fontlist-*.json")):  # a fresh machine (`make setup; make test-fast`)
        import matplotlib.font_manager  # noqa: F401  builds the font cache once, running `fc-list`: not a unit test's process


@pytest.fixture(autouse=True)
def _mlflow_uris_stay_the_tests():
    """MLflow's set_tracking_uri/set_registry_uri (called by the flow and the registry commands in-process) also export
    MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI for child processes: without this, a later test's subprocess (a fresh
    process, `mlflow models serve`) would inherit the store of whichever test ran before it."""
    import mlflow

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {k: os.environ.get(k) for k in keys}
    tracking, registry = mlflow.tracking._tracking_service.utils._tracking_uri, mlflow.tracking._model_registry.utils._registry_uri
    yield
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    mlflow.tracking._tracking_service.utils._tracking_uri = tracking
    mlflow.tracking._model_registry.utils._registry_uri = registry


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One real `mlflow server` (SQLite store, artifacts served) for the system tests that use a tracking server
    without stopping it; each test registers its own model name. -> (url, the server's folder)."""
    from tests.servers import Services, start_mlflow_server

    root = tmp_path_factory.mktemp("mlflow-server")
    svc = Services(root)
    try:
        yield start_mlflow_server(svc), root
    finally:
        svc.stop()
