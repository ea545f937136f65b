"""When to retrain: the pure rules of scheduled and data-triggered retraining (Prefect does the running)."""

from __future__ import annotations

import re
from dataclasses import dataclass

DATA_CHANGED_EVENT = "tlops.data.changed"
NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_schedule_name(name: str) -> str:
    if not NAME_RULE.match(name):
        raise ValueError(f"schedule name {name!r}: use letters, digits, '.', '_' and '-' (at most 100), starting with a letter or digit")
    return name


def dataset_resource(schedule: str) -> str:
    """The Prefect event resource a schedule's data watch announces changes for."""
    return f"tlops.dataset.{schedule}"


@dataclass(frozen=True)
class WatchDecision:
    announce: bool
    message: str


def watch_decision(current: str, champion_version: str | None, champion_data: str | None, announced: str | None) -> WatchDecision:
    """Announce a data change when the data differs from what the champion was trained on, once per data
    version: while the retrain runs (or if it does not beat the champion) the same version is not
    announced again, so a change gives one run, not one per watch tick."""
    if champion_version is None:
        return WatchDecision(False, "no champion yet: nothing to compare with (the schedule, or `tlops run`, trains the first one)")
    if current == champion_data:
        return WatchDecision(False, f"unchanged since champion v{champion_version} (data {current})")
    if current == announced:
        return WatchDecision(False, f"data {current} differs from the champion's but was already announced; waiting for its run")
    return WatchDecision(True, f"data changed to {current} (champion v{champion_version} was trained on {champion_data}): "
                               f"announcing {DATA_CHANGED_EVENT}")
