"""Object-detection data: COCO JSON files per split, read and checked.

A detection dataset folder holds `dataset.yaml` (`task: object_detection`), `train.json`, an optional `val.json`
(else carved from train by image, seeded) and `test.json`, each in COCO's format::

    {"images": [{"id": 1, "file_name": "images/a.png", "width": 128, "height": 96}],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [x, y, w, h]}],
     "categories": [{"id": 3, "name": "bag"}]}

`file_name` is relative to the dataset folder; `bbox` is [x, y, width, height] in the image's pixels. An image
without annotations is a negative (background only). Categories must be the same list in every file; the class
order is the categories' ids in ascending order.

Every problem in a file is collected and reported at once, one line each, naming the file, the record (the image
or annotation id and its JSON path), the bad value and the fix: JSON syntax (line and column), missing or mistyped
fields, duplicate ids, an image file that is missing, outside the folder or does not decode, a size that differs
from the JSON, a box outside its image or without area, an unknown image or category, the same image file in two
splits, categories that differ between files, too few objects of a category in train.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlops.errors import DataError
from tlops.text_files import decode_utf8

SPLIT_FILES = {"train": "train.json", "val": "val.json", "test": "test.json"}
MAX_PROBLEMS_SHOWN = 20
BOX_SLACK = 0.5  # px a box may reach past the image's edge (rounding), never more


@dataclass
class DetectionImage:
    id: int
    file_name: str
    path: str  # absolute
    width: int
    height: int
    boxes: list = field(default_factory=list)  # COCO [x, y, w, h]
    categories: list = field(default_factory=list)  # category ids, as in the file


@dataclass
class CocoSplit:
    images: list[DetectionImage]
    categories: list[tuple[int, str]]  # (id, name) sorted by id


def _show(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")


def _image_size(path: Path) -> tuple[int, int] | str:
    """(width, height) of a decodable image, else why not."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        return str(e) or type(e).__name__


def check_coco(path: Path, root: Path | None = None, decode: bool = True) -> tuple[CocoSplit, list[str]]:
    """The images (with their objects) of one COCO JSON file and every problem found in it."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    empty = CocoSplit([], [])
    try:
        raw = path.read_bytes()
    except OSError as e:
        return empty, [f"{path} cannot be read ({e.strerror}); check that it is a readable file"]
    try:
        text = decode_utf8(raw, str(path), DataError)
    except DataError as e:
        return empty, [str(e)]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        return empty, [f"{path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg}); fix the syntax there "
                       "(a missing comma or quote, a trailing comma) and check it with `python -m json.tool FILE`"]
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        got = type(doc).__name__ if not isinstance(doc, dict) else f"keys {sorted(doc)[:8]}"
        return empty, [f"{path}: the top level must be an object with 'images', 'annotations' and 'categories' lists (COCO "
                       f"format), got {got}"]
    problems: list[str] = []
    categories: dict[int, str] = {}
    for ci, c in enumerate(doc["categories"]):
        at = f"{path} categories[{ci}]"
        if not isinstance(c, dict) or not _int(c.get("id")) or not isinstance(c.get("name"), str) or not c["name"].strip():
            problems.append(f"{at}: a category must be an object with an integer 'id' and a non-empty 'name', got {_show(c)}")
            continue
        if c["id"] in categories:
            problems.append(f"{at}: category id {c['id']} is used twice; give each category an id of its own")
        elif c["name"].strip() in categories.values():
            problems.append(f"{at}: category name {c['name']!r} is used twice; give each category one entry")
        else:
            categories[c["id"]] = c["name"].strip()
    if not categories and not problems:
        problems.append(f"{path}: 'categories' is empty; list the object classes as {{\"id\": 1, \"name\": \"...\"}}")
    images: dict[int, DetectionImage] = {}
    names: dict[str, int] = {}
    root_resolved = root.resolve()
    for ii, im in enumerate(doc["images"]):
        at = f"{path} images[{ii}]"
        if not isinstance(im, dict):
            problems.append(f"{at}: an image must be an object with id, file_name, width and height, got {_show(im)}")
            continue
        iid = im.get("id")
        at = f"{path} image id {_show(iid)} (images[{ii}])"
        bad = [k for k in ("id", "width", "height") if not _int(im.get(k)) or (k != "id" and im[k] <= 0)]
        fname = im.get("file_name")
        if bad or not isinstance(fname, str) or not fname.strip():
            what = ", ".join(f"{k} {_show(im.get(k))}" for k in bad) or f"file_name {_show(fname)}"
            problems.append(f"{at}: {what}; give an integer id, a file_name relative to the dataset folder and the image's "
                            "width and height in pixels (positive integers)")
            continue
        if iid in images:
            problems.append(f"{at}: image id {iid} is used twice in this file; give each image an id of its own")
            continue
        file = (root / fname).resolve()
        if Path(fname).is_absolute() or not file.is_relative_to(root_resolved):
            problems.append(f"{at}: file_name {fname!r} is outside the dataset folder {root}; give a path relative to it")
            continue
        if fname in names:
            problems.append(f"{at}: file_name {fname!r} is also image id {names[fname]}; list each image file once")
            continue
        if not file.is_file():
            problems.append(f"{at}: image file {fname!r} not found under {root}; add the file or fix file_name")
            continue
        if decode:
            size = _image_size(file)
            if isinstance(size, str):
                problems.append(f"{at}: image file {fname!r} could not be decoded ({size}); replace or remove that file")
                continue
            if size != (im["width"], im["height"]):
                problems.append(f"{at}: image file {fname!r} is {size[0]}x{size[1]} but the JSON says {im['width']}x{im['height']}; "
                                "fix width/height (boxes are in the file's pixels)")
                continue
        names[fname] = iid
        images[iid] = DetectionImage(iid, fname, str(file), im["width"], im["height"])
    ann_ids: set = set()
    for ai, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict):
            problems.append(f"{path} annotations[{ai}]: an annotation must be an object with image_id, category_id and bbox, "
                            f"got {_show(a)}")
            continue
        at = f"{path} annotation id {_show(a.get('id'))} (annotations[{ai}])" if "id" in a else f"{path} annotations[{ai}]"
        if "id" in a:
            if a["id"] in ann_ids:
                problems.append(f"{at}: annotation id {_show(a['id'])} is used twice; give each annotation an id of its own")
            ann_ids.add(a["id"] if isinstance(a["id"], (int, str)) else repr(a["id"]))
        iid, cid, box = a.get("image_id"), a.get("category_id"), a.get("bbox")
        if not _int(iid) or iid not in images:
            listed = any(isinstance(im, dict) and im.get("id") == iid for im in doc["images"])
            if not listed:  # an image with a problem of its own was reported there
                problems.append(f"{at}: image_id {_show(iid)} is not an image of this file; fix image_id or add the image")
            continue
        if not _int(cid) or cid not in categories:
            problems.append(f"{at}: category_id {_show(cid)} is not a listed category ({sorted(categories)}); fix it or add "
                            "the category")
            continue
        if not isinstance(box, list) or len(box) != 4 or not all(_num(v) for v in box):
            problems.append(f"{at}: bbox {_show(box)} must be 4 numbers [x, y, width, height]")
            continue
        x, y, w, h = (float(v) for v in box)
        im = images[iid]
        if w <= 0 or h <= 0:
            problems.append(f"{at}: bbox {box} has no area (width and height must be > 0); fix or remove the annotation")
            continue
        if x < -BOX_SLACK or y < -BOX_SLACK or x + w > im.width + BOX_SLACK or y + h > im.height + BOX_SLACK:
            problems.append(f"{at}: bbox {box} reaches outside image id {iid} ({im.width}x{im.height}); boxes are [x, y, "
                            "width, height] in the image's pixels: clip it to the image")
            continue
        x0, y0 = max(0.0, x), max(0.0, y)
        im.boxes.append([x0, y0, min(x + w, im.width) - x0, min(y + h, im.height) - y0])
        im.categories.append(cid)
    return CocoSplit(list(images.values()), sorted(categories.items())), problems


def carve_val(images: list[DetectionImage], fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): val is the images with the lowest sha256 rank of (seed, file_name), at least one."""
    ranked = sorted(images, key=lambda im: hashlib.sha256(f"{seed}:{im.file_name}".encode()).hexdigest())
    n = max(1, round(len(images) * fraction)) if len(images) > 1 else 0
    val = {id(im) for im in ranked[:n]}
    return [im for im in images if id(im) not in val], [im for im in images if id(im) in val]


def check_coco_splits(root: Path, seed: int = 0, val_fraction: float = 0.1, min_per_category: int = 1,
                      decode: bool = True) -> tuple[dict[str, list[DetectionImage]], list[tuple[int, str]], bool, list[str]]:
    """(splits, categories, val carved from train, problems): every split file read and checked, val carved from train
    when there is no val.json, then the checks across splits; nothing raised."""
    root = Path(root)
    problems: list[str] = []
    splits: dict[str, list[DetectionImage]] = {}
    cats: dict[str, list] = {}
    for split, fname in SPLIT_FILES.items():
        f = root / fname
        if not f.is_file():
            if split != "val":
                problems.append(f"{f} not found; a detection dataset needs {fname} (COCO JSON)")
            continue
        read, found = check_coco(f, root, decode=decode)
        splits[split], cats[split] = read.images, read.categories
        problems += found
    categories = cats.get("train", [])
    for split in ("val", "test"):
        if split in cats and cats[split] and categories and cats[split] != categories:
            problems.append(f"{root / SPLIT_FILES[split]}: its categories {cats[split]} differ from train.json's {categories}; "
                            "give every split the same categories list (same ids and names)")
    val_carved = "val" not in splits
    if problems:
        return {s: splits.get(s, []) for s in SPLIT_FILES}, categories, val_carved, problems
    if val_carved:
        splits["train"], splits["val"] = carve_val(splits["train"], val_fraction, seed)
    owner: dict[str, str] = {}
    for split in ("train", "val", "test"):
        shared = 0
        for im in splits[split]:
            other = owner.setdefault(str(Path(im.path).resolve()), split)
            if other != split:
                shared += 1
                if shared <= 3:
                    problems.append(f"{root / SPLIT_FILES[split]} image id {im.id}: file {im.file_name!r} is also in "
                                    f"{SPLIT_FILES[other]}, so {split} would measure memory; keep each image in one split")
        if shared > 3:
            problems.append(f"{root / SPLIT_FILES[split]}: {shared} images in all are also in an earlier split")
    counts = {cid: 0 for cid, _ in categories}
    for im in splits["train"]:
        for c in im.categories:
            counts[c] += 1
    for cid, name in categories:
        if counts[cid] < min_per_category:
            problems.append(f"{root / SPLIT_FILES['train']}: category {name!r} (id {cid}) has {counts[cid]} objects in train, fewer "
                            f"than {min_per_category}; annotate more, or remove the category from every split")
    for split in SPLIT_FILES:
        if not splits[split]:
            problems.append(f"{root / SPLIT_FILES[split if not (split == 'val' and val_carved) else 'train']}: no images in "
                            f"{split}; add images" + (" (val is carved from train: give train more images, or add val.json)"
                                                       if split == "val" and val_carved else ""))
    return splits, categories, val_carved, problems


def read_coco_dataset(root: Path, seed: int = 0, val_fraction: float = 0.1, min_per_category: int = 1):
    """The splits and categories, or a DataError listing every problem (the first MAX_PROBLEMS_SHOWN)."""
    splits, categories, carved, problems = check_coco_splits(root, seed, val_fraction, min_per_category)
    if problems:
        more = f"\n... and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise DataError(f"{len(problems)} problem(s) in the detection data:\n" + "\n".join(problems[:MAX_PROBLEMS_SHOWN]) + more)
    return splits, categories, carved
