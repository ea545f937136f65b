"""A full disk (or quota) while writing tlops's own state, said as the user can act on it: which folder, which
setting moves it. Callers write atomically (temp file + rename), so the failed write leaves nothing behind."""

from __future__ import annotations

import errno
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tlops.errors import TlopsError, exception_chain

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(TlopsError):
    """No space left where tlops writes its cache or checkpoints; nothing was written under a final name."""


# How libraries that do their own I/O report it: safetensors (Rust) as "No space left on device (os error 28)"
# in a SafetensorError; torch.save as a RuntimeError raised while handling the OSError (found on the chain).
_MESSAGES = ("No space left on device", "Disk quota exceeded", "os error 28", "os error 122")


def is_disk_full(e: BaseException | None) -> bool:
    return any((isinstance(c, OSError) and c.errno in FULL) or any(m in str(c) for m in _MESSAGES) for c in exception_chain(e))


@contextmanager
def space_for(folder: str | Path, what: str, setting: str) -> Iterator[None]:
    """Turn a full disk met inside into a DiskFull naming `folder`, what was being written and the config
    `setting` that points it elsewhere."""
    try:
        yield
    except Exception as e:
        if not is_disk_full(e):
            raise
        raise DiskFull(f"no space left on the device of {folder} while writing {what}; nothing was kept. "
                       f"Free space there, or set {setting} to a folder on a disk with room "
                       f"(--set {setting}=/path/with/space)") from e


def _full_folder(e: BaseException | None) -> Path | None:
    """The folder a full-disk error failed to write into: a copy's destination (`shutil.copy*` fills in the source as
    `filename` and the destination as `filename2`; `shutil.copytree` gathers (source, destination, why) triples), else
    the file the error names; None when it names none."""
    import os
    import shutil

    for c in exception_chain(e):
        if isinstance(c, shutil.Error) and c.args and isinstance(c.args[0], list):
            for entry in c.args[0]:
                if isinstance(entry, tuple) and len(entry) == 3 and any(m in str(entry[2]) for m in _MESSAGES):
                    return Path(os.fsdecode(entry[1])).parent
        if isinstance(c, OSError) and (c.errno in FULL or any(m in str(c) for m in _MESSAGES)):
            target = c.filename2 if c.filename2 not in (None, "") else c.filename
            if isinstance(target, (str, bytes, os.PathLike)) and os.fsdecode(target):
                return Path(os.fsdecode(target)).parent
    return None


def as_disk_full(e: OSError, fallback: Path) -> DiskFull | None:
    """A full-disk OSError met outside `space_for` as a DiskFull naming the folder it failed to write into (a copy's
    destination, never its source; else `fallback`, the run's work dir); None for any other OSError."""
    if not is_disk_full(e):
        return None
    where = _full_folder(e) or fallback
    return DiskFull(f"no space left on the device of {where}; nothing was registered. Free space there, or point "
                    "execution.work_dir / features.cache_dir at a disk with room (--set execution.work_dir=/path/with/space)")
