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


def probe_audio(path: Path) -> dict:
    """exists / decodes / sample_rate / channels / seconds / peak (for the silence rule) / content_key."""
    import numpy as np
    import soundfile as sf

    facts = {"exists": path.is_file() and path.stat().st_size > 0, "decodes": False, "sample_rate": 0, "channels": 0,
             "seconds": 0.0, "peak": 0.0, "content_key": ""}
    if not facts["exists"]:
        return facts
    facts["content_key"] = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception:
        return facts
    facts.update(decodes=True, sample_rate=int(rate), channels=int(data.shape[1]), seconds=data.shape[0] / rate if rate else 0.0,
                 peak=float(np.abs(data).max()) if data.size else 0.0)
    return facts
