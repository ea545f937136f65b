"""Remembered file md5s, so a run does not re-read data that has not changed.

Every run records the DVC md5 of the folder `data.dvc` tracks (to say whether the workspace matches it), the
md5 of its dataset folder, and stores that folder as a version: without a memory, each run reads every byte
of the tracked data, so its cost grows with the whole data repository, not with the run's dataset. DVC keeps
the same kind of memory (its state database, keyed by inode, mtime and size); this is a small SQLite file
of its own, since importing DVC costs more than hashing a small dataset.

A file's md5 is reused while its path, inode, size and modification time (ns) are unchanged. A file modified
in the last `RACY_S` seconds is hashed but not remembered: a second write within the same timestamp tick
could leave size and mtime unchanged (git's "racily clean" case). The memory is a cache only: if its file
cannot be opened or written (read-only home, locked database), files are hashed as if it were empty.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

RACY_S = 2.0
STATE_ENV = "TLOPS_MD5_STATE"  # the SQLite file; "off" disables the memory


def _hash(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_file() -> Path | None:
    value = os.environ.get(STATE_ENV)
    if value and value.strip().lower() == "off":
        return None
    if value:
        return Path(value)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tlops" / "md5-state.sqlite"


MAX_ROWS = 500_000  # a cache: past this many remembered files (temporary folders pile up), it starts again


class Md5State:
    """file path -> md5, remembered by (inode, size, mtime_ns). Files are looked up a folder at a time (one range
    query, not one per file) and new md5s written in one transaction."""

    def __init__(self, path: Path | None):
        self.path, self._db, self._failed = path, None, path is None

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._failed:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(self.path), timeout=5, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")  # several runs at once read while one writes
                db.execute("CREATE TABLE IF NOT EXISTS md5 (path TEXT PRIMARY KEY, inode INTEGER, size INTEGER, mtime_ns INTEGER, md5 TEXT)")
                if db.execute("SELECT count(*) FROM md5").fetchone()[0] > MAX_ROWS:
                    db.execute("DELETE FROM md5")
                self._db = db
            except (OSError, sqlite3.Error):
                self._failed = True
        return self._db

    def _known(self, db: sqlite3.Connection, paths: list[str]) -> dict[str, tuple]:
        """Remembered rows for `paths`: one range query over their common folder."""
        if len(paths) == 1:
            rows = db.execute("SELECT path, inode, size, mtime_ns, md5 FROM md5 WHERE path = ?", (paths[0],)).fetchall()
        else:
            prefix = os.path.commonpath(paths).rstrip("/") + "/"
            rows = db.execute("SELECT path, inode, size, mtime_ns, md5 FROM md5 WHERE path >= ? AND path < ?",
                              (prefix, prefix[:-1] + "0")).fetchall()  # "0" sorts right after "/"
        return {r[0]: r[1:] for r in rows}

    def md5s(self, paths: list[str | Path]) -> list[str]:
        paths = [os.path.abspath(p) for p in paths]  # strings, not Path objects: 10k+ files per run
        db = self._connect()
        known: dict[str, tuple] = {}
        if db is not None and paths:
            try:
                known = self._known(db, paths)
            except sqlite3.Error:
                pass
        out, new, now = [], [], time.time()
        for p in paths:
            st = os.stat(p)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            row = known.get(p)
            if row is not None and tuple(row[:3]) == key:
                out.append(row[3])
                continue
            digest = _hash(p)
            out.append(digest)
            if now - st.st_mtime_ns / 1e9 > RACY_S:
                new.append((p, *key, digest))
        if db is not None and new:
            try:
                with db:  # one transaction
                    db.execute("BEGIN")
                    db.executemany("INSERT OR REPLACE INTO md5 VALUES (?, ?, ?, ?, ?)", new)
            except sqlite3.Error:
                pass
        return out


_state: Md5State | None = None


def remembered_md5s(paths: list[str | Path]) -> list[str]:
    """md5 hex digests of files' bytes, from the memory for files unchanged since they were hashed."""
    global _state
    where = state_file()
    if _state is None or _state.path != where:
        _state = Md5State(where)
    return _state.md5s(list(paths))


def remembered_md5(path: Path) -> str:
    return remembered_md5s([path])[0]
