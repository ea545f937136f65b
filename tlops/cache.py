"""Content-addressed, on-disk feature cache.

Layout: <root>/<namespace>/<shard digest>.npz, where namespace = sha256 of the backbone identity
(source, weights sha256, layers/pooling, preprocessing) and each shard holds (item hash -> vector)
rows plus a digest of its own contents. Shards are written to a temp file and renamed into place,
so a reader never sees a half-written one; a shard whose digest does not match is deleted and its
items are recomputed. A temp file a killed writer left behind is deleted when a cache is next opened,
once it is old enough that no live writer can still own it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlops.diskspace import space_for


def namespace_of(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def item_hash(item: str | bytes) -> str:
    data = item.encode("utf-8") if isinstance(item, str) else item
    return hashlib.sha256(data).hexdigest()


KEY_BYTES = 64  # a shard stores its keys in this many bytes (an item hash is 64 hex characters)


def row_key(base: str, row: int | str) -> str:
    """The key of one row of an item cached as several rows (a word of a sentence, a token of a window): the item's hash
    cut to leave room for `:row` within KEY_BYTES (52 hex characters: 208 bits), so no two rows share a key."""
    return f"{base[:52]}:{row}"


def _digest(keys: np.ndarray, vecs: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(keys.tobytes())
    h.update(str(vecs.shape).encode())
    h.update(np.ascontiguousarray(vecs).tobytes())
    return h.hexdigest()


@dataclass
class CacheStats:
    """Distinct inputs (content hashes) found in the cache (hits) and embedded by the backbone (misses)."""

    hits: int = 0
    misses: int = 0
    corrupt_shards: list[str] = field(default_factory=list)


# A live writer's temp file exists only while one shard is written (seconds; its mtime moves with every write), so one
# untouched for this long belongs to a writer that was killed (SIGKILL, OOM, power) and will never be renamed.
STALE_TMP_SECONDS = 15 * 60
TMP_PREFIX = ".tmp-"


class FeatureCache:
    def __init__(self, root: str | Path, stale_tmp_seconds: float = STALE_TMP_SECONDS):
        self.root = Path(root)
        self.removed_tmp = self._remove_stale_tmp(stale_tmp_seconds)

    def _remove_stale_tmp(self, older_than_s: float) -> list[str]:
        """Delete temp files (shards, identity.json) untouched for `older_than_s`; another process may delete the same
        file at the same moment, or a young one may be renamed meanwhile: both are fine (missing_ok, age read first)."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        cutoff = time.time() - older_than_s
        for tmp in self.root.glob(f"*/{TMP_PREFIX}*"):
            try:
                if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                    tmp.unlink(missing_ok=True)
                    removed.append(str(tmp))
            except OSError:  # renamed into place or removed by another process between glob and stat
                continue
        return removed

    def _dir(self, namespace: str) -> Path:
        return self.root / namespace

    def lookup(self, namespace: str, keys: list[str], stats: CacheStats) -> dict[str, np.ndarray]:
        """Vectors for those keys that are cached (verified shards only)."""
        wanted = set(keys)
        found: dict[str, np.ndarray] = {}
        d = self._dir(namespace)
        if not d.is_dir():
            return found
        for shard in sorted(d.glob("*.npz")):
            if shard.name.startswith(TMP_PREFIX):  # another process's shard being written (pathlib's glob matches dot files)
                continue
            loaded = self._load_shard(shard, stats)
            if loaded is None:
                continue
            skeys, vecs = loaded
            for i, k in enumerate(skeys.tolist()):
                k = k.decode() if isinstance(k, bytes) else k
                if k in wanted and k not in found:
                    found[k] = vecs[i]
        return found

    def _load_shard(self, shard: Path, stats: CacheStats):
        try:
            with np.load(shard, allow_pickle=False) as z:
                keys, vecs, digest = z["keys"], z["vecs"], str(z["digest"])
            if digest != _digest(keys, vecs) or shard.stem != digest[:32]:
                raise ValueError("digest mismatch")
            return keys, vecs
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            stats.corrupt_shards.append(str(shard))
            shard.unlink(missing_ok=True)  # recomputed by the caller as misses
            return None

    def put(self, namespace: str, keys: list[str], vecs: np.ndarray, meta: dict | None = None) -> Path:
        """Store one shard; on a full disk raise DiskFull and leave no file under a final name (nor a temp file)."""
        d = self._dir(namespace)
        with space_for(self.root, "feature cache shards", "features.cache_dir"):
            d.mkdir(parents=True, exist_ok=True)
            if meta is not None and not (d / "identity.json").exists():
                _atomic_write_bytes(d / "identity.json", json.dumps(meta, indent=1, sort_keys=True).encode())
            long = [k for k in keys if len(k.encode()) > KEY_BYTES]
            if long:  # a longer key would be cut to its first 64 bytes: rows of one item would share a key, never found
                raise ValueError(f"cache keys are stored in {KEY_BYTES} bytes; {long[0]!r} is longer (use row_key for an item's rows)")
            karr = np.array(keys, dtype=f"S{KEY_BYTES}")
            vecs = np.ascontiguousarray(vecs, dtype=np.float32)
            digest = _digest(karr, vecs)
            final = d / f"{digest[:32]}.npz"
            fd, tmp = tempfile.mkstemp(dir=d, prefix=TMP_PREFIX, suffix=".npz")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, keys=karr, vecs=vecs, digest=np.array(digest))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return final

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*.npz")) if self.root.exists() else 0


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk mid-write: no temp file left to fill it further
        Path(tmp).unlink(missing_ok=True)
        raise
