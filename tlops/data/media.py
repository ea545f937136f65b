"""Per-file facts the validation rules check: where the file is, whether it decodes, its size."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath


def inside(root: Path, rel: str) -> bool:
    """A relative path that stays inside the dataset folder (no absolute path, no `..` escape)."""
    p = PurePosixPath(str(rel).replace("\\", "/"))
    if p.is_absolute() or not str(rel).strip():
        return False
    return (root / p).resolve().is_relative_to(root.resolve())


def probe_image(path: Path) -> dict:
    from PIL import Image

    facts = {"exists": path.is_file() and path.stat().st_size > 0, "decodes": False, "width": 0, "height": 0,
             "channels": 0, "content_key": ""}
    if not facts["exists"]:
        return facts
    data = path.read_bytes()
    facts["content_key"] = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(path) as im:
            im.load()
            facts.update(decodes=True, width=im.width, height=im.height, channels=len(im.getbands()))
    except Exception:
        pass
    return facts
