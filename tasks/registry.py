"""The MLflow model registry, operated: alias moves as compare-and-set under a lock, and their history.

MLflow keeps no record of alias moves and has no compare-and-set. Both are built from what it does
have, so a team sharing one tracking server shares them:

- the **history** is one small run per move attempt (applied or refused) in the experiment
  `tlops-alias-history`, the move as JSON in a tag: concurrent writers each insert their own run, so no
  entry is ever lost;
- the **lock** is an experiment named `tlops-lock/<model>`: creating an experiment whose name exists
  fails atomically in MLflow's database (a unique constraint), so exactly one process holds it; release
  renames it away and deletes it. A lock whose holder was a process on this host that no longer runs (killed with
  SIGKILL while holding it) is broken at once; any other lock older than `STALE_AFTER_S` (its holder died elsewhere) too.

Under the lock a move reads the alias, compares it with what the mover expected (`tlops.aliases.refusal`),
moves it or refuses, and records the attempt.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from pathlib import Path
from typing import Iterator

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tlops.data_version import recorded_data_version
from tlops.aliases import CHAMPION, AliasMove, actor, alias_as_of, refusal
from tlops.errors import AliasMoveRefused, RegistryError
from tlops.records import Gate

HISTORY_EXPERIMENT = "tlops-alias-history"
MANIFEST_ARTIFACT = "registry/package_manifest.json"  # a registered version's package files and their sha256
CODE_MANIFEST_ARTIFACT = "registry/code_manifest.json"  # the model's own code files (what loading it runs)
LOCK_PREFIX = "tlops-lock/"
MOVE_TAG = "tlops.move"
LOCK_TIMEOUT_S = 60.0
STALE_AFTER_S = 120.0
AS_OF = object()  # Registry.move's `expected`: the alias as it was at `as_of_ms`


LOCK_PROCESS_TAG = "tlops.lock.process"  # the holder's `tasks.tracking.owner_tag`: host, pid and start time


def _holder_died_here(process: str | None) -> bool:
    """Whether the lock's holder was a process on this host that no longer runs (pids are reused: its start time must
    match): a `tlops run` killed with SIGKILL while it held the lock, whose lock need not wait out STALE_AFTER_S."""
    import json

    from tasks.tracking import process_ended_here

    try:
        holder = json.loads(process or "")
    except ValueError:
        return False
    return isinstance(holder, dict) and {"host", "pid", "started"} <= holder.keys() and process_ended_here(holder)


def _missing(e: MlflowException) -> bool:
    return e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(e).lower()


class Registry:
    """Reads and moves aliases of registered models through one MlflowClient."""

    def __init__(self, client: MlflowClient):
        self.client = client

    # ---- reading --------------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        names, token = [], None
        while True:
            page = self.client.search_registered_models(max_results=100, page_token=token)
            names += [m.name for m in page]
            token = page.token
            if not token:
                return sorted(names)

    def require_model(self, name: str) -> None:
        try:
            self.client.get_registered_model(name)
        except MlflowException as e:
            if e.error_code == "INVALID_PARAMETER_VALUE" and "name" in str(e).lower():  # e.g. a '/' in it
                raise RegistryError(f"{name!r} is not a model name MLflow accepts ({e.message.rstrip('.')}); registered models: "
                                    f"{', '.join(self.model_names()) or '(none)'}") from None
            if not _missing(e):
                raise
            known = self.model_names()
            raise RegistryError(f"unknown model {name!r}; registered models: {', '.join(known) or '(none)'} (see `tlops models`)") from None

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version, oldest first, with its aliases (MLflow's search leaves them out, so each is read)."""
        self.require_model(name)
        found = sorted(self.client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
        return [self.client.get_model_version(name, v.version) for v in found]

    def version(self, name: str, version: str) -> ModelVersion:
        self.require_model(name)
        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException as e:
            if not _missing(e):
                raise
        known = sorted((str(v.version) for v in self.client.search_model_versions(f"name='{name}'")), key=int)
        raise RegistryError(f"model {name!r} has no version {version!r}; its versions: {', '.join(known) or '(none)'}")

    def alias(self, name: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as e:
            # no such alias (INVALID_PARAMETER_VALUE over REST) or no such model yet: None. Anything else (a
            # server error) must raise: read as "no champion", it would let a compare-and-set overwrite one.
            message = str(e).lower()
            if e.error_code == "RESOURCE_DOES_NOT_EXIST" or ("alias" in message and "not found" in message):
                return None
            raise

    def resolve(self, name: str, ref: str) -> ModelVersion:
        """A version number or an alias (`champion`, `@champion`) of `name`."""
        ref = ref.lstrip("@")
        if ref.isdigit():
            return self.version(name, ref)
        self.require_model(name)
        version = self.alias(name, ref)
        if version is None:
            raise RegistryError(f"model {name!r} has no alias {ref!r}; its aliases: "
                                f"{', '.join(sorted(self.client.get_registered_model(name).aliases)) or '(none)'}")
        return self.version(name, version)

    def resolve_uri(self, uri: str) -> ModelVersion:
        """models:/NAME@ALIAS or models:/NAME/VERSION -> that version (clear errors for unknown parts)."""
        if not uri.startswith("models:/"):
            raise RegistryError(f"{uri!r} is not a registered model URI; use models:/NAME@champion or models:/NAME/VERSION")
        ref = uri.removeprefix("models:/")
        name, sep, alias = ref.partition("@")
        if not sep:
            name, _, alias = ref.rpartition("/")
        if not name or not alias:
            raise RegistryError(f"{uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
        return self.resolve(name, alias)

    # ---- history --------------------------------------------------------------------------------------

    def _history_experiment(self, create: bool) -> str | None:
        exp = self.client.get_experiment_by_name(HISTORY_EXPERIMENT)
        if exp is not None or not create:
            return exp.experiment_id if exp else None
        try:
            return self.client.create_experiment(HISTORY_EXPERIMENT, artifact_location=_artifact_location(self.client))
        except MlflowException:  # created concurrently
            return self.client.get_experiment_by_name(HISTORY_EXPERIMENT).experiment_id

    def history(self, name: str) -> list[AliasMove]:
        """Every recorded move attempt for `name`, oldest first."""
        exp_id = self._history_experiment(create=False)
        if exp_id is None:
            return []
        moves, token = [], None
        while True:
            page = self.client.search_runs([exp_id], filter_string=f"tags.`{MOVE_TAG}.model` = '{name}'", max_results=1000,
                                           order_by=["attributes.start_time ASC"], page_token=token)
            for run in page:
                move = AliasMove.model_validate_json(run.data.tags[MOVE_TAG])
                moves.append(move.model_copy(update={"when_ms": run.info.start_time, "entry_id": run.info.run_id}))
            token = page.token
            if not token:
                return sorted(moves, key=lambda m: m.when_ms)

    def _record(self, move: AliasMove) -> AliasMove:
        exp_id = self._history_experiment(create=True)
        run = self.client.create_run(exp_id, tags={
            "mlflow.runName": f"{move.model} {move.alias} {move.arrow()} {'applied' if move.applied else 'refused'}",
            MOVE_TAG: move.model_dump_json(), f"{MOVE_TAG}.model": move.model, f"{MOVE_TAG}.alias": move.alias,
            f"{MOVE_TAG}.applied": str(move.applied).lower(), f"{MOVE_TAG}.kind": move.kind})
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return move.model_copy(update={"when_ms": run.info.start_time, "entry_id": run.info.run_id})

    # ---- the lock and the move ------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, timeout_s: float = LOCK_TIMEOUT_S, stale_after_s: float = STALE_AFTER_S) -> Iterator[None]:
        from tasks.tracking import owner_tag

        lock_name = f"{LOCK_PREFIX}{name}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                exp_id = self.client.create_experiment(lock_name, tags={"tlops.lock.owner": actor(), LOCK_PROCESS_TAG: owner_tag()})
                break
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            held = self.client.get_experiment_by_name(lock_name)
            if held is not None and (time.time() * 1000 - held.creation_time > stale_after_s * 1000
                                     or _holder_died_here(held.tags.get(LOCK_PROCESS_TAG))):
                self._release(held.experiment_id, name)  # its holder is gone (killed on this host, or long silent): break it
                continue
            if time.monotonic() > deadline:
                owner = held.tags.get("tlops.lock.owner", "?") if held else "?"
                raise RegistryError(f"the registry lock of {name!r} is held by {owner}; retry in a moment (a lock whose "
                                    f"holder died is broken after {stale_after_s:.0f} s)")
            time.sleep(0.05 + random.random() * 0.2)
        try:
            yield
        finally:
            self._release(exp_id, name)

    def _release(self, exp_id: str, name: str) -> None:
        with contextlib.suppress(MlflowException):  # broken by another process meanwhile: nothing left to do
            self.client.rename_experiment(exp_id, f"{LOCK_PREFIX}{name}/released/{uuid.uuid4().hex}")
            self.client.delete_experiment(exp_id)

    def move(self, name: str, alias: str, to_version: str, expected: str | None | object, kind: str, reason: str,
             source_run: str | None = None, command: str | None = None, gate: Gate | None = None,
             as_of_ms: int | None = None) -> AliasMove:
        """Compare-and-set: point `alias` at `to_version` if it still points at `expected`; record the attempt
        either way. Raises AliasMoveRefused (with the recorded entry as `.move`) when refused.

        `expected=AS_OF` with `as_of_ms` (a command's start): the alias as it was at that moment, read under the
        lock from the history, so a move made by anyone after the command started is never overwritten; the
        read, the compare and the move are one step under the lock."""
        with self.lock(name):
            current = self.alias(name, alias)
            moves = self.history(name)
            if expected is AS_OF:
                expected = alias_as_of(moves, alias, current, as_of_ms)
            last = next((m for m in reversed(moves) if m.applied and m.alias == alias), None)
            why = refusal(current, expected, last, alias)
            move = AliasMove(model=name, alias=alias, from_version=current, to_version=str(to_version), expected=expected,
                             applied=why is None, kind=kind, reason=reason if why is None else f"{reason} [refused: {why}]",
                             actor=actor(), source_run=source_run, command=command, gate=gate)
            if why is None:
                self.client.set_registered_model_alias(name, alias, str(to_version))
            move = self._record(move)
        if why is not None:
            err = AliasMoveRefused(f"{name}: {alias} not moved to v{to_version}: {why}")
            err.move = move
            raise err
        return move

    def record_refused(self, name: str, alias: str, to_version: str, expected: str | None, kind: str, reason: str,
                       command: str | None = None, gate: Gate | None = None) -> AliasMove:
        """An attempt refused before it reached the alias (say by --if-better): history only."""
        return self._record(AliasMove(model=name, alias=alias, from_version=self.alias(name, alias), to_version=str(to_version),
                                      expected=expected, applied=False, kind=kind, reason=reason, actor=actor(), command=command,
                                      gate=gate))

    def aliases_of(self, name: str, version: str) -> list[str]:
        return sorted(self.client.get_model_version(name, str(version)).aliases)


def _artifact_location(client: MlflowClient) -> str | None:
    """SQLite stores keep artifacts under mlruns/ next to the database (as `tasks.tracking.setup` does)."""
    uri = client.tracking_uri
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def lineage(client: MlflowClient, mv: ModelVersion) -> dict:
    """What a version's run recorded: status, strategy, backbone, metrics, data version, git commit, config."""
    run = client.get_run(mv.run_id)
    p, t, m = run.data.params, run.data.tags, run.data.metrics
    metric = p.get("registry.metric", "macro_f1")
    return {"version": str(mv.version), "aliases": sorted(mv.aliases), "run_id": mv.run_id, "status": run.info.status,
            "strategy": t.get("tlops.strategy"), "backbone": p.get("backbone.name"), "metric": metric,
            "test_metric": m.get(f"test_{metric}"), "data_version": recorded_data_version(t),
            "git_commit": t.get("git.commit"), "git_dirty": t.get("git.dirty"), "created_ms": mv.creation_timestamp,
            "audit": mv.tags.get("tlops.audit"), "data_path": p.get("data.path"), "seed": p.get("seed"),
            "margin": float(p.get("registry.margin", 0.0)), "val_fraction": float(p.get("data.val_fraction", 0.15))}


__all__ = ["AS_OF", "CHAMPION", "Registry", "lineage"]
