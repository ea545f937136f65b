"""sha256 of files: streamed, and a cached variant for weight files that are hashed again and again."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Read the whole file (1 MiB at a time): what integrity checks need."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_sha256(path: Path) -> str:
    """Cached on (path, size, mtime): backbone identities hash the same weight files in every step."""
    st = path.stat()
    return _cached(str(path), st.st_size, st.st_mtime_ns)
