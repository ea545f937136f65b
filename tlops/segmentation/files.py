"""Semantic-segmentation data: `path,mask` CSVs per split, masks as index PNGs, read and checked.

A segmentation dataset folder holds `dataset.yaml` (`task: semantic_segmentation`, `modality: image`, `labels:` the
class names in index order: pixel value i is `labels[i]`, 255 = ignore), `train.csv`, an optional `val.csv` (else
carved from train by image, seeded) and `test.csv`, each with columns `path` (the image) and `mask` (an 8-bit
single-channel PNG of the same size: grayscale "L" or palette "P", pixel = class index), paths relative to the folder.

Every problem is collected and reported at once, one line each, naming the file and line, the bad value and the fix:
a missing column, a file that is missing, outside the folder or does not decode, a mask that is not single-channel,
differs in size from its image or holds a value that is no class index, the same image in two splits, a labels list
that is missing, too short or repeats a name.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlops.errors import DataError

SPLIT_FILES = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
IGNORE = 255
MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class MaskedImage:
    path: str  # relative to the folder, as written
    mask: str
    line: int  # the CSV line


def check_labels(meta: dict, meta_file: Path) -> tuple[list[str], list[str]]:
    labels = meta.get("labels")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, (str, int)) and str(x).strip() for x in labels):
        whole = ("" if labels is not None else "; a mask folder's dataset.yaml holds three lines: `modality: image`, "
                 "`task: semantic_segmentation` and `labels: [...]`")  # `tlops init` on a folder that has none yet
        return [], [f"{meta_file}: `labels:` must list the class names in index order (pixel value i is labels[i]; at least two, "
                    f"e.g. labels: [background, cat]), got {labels!r}{whole}"]
    names = [str(x).strip() for x in labels]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        return names, [f"{meta_file}: `labels:` names {dup} more than once; give each class index one name"]
    if len(names) >= IGNORE:
        return names, [f"{meta_file}: `labels:` has {len(names)} classes; index masks hold at most {IGNORE} (255 is ignore)"]
    return names, []


def _rows(path: Path) -> tuple[list[MaskedImage], list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [], [f"{path} cannot be read as UTF-8 text ({e}); save it as a UTF-8 CSV with columns path,mask"]
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header or "path" not in header or "mask" not in header:
        return [], [f"{path} line 1: the header {header!r} lacks {'path' if not header or 'path' not in header else 'mask'}; "
                    "a segmentation CSV has columns path,mask"]
    ip, im = header.index("path"), header.index("mask")
    rows, problems = [], []
    for line, r in enumerate(reader, start=2):
        if not r:
            continue
        if len(r) <= max(ip, im) or not r[ip].strip() or not r[im].strip():
            problems.append(f"{path} line {line}: {r!r} lacks a path or a mask; give both, relative to the dataset folder")
            continue
        rows.append(MaskedImage(r[ip].strip(), r[im].strip(), line))
    return rows, problems


def _check_files(root: Path, csv_path: Path, row: MaskedImage, n_classes: int) -> list[str]:
    from PIL import Image, UnidentifiedImageError

    at = f"{csv_path} line {row.line}"
    resolved = root.resolve()
    sizes = {}
    for kind, rel in (("image", row.path), ("mask", row.mask)):
        f = (root / rel).resolve()
        if Path(rel).is_absolute() or not f.is_relative_to(resolved):
            return [f"{at}: {kind} {rel!r} is outside the dataset folder {root}; give a path relative to it"]
        if not f.is_file():
            return [f"{at}: {kind} file {rel!r} not found under {root}; add the file or fix the path"]
        try:
            with Image.open(f) as im:
                im.load()
                sizes[kind] = im.size
                if kind == "mask":
                    if im.mode not in ("L", "P"):
                        return [f"{at}: mask {rel!r} is a {im.mode} image; save it as an 8-bit single-channel PNG (mode L or P) whose "
                                "pixels are class indices"]
                    values = np.unique(np.asarray(im))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            return [f"{at}: {kind} file {rel!r} could not be decoded ({e}); replace or remove that file"]
    if sizes["image"] != sizes["mask"]:
        return [f"{at}: mask {row.mask!r} is {sizes['mask'][0]}x{sizes['mask'][1]} but its image is "
                f"{sizes['image'][0]}x{sizes['image'][1]}; a mask has its image's size"]
    bad = [int(v) for v in values if v >= n_classes and v != IGNORE]
    if bad:
        return [f"{at}: mask {row.mask!r} holds values {bad[:5]} that are no class index (labels has {n_classes}: 0..{n_classes - 1}, "
                f"and {IGNORE} = ignore); fix the mask or add the classes to `labels:`"]
    return []


def check_segmentation_splits(root: Path, meta: dict, seed: int = 0, val_fraction: float = 0.1,
                              decode: bool = True) -> tuple[dict[str, list[MaskedImage]], list[str], bool, list[str]]:
    """(splits, labels, val carved from train, problems); nothing raised."""
    root = Path(root)
    labels, problems = check_labels(meta, root / "dataset.yaml")
    splits: dict[str, list[MaskedImage]] = {}
    for split, fname in SPLIT_FILES.items():
        f = root / fname
        if not f.is_file():
            if split != "val":
                problems.append(f"{f} not found; a segmentation dataset needs {fname} (columns path,mask)")
            continue
        rows, found = _rows(f)
        problems += found
        if decode and labels:
            for r in rows:
                problems += _check_files(root, f, r, len(labels))
        splits[split] = rows
    carved = "val" not in splits
    if problems:
        return {s: splits.get(s, []) for s in SPLIT_FILES}, labels, carved, problems
    if carved:
        ranked = sorted(splits["train"], key=lambda r: hashlib.sha256(f"{seed}:{r.path}".encode()).hexdigest())
        n = max(1, round(len(ranked) * val_fraction)) if len(ranked) > 1 else 0
        val = set(ranked[:n])
        splits["val"] = [r for r in splits["train"] if r in val]
        splits["train"] = [r for r in splits["train"] if r not in val]
    owner: dict[str, str] = {}
    for split in ("train", "val", "test"):
        for r in splits[split]:
            other = owner.setdefault(str((root / r.path).resolve()), split)
            if other != split:
                problems.append(f"{root / SPLIT_FILES[split]} line {r.line}: image {r.path!r} is also in {SPLIT_FILES[other]}, so "
                                f"{split} would measure memory; keep each image in one split")
    return splits, labels, carved, problems


def read_segmentation_dataset(root: Path, meta: dict, seed: int = 0, val_fraction: float = 0.1):
    splits, labels, carved, problems = check_segmentation_splits(root, meta, seed, val_fraction)
    if problems:
        more = f"\n... and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise DataError(f"{len(problems)} problem(s) in the segmentation data:\n" + "\n".join(problems[:MAX_PROBLEMS_SHOWN]) + more)
    return splits, labels, carved
