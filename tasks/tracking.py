"""MLflow set-up, the run's lifecycle, and small logging helpers shared by the tasks (no hyperparameters or
URIs hard-coded here)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import mlflow
import yaml
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from tlops.config import RunConfig, default_run_name
from tlops.data_version import short_data_version
from tlops.repro import data_version, default_dvc_cache, git_commit, package_versions
from tlops.run_params import applicable_params, flatten  # noqa: F401  (flatten: used by the features task)
from tlops.secrets import adopt_credentials, mask, mask_obj
from tlops.task_types import all_task_types
from tlops.training.callbacks import Callback

REPO_ROOT = Path(__file__).resolve().parent.parent
BATCH_LIMIT = 1000  # MLflow's log_batch limit on metrics per call


def default_tracking_uri(explicit: str | None = None) -> str:
    """The given URI, then $MLFLOW_TRACKING_URI, then SQLite under ./mlruns (artifacts beside it); credentials
    taken out (see `adopt_credentials`)."""
    return adopt_credentials(explicit or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlruns').resolve()}/mlflow.db")


def tracking_uri(cfg: RunConfig) -> str:
    return default_tracking_uri(cfg.tracking.uri)


_reachable: set[str] = set()

# MLflow's SQL stores: what a SQLAlchemy URI of each backend may name as its (synchronous) driver: (SQLAlchemy's driver
# name, the module it imports, the package that provides it), the one tlops installs first (`tlops[team]`: psycopg2-binary)
DB_DRIVERS = {
    "postgresql": (("psycopg2", "psycopg2", "psycopg2-binary"), ("psycopg", "psycopg", "psycopg[binary]"), ("pg8000", "pg8000", "pg8000")),
    "mysql": (("pymysql", "pymysql", "pymysql"), ("mysqldb", "MySQLdb", "mysqlclient"),
              ("mysqlconnector", "mysql.connector", "mysql-connector-python")),
    "mssql": (("pyodbc", "pyodbc", "pyodbc"), ("pymssql", "pymssql", "pymssql")),
}
DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
FIX_URI = "or point MLFLOW_TRACKING_URI / --tracking-uri / tracking.uri at a running one"


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds with one line, not after MLflow's minutes of retries and pages of tracebacks, when an HTTP tracking
    server does not answer, or a database URI names a driver that is not installed or a database that does not answer or
    refuses the connection (checked once per process and URI)."""
    scheme = urlparse(uri).scheme
    if uri in _reachable:
        return
    if scheme.split("+", 1)[0] in DB_DRIVERS:
        _check_database(uri, timeout_s)
        _reachable.add(uri)
        return
    if scheme not in ("http", "https"):
        return
    import requests

    from tlops.errors import RegistryError

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s)
    except requests.RequestException as e:
        raise RegistryError(f"tracking server {mask(uri)} is unreachable ({type(e).__name__}); start it (`mlflow server ...`) "
                            f"{FIX_URI}") from None
    _reachable.add(uri)


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check_database(uri: str, timeout_s: float) -> None:
    """A SQLAlchemy tracking URI (postgresql[+driver]://, mysql..., mssql...): its driver is importable, the database
    answers within `timeout_s` and accepts the connection (the password comes from the environment: PGPASSWORD)."""
    import math

    import sqlalchemy
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from tlops.errors import RegistryError

    shown = mask(uri)
    try:
        url = make_url(uri)
        dialect = url.get_dialect()
    except Exception as e:  # ArgumentError (not a URL), NoSuchModuleError (a driver SQLAlchemy does not know)
        backend = urlparse(uri).scheme.split("+", 1)[0]
        known = ", ".join(f"{backend}+{d}://" for d, _, _ in DB_DRIVERS[backend])
        raise RegistryError(f"the tracking URI {shown} is not one SQLAlchemy can use ({type(e).__name__}: "
                            f"{mask(str(e).splitlines()[0])}); write it {known.split(', ')[0]}... (drivers: {known})") from None
    backend, driver = url.get_backend_name(), dialect.driver
    try:
        dialect.import_dbapi()
    except ImportError as e:
        rest = shown.split("://", 1)[1]
        package = next((pkg for d, _, pkg in DB_DRIVERS[backend] if d == driver), driver)
        usable = [d for d, module, _ in DB_DRIVERS[backend] if d != driver and _installed(module)]
        fix = (f"write it {backend}+{usable[0]}://{rest} ({usable[0]} is installed here), or `pip install '{package}'`" if usable
               else f"`pip install '{package}'`" + (f", or `pip install psycopg2-binary` and write it postgresql+psycopg2://{rest}"
                                                      if backend == "postgresql" and driver != "psycopg2" else ""))
        raise RegistryError(f"the tracking URI {shown} needs SQLAlchemy's {driver} driver, whose package is not installed "
                            f"({e}): {fix}") from None
    host, port = url.host, url.port or DB_PORTS[backend]
    if host and not host.startswith("/"):  # TCP first: a refused or silent port is named in seconds, whatever the driver
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as e:
            why = ("connection refused" if isinstance(e, ConnectionRefusedError) else
                   f"no answer within {timeout_s:g} s" if isinstance(e, TimeoutError) else
                   f"unknown host {host}" if isinstance(e, socket.gaierror) else f"{type(e).__name__}: {e.strerror or e}")
            raise RegistryError(f"the tracking database {shown} is unreachable ({why} at {host}:{port}); start it, "
                                f"{FIX_URI}") from None
    timeouts = {"psycopg2": "connect_timeout", "psycopg": "connect_timeout", "pymysql": "connect_timeout",
                "mysqldb": "connect_timeout", "pg8000": "timeout", "pymssql": "login_timeout", "pyodbc": "timeout"}
    connect_args = {timeouts[driver]: max(2, math.ceil(timeout_s))} if driver in timeouts else {}
    engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect():
            pass
    except Exception as e:  # OperationalError: wrong password, unknown database or user, a server that hangs up
        detail = next((line.strip() for line in str(getattr(e, "orig", None) or e).splitlines() if line.strip()), type(e).__name__)
        raise RegistryError(f"the tracking database {shown} did not accept the connection ({mask(detail)}); check the user, host and "
                            f"database in the URI and its password (PGPASSWORD for PostgreSQL), {FIX_URI}") from None
    finally:
        engine.dispose()


_initialised: set[str] = set()


def init_sqlite_store(uri: str) -> None:
    """Create (or migrate) a SQLite store once, under a file lock: concurrent first runs otherwise race
    through MLflow's table migrations ("duplicate column name", seen with 3 of 4 runs started together on
    a fresh store). Then switch it to write-ahead logging, so readers do not block the writer."""
    if uri in _initialised:
        return
    import fcntl
    import sqlite3

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / ".tlops-init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(uri).search_experiments(max_results=1)  # builds the store: creates or migrates its tables
        with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: set once, for every later connection
    _initialised.add(uri)


# MLflow 3's UI opens an experiment by its kind; without this tag it asks, or opens the GenAI view (traces, latency):
# tlops's runs are model training ("Machine learning" in the UI's switch).
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def setup(cfg: RunConfig) -> tuple[MlflowClient, str]:
    """Point MLflow at the configured store; return a client and the experiment id."""
    uri = tracking_uri(cfg)
    check_reachable(uri)
    if uri.startswith("sqlite:///"):
        init_sqlite_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:  # made before tlops set it, or by hand: MLflow 3's UI would ask or guess GenAI
            with contextlib.suppress(mlflow.exceptions.MlflowException):  # a UI hint: a user who may not edit it still runs
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return client, exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # keep artifacts under mlruns/ next to the database, whatever the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    try:
        return client, client.create_experiment(cfg.tracking.experiment, artifact_location=location,
                                                tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
    except mlflow.exceptions.MlflowException:  # created concurrently
        return client, client.get_experiment_by_name(cfg.tracking.experiment).experiment_id


def log_json(client: MlflowClient, run_id: str, obj, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / Path(artifact_file).name
        p.write_text(json.dumps(obj, indent=1, default=str))
        parent = str(Path(artifact_file).parent)
        client.log_artifact(run_id, str(p), None if parent == "." else parent)


def log_metrics(client: MlflowClient, run_id: str, metrics: list[Metric]) -> None:
    for i in range(0, len(metrics), BATCH_LIMIT):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH_LIMIT])


def owner_tag() -> str:
    """Which process owns a run: host, pid and the pid's start time (pids are reused)."""
    import psutil

    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()})


def _alive(owner: dict) -> bool:
    import psutil

    try:
        return abs(psutil.Process(owner["pid"]).create_time() - owner["started"]) < 1e-3
    except (psutil.NoSuchProcess, KeyError, TypeError):
        return False


def process_ended_here(owner: dict) -> bool:
    """Whether `owner` (an `owner_tag`) was a process on this host that no longer runs; another host's is unknown here."""
    return owner.get("host") == socket.gethostname() and not _alive(owner)


def close_orphaned_runs(client: MlflowClient, experiment_id: str, by_run: str | None = None) -> list[str]:
    """Runs still RUNNING whose owning process on this host is gone (killed by SIGKILL, OOM, power loss):
    mark them KILLED with the reason and remove their scratch folder (`<work_dir>/<run id>`; checkpoints live in
    `<work_dir>/checkpoints`, so a rerun still resumes). Runs owned by other hosts are left alone (their liveness
    is unknown here)."""
    closed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        raw = run.data.tags.get("tlops.owner")
        if not raw:
            continue
        owner = json.loads(raw)
        if not process_ended_here(owner):
            continue
        client.set_tag(run.info.run_id, "tlops.error",
                       f"process {owner['pid']} on {owner['host']} ended without closing this run (killed?); "
                       f"marked KILLED{' by run ' + by_run if by_run else ''}")
        client.set_tag(run.info.run_id, OUTCOME_TAG, "killed")
        client.set_terminated(run.info.run_id, "KILLED")
        mark_versions_incomplete(client, run.info.run_id, f"KILLED: process {owner['pid']} on {owner['host']} ended without closing it")
        if work := run.data.params.get("execution.work_dir"):
            shutil.rmtree(Path(work) / run.info.run_id, ignore_errors=True)
        closed.append(run.info.run_id)
    return closed


INCOMPLETE_TAG = "tlops.incomplete"


def mark_versions_incomplete(client: MlflowClient, run_id: str, why: str) -> list[str]:
    """Model versions registered from a run that ended before it finished (killed, even by SIGKILL, or failed, while
    registering or in the gate): tagged `tlops.incomplete=true`, with a description saying so (`tlops models NAME` shows
    them as incomplete). Returns them as `name/version`; none when the run registered nothing (the usual case)."""
    try:
        versions = client.search_model_versions(f"run_id = '{run_id}'")
    except mlflow.exceptions.MlflowException:
        return []
    marked = []
    for mv in versions:
        note = (f"**Incomplete**: run `{run_id}` that registered this version ended before it finished ({why}); its "
                "registration or promotion gate did not complete. Do not serve or promote it: train and register it again "
                "with `tlops run`.")
        client.set_model_version_tag(mv.name, mv.version, INCOMPLETE_TAG, "true")
        client.update_model_version(mv.name, mv.version, description=note + (f"\n\n{mv.description}" if mv.description else ""))
        marked.append(f"{mv.name}/{mv.version}")
    return marked


def _data_kind(cfg: RunConfig) -> tuple[str | None, str | None]:
    """(modality, task) from the data's dataset.yaml; None where it cannot be read (validation reports why)."""
    try:
        meta = yaml.safe_load((Path(cfg.data.path) / "dataset.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None, None
    if not isinstance(meta, dict):
        return None, None
    modality = meta.get("modality") if meta.get("modality") in ("text", "image", "audio") else None
    task = meta.get("task") or "classification"
    return modality, task if task in all_task_types() else None  # a registered task type (tlops.task_types)


def _strategy_splits(cfg: RunConfig) -> tuple[str, ...]:
    from tlops.strategies import get_strategy

    return get_strategy(cfg.strategy.name).splits


def _start_run(client: MlflowClient, experiment_id: str, cfg: RunConfig, source: str) -> str:
    """Create the run with everything an audit needs up front: resolved config, data md5, git commit,
    seed, package versions. Closes this host's orphaned runs on the way."""
    run = client.create_run(experiment_id, tags={"mlflow.runName": cfg.tracking.run_name or default_run_name(cfg.registry.model_name),
                                                 "tlops.strategy": cfg.strategy.name, "tlops.config_source": source,
                                                 "tlops.owner": owner_tag()})
    run_id = run.info.run_id
    closed = close_orphaned_runs(client, experiment_id, by_run=run_id)
    if closed:
        client.set_tag(run_id, "tlops.closed_orphans", ",".join(closed))
    git = git_commit(REPO_ROOT)
    data = data_version(cfg.data.path, store_in=cfg.data.dvc_cache or default_dvc_cache(REPO_ROOT))  # kept for `tlops audit`
    modality, task = _data_kind(cfg)
    params = applicable_params(mask_obj(cfg.model_dump()), modality, uses_unlabeled="unlabeled" in _strategy_splits(cfg), task=task)
    tags = {"git.commit": git["commit"] or "none", "git.dirty": str(git["dirty"]),
            **({"data.dvc_md5": data["dvc_md5"]} if data["dvc_md5"] else {}),  # absent, not "none", when no .dvc file tracks it
            "data.dataset_md5": data["dataset_md5"], "data.dvc_status": data["dvc_status"][:5000],
            "data.version_md5": data["version_md5"], "data.version_store": data["version_store"] or "none",
            "mlflow.source.git.commit": git["commit"] or "none", "tlops.seed": str(cfg.seed)}
    # one call, not one per tag: against a tracking server each call is an HTTP round trip
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()], tags=[RunTag(k, v) for k, v in tags.items()])
    log_json(client, run_id, mask_obj({"git": git, "data": data, "packages": package_versions()}), "provenance.json")
    with run_left_running(run_id):
        mlflow.log_text(yaml.safe_dump(mask_obj(cfg.model_dump()), sort_keys=False), "config.yaml")
    return run_id


@contextlib.contextmanager
def run_left_running(run_id: str):
    """`mlflow.start_run(run_id)` for fluent logging (`log_model`, `log_text`), leaving the run RUNNING, never FINISHED, when the block
    ends: the gate is still to come, and a run killed anywhere after this (even between the version's registration and
    the block's end) must stay RUNNING so the next run on this host marks it KILLED (tracked_run sets the final status).
    `with mlflow.start_run(...)` ended it FINISHED and put RUNNING back a moment later: a kill in between left a killed
    run FINISHED (tests/system/test_orphans.py caught it once in a fresh-clone make test). Also where the run starts
    (its config.yaml) and at registration."""
    mlflow.start_run(run_id=run_id)
    try:
        yield
    finally:
        mlflow.end_run(status="RUNNING")


def _stopped_from_outside(e: BaseException) -> bool:
    """Ctrl-C, or SIGTERM (Prefect's engine turns it into TerminationSignal): the run was stopped, it did not fail."""
    from prefect.exceptions import TerminationSignal

    return isinstance(e, (KeyboardInterrupt, TerminationSignal))


def _reason(e: BaseException) -> str:
    import signal

    from prefect.exceptions import TerminationSignal

    if isinstance(e, TerminationSignal):
        return f"TerminationSignal: stopped by signal {e.signal} ({signal.Signals(e.signal).name})"
    return f"{type(e).__name__}: {e}"


def _raise_if_server_gone(uri: str, run_id: str, error: BaseException, closing: Exception) -> None:
    """When closing the run failed because an HTTP tracking server no longer answers, raise the error users can act on."""
    if urlparse(uri).scheme not in ("http", "https"):
        return
    import requests

    from tlops.errors import RegistryError

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5)
        return  # it answers: closing failed for another reason
    except requests.RequestException:
        pass
    raise RegistryError(f"the MLflow tracking server {mask(uri)} stopped answering during run {run_id} "
                        f"({mask(type(error).__name__)}); the run stays RUNNING there until the next `tlops run` on this "
                        f"host marks it KILLED, and checkpoints are kept: start the server again and rerun the same "
                        f"command to resume") from closing


OUTCOME_TAG = "tlops.outcome"  # finished | invalid_data | invalid_config | failed | killed


@contextlib.contextmanager
def tracked_run(cfg: RunConfig, source: str) -> Iterator[tuple[MlflowClient, str]]:
    """The MLflow run of one `tlops run`, start to end: FINISHED when the body returns, FAILED when it raises
    (the error kept in the tag `tlops.error`), KILLED on Ctrl-C or SIGTERM; the tag `tlops.outcome` says which in one
    word a run list can filter on (finished, invalid_data, invalid_config, failed, killed; README, "What the MLflow run
    records"). (A SIGKILLed process cannot close its run: `close_orphaned_runs` marks it KILLED at the next run on this
    host.)"""
    client, experiment_id = setup(cfg)
    run_id = _start_run(client, experiment_id, cfg, source)
    try:
        yield client, run_id
    except BaseException as e:
        try:
            client.set_tag(run_id, "tlops.error", mask(_reason(e))[:5000])
            status = RunStatus.KILLED if _stopped_from_outside(e) else RunStatus.FAILED
            client.set_tag(run_id, OUTCOME_TAG, outcome_of(e, status))
            client.set_terminated(run_id, RunStatus.to_string(status))
            with contextlib.suppress(Exception):  # nothing here may hide the error that ended the run
                mark_versions_incomplete(client, run_id, f"{RunStatus.to_string(status)}: {mask(_reason(e))[:300]}")
        except Exception as closing:  # the tracking server went away mid-run: one clear line, not pages of retries
            _raise_if_server_gone(tracking_uri(cfg), run_id, e, closing)
            raise
        raise
    client.set_tag(run_id, OUTCOME_TAG, "finished")
    client.set_terminated(run_id, "FINISHED")


def outcome_of(e: BaseException, status: int) -> str:
    """A run's `tlops.outcome` when it raised: `invalid_data` (its data or their validation refused, before training),
    `invalid_config`, `killed` or `failed`."""
    from tlops.errors import ConfigError, DataError, ValidationFailed

    if status == RunStatus.KILLED:
        return "killed"
    return "invalid_data" if isinstance(e, (DataError, ValidationFailed)) else "invalid_config" if isinstance(e, ConfigError) else "failed"


def epoch_metric_name(key: str) -> str:
    """An epoch row's key as a metric: `train_` marks what the train step logs per epoch, once (`train_loss`, not
    `train_train_loss`; `train_val_macro_f1`)."""
    return key if key.startswith("train_") else f"train_{key}"


def epoch_metrics(row: dict, now: int) -> list[Metric]:
    return [Metric(epoch_metric_name(k), float(v), now, int(row["epoch"])) for k, v in row.items() if k != "epoch"]


class EpochLogger(Callback):
    """Logs each epoch's row to the run as it ends (one MLflow call per epoch, never per step); `log_rest`
    adds rows of strategies that do not run the loop (a probe's curve) at the end."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id
        self.logged: set[int] = set()

    def on_epoch_end(self, state, row: dict[str, float]) -> None:
        self.client.log_batch(self.run_id, metrics=epoch_metrics(row, int(time.time() * 1000)))
        self.logged.add(int(row["epoch"]))

    def log_rest(self, history: list[dict[str, float]]) -> None:
        now = int(time.time() * 1000)
        log_metrics(self.client, self.run_id, [m for row in history if int(row["epoch"]) not in self.logged for m in epoch_metrics(row, now)])



SPLIT_CONTEXT = {"train": "training", "val": "validation", "test": "testing", "unlabeled": "unlabeled", "support": "support"}


def log_dataset_inputs(client: MlflowClient, run_id: str, ds, data_ver: str) -> dict[str, int]:
    """Each split as an MLflow dataset input of the run (name `<dataset>-<split>`, digest = the run's data
    version (`tlops.data_version`), source = the split's CSV, its schema and row count; context and size as input tags)
    and the split sizes as params `data.rows.<split>`. Returns the sizes."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs, sizes = [], {}
    for split, df in ds.splits.items():
        carved = split == "val" and ds.val_carved
        csv = ds.root / ("train.csv" if carved else f"{split}.csv")
        with warnings.catch_warnings():  # MLflow registers two equal local-file source classes and warns it picked one
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
            source = resolve_dataset_source(str(csv))
        data = from_pandas(df, source=source, name=f"{ds.name}-{split}", digest=data_ver[:32],
                           targets="label" if "label" in df.columns else None)
        tags = {MLFLOW_DATASET_CONTEXT: SPLIT_CONTEXT.get(split, split), "split": split, "rows": str(len(df)),
                "data_version": data_ver}
        if carved:
            tags["carved_from"] = "train.csv"
        inputs.append(DatasetInput(dataset=data._to_mlflow_entity(), tags=[InputTag(k, v) for k, v in tags.items()]))
        sizes[split] = len(df)
    _log_inputs_racing(client, run_id, inputs)
    client.log_batch(run_id, params=[Param(f"data.rows.{k}", str(v)) for k, v in sizes.items()])
    return sizes


def _log_inputs_racing(client: MlflowClient, run_id: str, inputs: list) -> None:
    """`log_inputs`, again (3 tries in all) when a concurrent run of the same data won the race to create the dataset rows:
    MLflow's SQL store looks a dataset up, then inserts it, so two runs logging one dataset at once can fail
    with a unique-constraint error; on the retry the dataset exists and is reused."""
    from mlflow.exceptions import MlflowException

    for attempt in range(3):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as e:
            if attempt == 2 or not any(s in str(e) for s in ("IntegrityError", "UNIQUE constraint", "unique constraint", "duplicate key")):
                raise
            time.sleep(0.5 * (attempt + 1))


def describe_version(client: MlflowClient, name: str, version: str, *, run_id: str, strategy: str, backbone: str,
                     data_path: str, data_ver: str, rows: dict[str, int], metrics: dict[str, float], gate: str,
                     card: str | None = None) -> str:
    """The registered version explains itself in the registry: a Markdown description (what was trained on what,
    how it scored, what the gate decided) and its test metrics as version tags (`test_<metric>`). The run's
    description (MLflow's note, shown atop the run page) says the same and points at the model card artifact."""
    scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    sizes = ", ".join(f"{k} {v}" for k, v in rows.items())
    text = (f"**{strategy}** on `{backbone}`\n\n"
            f"- data: `{data_path}` (data version `{short_data_version(data_ver)}`; rows: {sizes})\n"
            f"- test: {scores}\n"
            f"- gate: {gate}\n"
            f"- run: `{run_id}`")
    client.update_model_version(name, version, description=text)
    card_line = f"\n\nModel card: `{card}` under this run's Artifacts" if card else ""
    client.set_tag(run_id, "mlflow.note.content", f"Registered as **{name}** version {version}: {text}{card_line}")
    for k, v in {**{f"test_{k}": f"{v:.6g}" for k, v in metrics.items()}, "tlops.strategy": strategy, "tlops.backbone": backbone,
                 "data.version_md5": data_ver}.items():
        client.set_model_version_tag(name, version, k, v)
    return text
