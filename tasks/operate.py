"""Operating the registry by hand: promote, roll back, re-score. The MLflow side of `tlops promote` and
`tlops rollback`; the decisions come from the core (`tlops.aliases`, `tlops.promotion`, `tlops.scoring`)."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from tasks.registry import AS_OF, Registry, lineage
from tasks.tracking import check_reachable, default_tracking_uri
from tlops.aliases import CHAMPION, AliasMove, previous_champion
from tlops.errors import DataError, RegistryError
from tlops.records import Gate

UNSET = object()  # `expected` not given: the champion as it is when the command starts


def connect(uri: str | None = None) -> Registry:
    """A registry on the tracking server (checked reachable first, so a dead server fails in seconds)."""
    uri = default_tracking_uri(uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return Registry(MlflowClient(uri, registry_uri=uri))


def servable(reg: Registry, name: str, version: str) -> dict:
    """The version's lineage, if it may serve as champion: its run FINISHED and it has a test evaluation."""
    info = lineage(reg.client, reg.version(name, version))
    if info["status"] != "FINISHED":
        raise RegistryError(f"{name} v{version}: its run {info['run_id']} is {info['status']}, not FINISHED; only a finished run's "
                            f"model can become champion")
    if info["test_metric"] is None:
        raise RegistryError(f"{name} v{version}: its run {info['run_id']} has no test evaluation (test_{info['metric']}); "
                            f"only an evaluated model can become champion")
    return info


def _fetcher(name: str, version: str):
    base = f"models:/{name}/{version}/artifacts/package"
    return lambda rel: Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/{rel}".rstrip("/")))


def rescore(reg: Registry, name: str, version: str, champion: str | None) -> Gate:
    """The training gate, applied again: `version` and the current `champion` both scored on `version`'s test
    split (the data folder its run recorded), with that run's metric and margin."""
    from tlops.data import load_dataset  # torch, pandas: only re-scoring needs them, not `tlops models`/`history`/`promote`
    from tlops.promotion import decide
    from tlops.scoring import score_package

    info = servable(reg, name, version)
    data_path = info["data_path"]
    if not data_path or not Path(data_path).is_dir():
        raise DataError(f"{name} v{version}: its data folder {data_path} is gone, so it cannot be re-scored; restore it "
                        f"(`dvc checkout`) or promote without --if-better")
    ds = load_dataset(data_path, seed=int(info["seed"] or 0), val_fraction=info["val_fraction"])
    metric = info["metric"]
    challenger = score_package(version, _fetcher(name, version), None, ds, metric)
    champ = score_package(champion, _fetcher(name, champion), None, ds, metric) if champion else None
    decision = decide(metric, challenger.value, champ.value if champ else None, info["margin"])
    return Gate(promoted=decision.promote, reason=decision.reason, metric=metric, challenger=challenger.value,
                champion_version=champion, champion_metric=champ.value if champ else None,
                champion_scored_via=f"both packages on the raw test inputs of v{version}'s data ({data_path})" if champ else "",
                margin=info["margin"], version=str(version))


def promote(reg: Registry, name: str, version: str, reason: str, if_better: bool = False, expected=UNSET,
            command: str | None = None, started_ms: int | None = None) -> AliasMove:
    """Move `champion` to `version`, compare-and-set against `expected`; by default the champion when the command
    started (`started_ms`; else the champion now), read under the lock from the history, so of two promotes started
    together only the first applies and the second is told who moved it."""
    version = str(version)
    servable(reg, name, version)
    current = reg.alias(name, CHAMPION)
    if expected is UNSET and current == version:
        raise RegistryError(f"{name} v{version} is already the champion; nothing to do")
    if expected is not UNSET and current == version and expected == version:
        raise RegistryError(f"{name} v{version} is already the champion; nothing to do")
    as_of = expected is UNSET
    gate = None
    if if_better:
        gate = rescore(reg, name, version, current if as_of else expected)
        if not gate.promoted:
            reg.record_refused(name, CHAMPION, version, current if as_of else expected, "promote",
                               f"{reason} [refused by --if-better: {gate.reason}]", command=command, gate=gate)
            raise RegistryError(f"{name}: champion not moved to v{version}: {gate.reason}")
    return reg.move(name, CHAMPION, version, expected=AS_OF if as_of else expected, kind="promote", reason=reason, command=command,
                    gate=gate, as_of_ms=started_ms)


def rollback(reg: Registry, name: str, reason: str, to: str | None = None, command: str | None = None,
             started_ms: int | None = None) -> AliasMove:
    """`champion` back to the one before it (from the history), or to `to`; compare-and-set against the champion
    when the command started (`started_ms`), as `promote`."""
    current = reg.alias(name, CHAMPION)
    if to is None:
        to = previous_champion(reg.history(name), current)
        if to is None:
            raise RegistryError(f"{name}: the history holds no champion before v{current}; name the version: "
                                f"`tlops rollback {name} --to VERSION --reason ...` (see `tlops history {name}`)")
    servable(reg, name, str(to))
    if str(to) == current:
        raise RegistryError(f"{name} v{to} is already the champion; nothing to do")
    return reg.move(name, CHAMPION, str(to), expected=AS_OF if started_ms is not None else current, kind="rollback", reason=reason,
                    command=command, as_of_ms=started_ms)
