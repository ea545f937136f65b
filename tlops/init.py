"""`tlops init DATA_DIR`: look at a folder of the user's data and write a starter config that runs on it.

The starter configs ship inside the package (`tlops/starters/<modality>_<kind>.yaml`: the backbone and
strategy sections, each key commented; they agree with the demo configs of the same name, a test checks it).
`_frame.yaml` holds what is the same for all of them; `init` fills in the data path, validation limits scaled
to the folder's class counts, and names derived from the folder.
"""

from __future__ import annotations

import os
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from tlops.data.dataset import INPUT_COLUMN, _read_csv, _read_meta, carve_val
from tlops.errors import ConfigError, DataError

STARTERS = resources.files("tlops").joinpath("starters")  # package data (pyproject: tool.setuptools.package-data)
COMMENT_COLUMN = 30  # where the starters' comments start
KINDS = ("linear_probe", "finetune", "domain_adapt", "fewshot")
SEED, VAL_FRACTION = 0, 0.15  # what the starter's seed and data.val_fraction say: the val carve init previews
DEMO_MIN_PER_CLASS = 20  # the demo configs' limit: a starter never asks for more
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}  # what soundfile decodes
LAYOUT_FIX = ("a dataset folder holds train.csv and test.csv (optional val.csv, unlabeled.csv) with columns text,label "
              "for texts or path,label for image/audio files (paths relative to the folder)")


@dataclass
class Folder:
    """What `inspect_folder` found."""

    root: Path
    modality: str
    has_meta: bool
    counts: dict[str, Counter]  # split -> label -> rows (train/val as a run sees them: val carved when val.csv is absent)
    val_carved: bool
    unlabeled_rows: int | None
    text_chars: tuple[int, int] | None = None  # shortest, longest text
    notes: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return sorted(self.counts["train"])

    @property
    def few_shot(self) -> bool:
        """val/test classes disjoint from train's: the few-shot layout (novel classes)."""
        train = set(self.counts["train"])
        return bool(train) and not (set(self.counts["test"]) & train) and (self.val_carved or not (set(self.counts["val"]) & train))


def starter_names() -> dict[str, str]:
    """name -> its one-line description (the first comment line of the file)."""
    out = {}
    for f in sorted(STARTERS.iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml") and not f.name.startswith("_"):
            out[f.name.removesuffix(".yaml")] = f.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
    return out


def starter_text(name: str) -> str:
    names = starter_names()
    if name not in names:
        raise ConfigError(f"no starter config {name!r}; shipped: {', '.join(names)}")
    return STARTERS.joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def _csv(root: Path, split: str) -> "object":
    f = root / f"{split}.csv"
    if not f.is_file():
        others = sorted(p.name for p in root.glob("*.csv"))
        found = f"; found {', '.join(others)}" if others else " and no CSV file at all"
        raise DataError(f"{f} is missing{found}. {LAYOUT_FIX[0].upper()}{LAYOUT_FIX[1:]}")
    return _read_csv(f, [])


def _modality_of(df, root: Path) -> str:
    header = list(df.columns)
    src = df.attrs["source"]
    if "label" not in header:
        raise DataError(f"{src} line 1: no 'label' column (header: {', '.join(header)}); name the class column 'label'")
    if "text" in header and "path" in header:
        raise DataError(f"{src} line 1: both 'text' and 'path' columns; keep 'text' for a text dataset or 'path' for files")
    if "text" in header:
        return "text"
    if "path" not in header:
        raise DataError(f"{src} line 1: no 'text' or 'path' column (header: {', '.join(header)}); name the input column "
                        "'text' (the texts themselves) or 'path' (image/audio files relative to the folder)")
    kinds = set()
    for i, p in enumerate(df["path"]):
        suffix = Path(p).suffix.lower()
        kind = "image" if suffix in IMAGE_SUFFIXES else "audio" if suffix in AUDIO_SUFFIXES else None
        if kind is None:
            raise DataError(f"{src} line {df.attrs['lines'][i]}: path {p!r} is neither an image "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))}) nor an audio file ({', '.join(sorted(AUDIO_SUFFIXES))}); "
                            "convert it or drop the row")
        kinds.add(kind)
    if len(kinds) != 1:
        raise DataError(f"{src}: the paths mix images and audio files ({', '.join(sorted(kinds)) or 'none'}); "
                        "one dataset holds one modality")
    return kinds.pop()


def inspect_folder(root: str | Path) -> Folder:
    """Modality (from dataset.yaml, else from the columns and file types), classes and counts per split."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass the folder holding train.csv and test.csv ({LAYOUT_FIX})")
    meta_file = root / "dataset.yaml"
    has_meta = meta_file.is_file()
    meta = _read_meta(meta_file) if has_meta else {}
    if meta.get("task") == "regression":  # the starters below are classifiers
        demo = "image_fewshot_regression" if meta.get("group") else f"{meta.get('modality', 'text')}_regression"
        raise DataError(f"{meta_file} says task: regression; `tlops init` writes classification starters only. Copy "
                        f"configs/{demo}.yaml (a regression demo{', the MAML family on its group: tasks' if meta.get('group') else ''}) "
                        "and set data.path and registry.model_name")
    train, test = _csv(root, "train"), _csv(root, "test")
    modality = _modality_of(train, root)
    if has_meta:
        declared = meta.get("modality")
        if declared != modality:
            raise DataError(f"{meta_file}: modality {declared!r}, but {root / 'train.csv'} holds {modality} rows "
                            f"(column '{INPUT_COLUMN[modality]}'); write `modality: {modality}` there")
    col = INPUT_COLUMN[modality]
    frames = {"train": train, "test": test}
    val_carved = not (root / "val.csv").is_file()
    if not val_carved:
        frames["val"] = _csv(root, "val")
    for split, df in frames.items():
        if col not in df.columns or "label" not in df.columns:
            raise DataError(f"{df.attrs['source']} line 1: columns {list(df.columns)}; the {modality} layout needs {col},label")
        if df.empty:
            raise DataError(f"{df.attrs['source']} has a header but no rows; add labelled rows")
    if val_carved:  # the rows a run trains on: val carved from train (seeded, stratified), as load_dataset does
        frames["train"], frames["val"] = carve_val(train, SEED, VAL_FRACTION)
    counts = {s: Counter(frames[s]["label"]) for s in ("train", "val", "test")}
    unl = root / "unlabeled.csv"
    found = Folder(root=root, modality=modality, has_meta=has_meta, counts=counts, val_carved=val_carved,
                   unlabeled_rows=len(_read_csv(unl, [])) if unl.is_file() else None)
    if modality == "text":
        lengths = [len(t) for df in frames.values() for t in df["text"]]
        found.text_chars = (min(lengths), max(lengths))
    return found


def _slug(name: str) -> str:
    """A folder name as an MLflow model/experiment name: lower case, runs of other characters as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "tlops-model"


def _default_kind(found: Folder) -> str:
    return "fewshot" if found.few_shot else "domain_adapt" if found.unlabeled_rows else "linear_probe"


def _check_kind(found: Folder, kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"--strategy {kind!r}: starters exist for {', '.join(KINDS)}")
    root = found.root
    if kind == "domain_adapt" and not found.unlabeled_rows:
        raise DataError(f"{root / 'unlabeled.csv'} is missing or empty; domain adaptation needs unlabelled target-domain rows "
                        f"(column '{INPUT_COLUMN[found.modality]}'), or pick --strategy linear_probe / finetune")
    if kind == "fewshot" and not found.few_shot:
        raise DataError(f"{root / 'test.csv'} shares classes with train.csv; the few-shot layout needs novel classes in val.csv "
                        "and test.csv (none of train's), or pick --strategy linear_probe / finetune")
    if kind == "fewshot" and found.val_carved:
        raise DataError(f"{root / 'val.csv'} is missing; few-shot validation needs its own novel classes (a carve of train "
                        "would share train's classes): add val.csv")
    if kind != "fewshot" and found.few_shot:
        raise DataError(f"{root / 'test.csv'} has none of train.csv's classes: that is the few-shot layout; use --strategy "
                        "fewshot, or put rows of the same classes in train and test")


def _scaled_limits(found: Folder, kind: str, strategy: dict) -> tuple[dict, dict, list[str]]:
    """(validation values, strategy values to change, comment lines) fitted to the folder's counts."""
    label, smallest = min(found.counts["train"].items(), key=lambda kv: (kv[1], kv[0]))
    # half the smallest class (at most the demos' 20): the data passes, and a later version that loses half a class does not
    mpc = max(1, min(DEMO_MIN_PER_CLASS, smallest // 2))
    after = " after the val carve" if found.val_carved else ""
    validation = {"min_per_class": mpc}
    notes = {"min_per_class": f"smallest class: {label!r}, {smallest} training rows{after}; half of that (at most "
                              f"{DEMO_MIN_PER_CLASS}),\n  # so a later data version that loses half a class is refused"}
    changes: dict = {}
    if found.text_chars:
        shortest, longest = found.text_chars
        validation["min_chars"] = min(3, shortest)
        validation["max_chars"] = max(2000, -(-longest // 1000) * 1000)
        notes["chars"] = f"texts here have {shortest}-{longest} characters"
    if kind == "fewshot":  # episodes need shots + queries rows per class in every split (test also gives up the support rows)
        shots = strategy["shots"]
        support = 0 if (found.root / "support.csv").is_file() else 5
        room = min(min(found.counts["train"].values()) - shots, min(found.counts["val"].values()) - shots,
                   min(found.counts["test"].values()) - support - max(shots, 5))
        ways = min(strategy["ways"], len(found.counts["train"]), len(found.counts["val"]))
        if room < 1 or ways < 2 or len(found.counts["test"]) < 5:
            raise DataError(f"{found.root}: too few rows or classes for few-shot episodes (smallest class leaves {room} query rows "
                            f"after {shots} shots; {len(found.counts['test'])} test classes, 5 needed); add rows or classes")
        changes = {"queries": min(strategy["queries"], room), "ways": ways}
    return validation, changes, [notes["min_per_class"]] + ([notes["chars"]] if "chars" in notes else [])


def _set_value(body: str, key: str, value) -> str:
    """Change `  key: old   # comment` inside the strategy section, keeping its comment."""
    pattern = re.compile(rf"^  {re.escape(key)}: \S+\s*(#.*)?$", re.M)
    start = body.index("\nstrategy:")
    head, tail = body[:start], body[start:]
    return head + pattern.sub(lambda m: f"{f'  {key}: {value}':<{COMMENT_COLUMN}}{m.group(1) or ''}".rstrip(), tail, count=1)


@dataclass
class InitResult:
    config: Path
    starter: str
    folder: Folder
    wrote_dataset_yaml: bool
    validation: dict
    strategy_changes: dict


def render(found: Folder, kind: str, config_path: Path) -> tuple[str, str, dict, dict]:
    """The config text for `found` (and the starter's name, validation values, strategy changes)."""
    name = f"{found.modality}_{kind}"
    body = starter_text(name)
    strategy = yaml.safe_load(body)["strategy"]
    validation, changes, notes = _scaled_limits(found, kind, strategy)
    for k, v in changes.items():
        body = _set_value(body, k, v)
    title, body = body.split("\n", 1)
    extra = "".join(f"  {k}: {v}\n" for k, v in validation.items() if k != "min_per_class")
    if extra:
        extra = f"  # {notes[1]}\n{extra}"
    slug = _slug(found.root.resolve().name)
    rows = {s: sum(c.values()) for s, c in found.counts.items()}
    summary = (f"{found.modality}, {len(found.classes)} classes, rows " + ", ".join(f"{s} {n}" for s, n in rows.items())
               + (f", unlabeled {found.unlabeled_rows}" if found.unlabeled_rows else ""))
    metric = "accuracy" if kind == "fewshot" else "macro_f1"
    text = string.Template(STARTERS.joinpath("_frame.yaml").read_text(encoding="utf-8")).substitute(
        title=title.lstrip("# "), data_dir=found.root, summary=summary, config_name=config_path.name,
        data_path=os.path.relpath(found.root.resolve(), config_path.resolve().parent),
        val_note="val.csv is absent: this share of train.csv is carved as val" if found.val_carved else "unused: val.csv is given",
        min_per_class=validation["min_per_class"], min_per_class_note=notes[0], validation_extra=extra, body=body.rstrip("\n"),
        model_name=slug, metric=metric, metric_pad=" " * max(1, 20 - len(metric)), experiment=slug)
    return text, name, validation, changes


def init(data_dir: str | Path, out: str | Path | None = None, kind: str | None = None, force: bool = False) -> InitResult:
    """Inspect `data_dir`, write the starter config to `out` (default `<folder name>.yaml` here) and, when the folder
    has none, its dataset.yaml (the modality found). Nothing is written when anything is wrong."""
    found = inspect_folder(data_dir)
    kind = kind or _default_kind(found)
    _check_kind(found, kind)
    config_path = Path(out) if out else Path(f"{found.root.resolve().name}.yaml")
    if config_path.exists() and not force:
        raise ConfigError(f"{config_path} exists; pass --out OTHER.yaml, or --force to replace it")
    text, name, validation, changes = render(found, kind, config_path)
    yaml.safe_load(text)  # the template and the filled-in values are still one YAML mapping
    from tlops.config import config_from_dict

    config_from_dict(_as_loaded(text, config_path), source=f"starter {name}")  # a starter that does not load is a bug here
    if not found.has_meta:
        _write_atomic(found.root / "dataset.yaml", f"modality: {found.modality}\n")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(config_path, text)
    return InitResult(config=config_path, starter=name, folder=found, wrote_dataset_yaml=not found.has_meta,
                      validation=validation, strategy_changes=changes)


def _as_loaded(text: str, config_path: Path) -> dict:
    tree = yaml.safe_load(text)
    tree["data"]["path"] = str((config_path.resolve().parent / tree["data"]["path"]).resolve())
    return tree


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
