"""Every data version a model was trained on, kept in a DVC cache so an audit can get it back.

The store is a DVC 3 cache directory in DVC's own layout: each file under `files/md5/<2 hex>/<30 hex>`
(its md5), each folder as a `.dir` object listing `{"md5", "relpath"}` of its files, whose md5 is the
folder's DVC md5 (what `dvc add` prints). So a version stored here is one `dvc checkout` / `dvc push`
understands (a test checks a real `dvc checkout` restores it), and it works for data outside any DVC
repository too, which `dvc add` refuses. Objects are written under a temporary name, then renamed;
existing objects are never rewritten (content addressing), so storing the same data again copies nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tlops.errors import DataError

CACHE_SUBDIR = Path("files") / "md5"


def file_md5(path: Path) -> str:
    """md5 of a file's bytes (remembered while the file is unchanged: `tlops.data.md5_state`)."""
    from tlops.data.md5_state import remembered_md5

    return remembered_md5(path)


def dir_entries(folder: Path) -> list[dict[str, str]]:
    """DVC's listing of a folder: md5 and POSIX relative path of every file, sorted by path."""
    from tlops.data.md5_state import remembered_md5s

    root = os.path.abspath(folder)
    files, rel = [], []
    for here, dirs, names in os.walk(root):  # os.walk, not Path.rglob: pathlib's per-path cost dominated on 10k files
        dirs.sort()
        for name in names:
            full = os.path.join(here, name)
            if os.path.isfile(full):
                files.append(full)
                rel.append(os.path.relpath(full, root).replace(os.sep, "/"))
    entries = [{"md5": md5, "relpath": r} for r, md5 in zip(rel, remembered_md5s(files))]
    return sorted(entries, key=lambda e: e["relpath"])


def dir_object(entries: list[dict[str, str]]) -> bytes:
    """The bytes of a `.dir` object, exactly as DVC 3 serialises it (its md5 is the folder's DVC md5)."""
    return json.dumps(entries, sort_keys=True).encode()


def dir_md5(folder: Path, entries: list[dict[str, str]] | None = None) -> str:
    """The md5 DVC 3 gives a folder (`<md5>.dir`)."""
    return hashlib.md5(dir_object(entries if entries is not None else dir_entries(folder))).hexdigest() + ".dir"


def _object_path(cache: Path, md5: str) -> Path:
    return Path(cache) / CACHE_SUBDIR / md5[:2] / md5[2:]


def _write_atomic(dest: Path, src: Path | None = None, data: bytes | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            if src is not None:
                with open(src, "rb") as s:
                    shutil.copyfileobj(s, f, 1 << 20)
            else:
                f.write(data or b"")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o444)  # cache objects are read-only, as DVC keeps them
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_version(folder: Path, cache: Path, entries: list[dict[str, str]] | None = None) -> str:
    """Put `folder` into the DVC cache `cache` (only objects it lacks); returns its DVC md5 (`<md5>.dir`)."""
    folder = Path(folder)
    entries = entries if entries is not None else dir_entries(folder)
    for e in entries:
        dest = _object_path(cache, e["md5"])
        if not dest.is_file():
            _write_atomic(dest, src=folder / e["relpath"])
    listing = dir_object(entries)
    md5 = hashlib.md5(listing).hexdigest()
    dest = _object_path(cache, md5 + ".dir")
    if not dest.is_file():
        _write_atomic(dest, data=listing)
    return md5 + ".dir"


def has_version(version_md5: str, cache: Path) -> bool:
    return _object_path(cache, version_md5).is_file()


def restore_version(version_md5: str, cache: Path, dest: Path) -> Path:
    """Rebuild the folder with DVC md5 `version_md5` from the cache into `dest`; every file is checked
    against its md5. Raises DataError naming what is missing."""
    listing = _object_path(cache, version_md5)
    if not listing.is_file():
        raise DataError(f"data version {version_md5} is not in the DVC cache {cache}; get it there first (`dvc pull`, or point "
                        f"data.dvc_cache at the shared cache it was stored in)")
    if hashlib.md5(listing.read_bytes()).hexdigest() + ".dir" != version_md5:
        raise DataError(f"DVC cache object {listing} is damaged (its md5 does not match); restore it from the remote")
    dest = Path(dest)
    for e in json.loads(listing.read_text()):
        obj = _object_path(cache, e["md5"])
        if not obj.is_file() or file_md5(obj) != e["md5"]:
            raise DataError(f"data version {version_md5}: file {e['relpath']} (md5 {e['md5']}) is missing or damaged in {cache}")
        target = dest / e["relpath"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(obj, target)
    return dest
