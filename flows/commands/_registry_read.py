"""Reading the registry for `tlops models` and `tlops history`, fast on the default store.

On a SQLite tracking store (the default, `sqlite:///mlruns/mlflow.db`) the few tables these commands show are read
with the standard library's `sqlite3`, read-only: no MLflow import (about 1 s), no SQLAlchemy store (0.8 s more) and
no schema-migration check per call, so the commands answer in well under 2 s (bench/readonly_commands.py). Any other
store (an HTTP server, PostgreSQL, MySQL), a model name MLflow would refuse,
a workspace other than MLflow's default, or anything this reader does not recognise goes through MLflow itself
(`tasks.operate.connect`, `tasks.registry`), as before. Both readers return the same rows:
tests/flow/test_readonly_commands.py compares them on registered stores.

The SQLite reader follows MLflow 3's registry semantics: prompts are not models, versions in stage
`Deleted_Internal` are gone, deleted runs are not history, and runs are ordered by start time then id.

A SQLite file that does not exist is refused (`require_store`) by every command that only reads (models, history,
compare, and predict, evaluate, serve and audit of a `models:/` or `runs:/` URI): MLflow would create an empty store
there and answer that nothing is registered."""

from __future__ import annotations

import os
import posixpath
import sqlite3
from pathlib import Path

from tlops.data_version import recorded_data_version
from tlops.errors import RegistryError
from tlops.secrets import adopt_credentials

HISTORY_EXPERIMENT = "tlops-alias-history"  # tasks.registry.HISTORY_EXPERIMENT
MOVE_TAG = "tlops.move"  # tasks.registry.MOVE_TAG
INCOMPLETE_TAG = "tlops.incomplete"  # tasks.tracking.INCOMPLETE_TAG
REGISTRATION_TAGS = ("tlops.package_sha256", "tlops.code_sha256")  # set last by a registration (tasks/register.py)
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"  # MLflow keeps prompts as registered models with this tag: not models
DELETED_STAGE = "Deleted_Internal"  # MLflow's stage of a deleted model version
WORKSPACE = "default"  # MLflow's workspace when workspaces are not enabled


def default_tracking_uri(explicit: str | None = None) -> str:
    """`tasks.tracking.default_tracking_uri` without its imports (MLflow, the config schema): the given URI, then
    $MLFLOW_TRACKING_URI, then SQLite under ./mlruns; credentials taken out."""
    return adopt_credentials(explicit or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlruns').resolve()}/mlflow.db")


class Fallback(Exception):
    """The SQLite reader cannot answer this one: read it through MLflow."""


def incomplete(tags: dict, run_status: str) -> str | None:
    """Why a version's registration did not finish, or None: tagged so when its run was found killed, missing the
    sha256 tags a registration sets last, or its run not FINISHED (killed, failed, or still running)."""
    if tags.get(INCOMPLETE_TAG) == "true":
        return "its run ended (killed or failed) before its registration and gate finished"
    missing = [t for t in REGISTRATION_TAGS if t not in tags]
    if missing:
        return f"no {' / '.join(missing)} tag: its registration did not finish (or predates these tags)"
    if run_status != "FINISHED":
        return f"its run is {run_status}, not FINISHED: registered, but the run did not finish"
    return None


def lineage_row(version, aliases, run_id: str, run_status: str, params: dict, tags: dict, metrics: dict, created_ms,
                version_tags: dict) -> dict:
    """`tasks.registry.lineage` from what a version and its run recorded (the same keys, in the same order)."""
    p, t, m = params, tags, metrics
    metric = p.get("registry.metric", "macro_f1")
    return {"version": str(version), "aliases": sorted(aliases), "run_id": run_id, "status": run_status,
            "strategy": t.get("tlops.strategy"), "backbone": p.get("backbone.name"), "metric": metric,
            "test_metric": m.get(f"test_{metric}"), "data_version": recorded_data_version(t),
            "git_commit": t.get("git.commit"), "git_dirty": t.get("git.dirty"), "created_ms": created_ms,
            "audit": version_tags.get("tlops.audit"), "data_path": p.get("data.path"), "seed": p.get("seed"),
            "margin": float(p.get("registry.margin", 0.0)), "val_fraction": float(p.get("data.val_fraction", 0.15))}


def _with_incomplete(row: dict, version_tags: dict) -> dict:
    why = incomplete(version_tags, row["status"])
    return {**row, "incomplete": why is not None, "incomplete_reason": why}


class MlflowReader:
    """Through MLflow's client: any store."""

    def __init__(self, uri: str | None):
        from tasks.operate import connect

        self.reg = connect(uri)

    def models(self) -> list[dict]:
        rows = []
        for n in self.reg.model_names():
            m = self.reg.client.get_registered_model(n)
            rows.append({"name": n, "versions": len(self.reg.client.search_model_versions(f"name='{n}'")),
                         "champion": m.aliases.get("champion"), "challenger": m.aliases.get("challenger"),
                         "updated_ms": m.last_updated_timestamp})
        return rows

    def versions(self, name: str) -> list[dict]:
        from tasks.registry import lineage

        return [_with_incomplete(lineage(self.reg.client, mv), mv.tags) for mv in self.reg.versions(name)]

    def history(self, name: str) -> list:
        self.reg.require_model(name)
        return self.reg.history(name)


class SqliteReader:
    """MLflow's SQLite store, read directly and read-only (see the module's docstring)."""

    def __init__(self, uri: str):
        path = sqlite_path(uri)
        if path is None or os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in ("true", "1") or os.environ.get("MLFLOW_WORKSPACE"):
            raise Fallback(uri)
        try:
            self.db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
            self.db.execute("SELECT name FROM registered_models LIMIT 0")  # an MLflow store with a registry
        except sqlite3.Error as e:
            raise Fallback(str(e)) from None

    def _all(self, sql: str, *args) -> list[tuple]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as e:  # a schema this reader does not know (an older or newer MLflow): MLflow reads it
            raise Fallback(str(e)) from None

    def model_names(self) -> list[str]:
        rows = self._all("SELECT name FROM registered_models m WHERE workspace = ? AND NOT EXISTS (SELECT 1 FROM registered_model_tags t "
                         "WHERE t.workspace = m.workspace AND t.name = m.name AND t.key = ? AND t.value = 'true')", WORKSPACE, IS_PROMPT_TAG)
        return sorted(r[0] for r in rows)

    def require_model(self, name: str) -> None:
        """As `tasks.registry.Registry.require_model`; a name MLflow would refuse is MLflow's to explain."""
        norm = posixpath.normpath(name)
        if (not name.strip() or "/" in name or ":" in name or norm != name or norm == "." or norm.startswith("..")
                or norm.startswith("/")):
            raise Fallback(name)
        if not self._all("SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?", WORKSPACE, name):
            known = self.model_names()
            raise RegistryError(f"unknown model {name!r}; registered models: {', '.join(known) or '(none)'} (see `tlops models`)")

    def _aliases(self, name: str) -> list[tuple[str, int]]:
        return self._all("SELECT alias, version FROM registered_model_aliases WHERE workspace = ? AND name = ?", WORKSPACE, name)

    def alias_names(self, name: str) -> list[str]:
        """The aliases of model `name`, sorted (none for an unknown name: `require_model` says that)."""
        return sorted({alias for alias, _ in self._aliases(name)})

    def version_numbers(self, name: str) -> list[str]:
        """The versions of model `name` that are not deleted, in numeric order."""
        rows = self._all("SELECT version FROM model_versions WHERE workspace = ? AND name = ? AND current_stage != ?",
                         WORKSPACE, name, DELETED_STAGE)
        return sorted((str(v) for (v,) in rows), key=int)

    def has_run(self, run_id_prefix: str) -> bool:
        """Whether a run's id starts with `run_id_prefix` (compared as text: no LIKE wildcards)."""
        return bool(self._all("SELECT 1 FROM runs WHERE substr(run_uuid, 1, ?) = ? LIMIT 1", len(run_id_prefix), run_id_prefix))

    def close(self) -> None:
        self.db.close()

    def models(self) -> list[dict]:
        rows = []
        for n in self.model_names():
            (updated,), = self._all("SELECT last_updated_time FROM registered_models WHERE workspace = ? AND name = ?", WORKSPACE, n)
            (count,), = self._all("SELECT count(*) FROM model_versions WHERE workspace = ? AND name = ? AND current_stage != ?",
                                  WORKSPACE, n, DELETED_STAGE)
            aliases = dict(self._aliases(n))
            rows.append({"name": n, "versions": count, "champion": aliases.get("champion"), "challenger": aliases.get("challenger"),
                         "updated_ms": updated})
        return rows

    def _run(self, run_id: str | None) -> tuple[str, dict, dict, dict]:
        found = self._all("SELECT status FROM runs WHERE run_uuid = ?", run_id) if run_id else []
        if not found:
            raise Fallback(f"run {run_id}")  # MLflow says what is wrong with it
        params = dict(self._all("SELECT key, value FROM params WHERE run_uuid = ?", run_id))
        tags = dict(self._all("SELECT key, value FROM tags WHERE run_uuid = ?", run_id))
        metrics = {k: float("nan") if is_nan else v
                   for k, v, is_nan in self._all("SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", run_id)}
        return found[0][0], params, tags, metrics

    def versions(self, name: str) -> list[dict]:
        self.require_model(name)
        aliases: dict[int, list[str]] = {}
        for alias, version in self._aliases(name):
            aliases.setdefault(int(version), []).append(alias)
        rows = []
        for version, run_id, created in self._all("SELECT version, run_id, creation_time FROM model_versions WHERE workspace = ? AND "
                                                  "name = ? AND current_stage != ? ORDER BY version", WORKSPACE, name, DELETED_STAGE):
            version_tags = dict(self._all("SELECT key, value FROM model_version_tags WHERE workspace = ? AND name = ? AND version = ?",
                                          WORKSPACE, name, version))
            run_status, params, tags, metrics = self._run(run_id)
            row = lineage_row(version, aliases.get(int(version), []), run_id, run_status, params, tags, metrics, created, version_tags)
            rows.append(_with_incomplete(row, version_tags))
        return rows

    def history(self, name: str) -> list:
        from tlops.aliases import AliasMove

        self.require_model(name)
        exp = self._all("SELECT experiment_id FROM experiments WHERE workspace = ? AND name = ?", WORKSPACE, HISTORY_EXPERIMENT)
        if not exp:
            return []
        moves = []
        for run_id, start, move in self._all(
                "SELECT r.run_uuid, r.start_time, (SELECT value FROM tags m WHERE m.run_uuid = r.run_uuid AND m.key = ?) FROM runs r "
                "JOIN tags f ON f.run_uuid = r.run_uuid AND f.key = ? AND f.value = ? WHERE r.experiment_id = ? AND "
                "r.lifecycle_stage = 'active' ORDER BY r.start_time ASC, r.run_uuid ASC", MOVE_TAG, f"{MOVE_TAG}.model", name, exp[0][0]):
            if move is None:
                raise Fallback(f"history run {run_id} has no {MOVE_TAG} tag")
            moves.append(AliasMove.model_validate_json(move).model_copy(update={"when_ms": start, "entry_id": run_id}))
        return sorted(moves, key=lambda m: m.when_ms)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a plain `sqlite:///PATH` URI that exists (relative paths as SQLAlchemy reads them), else None."""
    if not uri.startswith("sqlite:///") or "?" in uri:
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    return path if path.is_file() else None


def missing_store(uri: str) -> Path | None:
    """The database file a plain `sqlite:///PATH` URI names when that file does not exist, else None."""
    if not uri.startswith("sqlite:///") or "?" in uri:
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    return None if path.is_file() else path


def require_store(tracking_uri: str | None) -> str:
    """The tracking URI a read-only command uses (as `default_tracking_uri`), refused when it is a SQLite file that does
    not exist: one line naming the path and the fix, instead of an empty store created there."""
    uri = default_tracking_uri(tracking_uri)
    path = missing_store(uri)
    if path is not None:
        given = "--tracking-uri" if tracking_uri else "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else None
        raise RegistryError(f"no MLflow store at {path.absolute()}: that SQLite file does not exist"
                            + (f" (from {given})" if given else " (the default store, under the current folder)")
                            + "; a command that only reads does not create one. Run it from the project folder that holds "
                            "mlruns/, or name the store your runs were logged in: --tracking-uri sqlite:///PATH/mlruns/mlflow.db")
    return uri


def read(tracking_uri: str | None, what: str, *args):
    """`what` ('models', 'versions' or 'history') of the registry at `tracking_uri` (default: as every command's):
    from the SQLite file directly when it can, else through MLflow. A SQLite file that does not exist is refused."""
    uri = require_store(tracking_uri)
    try:
        reader = SqliteReader(uri)
        try:
            return getattr(reader, what)(*args)
        finally:
            reader.close()
    except Fallback:
        return getattr(MlflowReader(tracking_uri), what)(*args)


def split_model_uri(model_uri: str) -> tuple[str, str, str | None]:
    """`models:/NAME/VERSION` -> (NAME, '', VERSION); `models:/NAME@ALIAS` -> (NAME, '@', ALIAS); `models:/NAME` ->
    (NAME, '', None). The URI must start with `models:/`."""
    rest = model_uri.removeprefix("models:/")
    name, at, part = rest.partition("@")
    if not at:
        name, slash, part = rest.rpartition("/")
        if not slash:
            return rest, "", None
    return name, at, part


def check_model_uri(tracking_uri: str | None, model_uri: str) -> None:
    """An unknown model in a `models:/NAME...` URI on a SQLite store, said in under a second, before the seconds of
    imports that loading a model needs (predict, evaluate, serve, audit): the same error as `Registry.require_model`.
    Anything else (versions, aliases, other stores, other URIs) is left to the full check that follows. A `models:/` or
    `runs:/` URI on a SQLite file that does not exist is refused (`require_store`)."""
    if model_uri.startswith(("models:/", "runs:/")):
        require_store(tracking_uri)
    if not model_uri.startswith("models:/"):
        return
    name, _, part = split_model_uri(model_uri)
    if not name or part is None:  # a bare models:/NAME is left to the full check
        return
    try:
        reader = SqliteReader(default_tracking_uri(tracking_uri))
    except Fallback:
        return
    try:
        reader.require_model(name)
    except Fallback:
        return
    finally:
        reader.close()
