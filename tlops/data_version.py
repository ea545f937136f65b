"""The one form of a run's data version that `tlops models`, `compare`, `audit`, the model card and the run's
description show. No imports: the fast read-only commands use it.

A run records three md5s of its data (`tasks/tracking.py`): `data.version_md5`, the DVC md5 of the folder it trained on
(`<32 hex>.dir`: what `dvc add` on that folder writes to its .dvc file's `outs[0].md5`, and what `tlops audit`
restores from the DVC cache); `data.dvc_md5`, the md5 in a .dvc file tracking that folder or a parent (absent when the
data is not DVC-tracked); `data.dataset_md5`, an md5 of the folder's files (kept for runs older than the first tag).
The data version is the first of these the run has; tables show its first 12 hex digits, JSON the whole value."""

from __future__ import annotations

from collections.abc import Mapping

DATA_VERSION_TAGS = ("data.version_md5", "data.dvc_md5", "data.dataset_md5")


def recorded_data_version(tags: Mapping[str, str]) -> str | None:
    """A run's data version from its tags (the whole value, e.g. `678a2e9708ba...dir`), or None."""
    for key in DATA_VERSION_TAGS:
        value = tags.get(key)
        if value and value != "none":
            return value
    return None


def short_data_version(version: str | None) -> str:
    """A data version as tables show it: its first 12 hex digits, '-' when none was recorded."""
    return version[:12] if version else "-"
