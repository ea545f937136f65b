"""`tlops init DATA_DIR`: look at a folder of the user's data and write a starter config that runs on it.

The starter configs ship inside the package (`tlops/starters/<modality>_<kind>.yaml`: the backbone and
strategy sections, each key commented; they agree with the demo configs of the same name, a test checks it).
`_frame.yaml` holds what is the same for all of them; `init` fills in the data path, validation limits scaled
to the folder's class counts, and names derived from the folder.

A regression dataset (dataset.yaml `task: regression`) gets the regression starters: `<modality>_regression`
(a ridge probe), `<modality>_fewshot_regression` (MAML on the `group:` column's tasks), or the finetune /
domain_adapt starters with the options that read classes changed. It has no classes to count: the validation
section says what is checked of the target instead, and few-shot queries are fitted to the rows per task.

A task type that reads its own files (token classification: `train.conll`/`train.jsonl`; extractive QA: a SQuAD
`train.json`) says so through its `recognise` hook when the folder has no dataset.yaml; init then reads the folder
with that task type's reader (its first problem raised with file and line), counts what `init_summary` counts
(entities per type; questions) and writes the task type's starters (`starters`, `default_starter`).
"""

from __future__ import annotations

import math
import os
import re
import string
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from tlops.config import DEFAULT_STRATEGY
from tlops.data.dataset import INPUT_COLUMN, UNLABELED, Dataset, _read_csv, _read_meta, carve_val, csv_line
from tlops.data.fewshot import carve_support_task
from tlops.errors import ConfigError, DataError
from tlops.strategies.registry import StrategyEntry, all_strategies, get_strategy, starter_kinds
from tlops.task_types import all_task_types, check_config_fits, task_type

STARTERS = resources.files("tlops").joinpath("starters")  # package data (pyproject: tool.setuptools.package-data)
COMMENT_COLUMN = 30  # where the starters' comments start
SEED, VAL_FRACTION = 0, 0.15  # what the starter's seed and data.val_fraction say: the val carve init previews
DEMO_MIN_PER_CLASS = 20  # the demo configs' limit: a starter never asks for more
SUPPORT_SHOTS = 5  # strategy.support_shots' default: test rows per class (a regression: of one task) carved as the support set
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
    rows: dict[str, int]  # split -> rows (train/val as a run sees them: val carved when val.csv is absent)
    counts: dict[str, Counter]  # split -> label -> rows; a regression: task (its `group:` value) -> rows, none without one
    val_carved: bool
    unlabeled_rows: int | None
    task: str = "classification"  # dataset.yaml `task:`
    target: str = "label"  # the column a model predicts (a regression's `target:`)
    group: str | None = None  # a regression's task column (`group:`), what few-shot episodes are drawn from
    bounds: list | None = None  # a regression's `bounds:` (validation refuses targets outside them)
    target_range: tuple[float, float] | None = None  # a regression's lowest, highest training target
    text_chars: tuple[int, int] | None = None  # shortest, longest text
    notes: list[str] = field(default_factory=list)
    own_files: str | None = None  # what a task type with its own files (not the CSV contract) counts, e.g. 'entities of 4 types'

    @property
    def regression(self) -> bool:
        """Its task type predicts numbers (a target column, no classes to count)."""
        return task_type(self.task).numeric_target

    @property
    def classes(self) -> list[str]:
        return [] if self.regression or self.own_files else sorted(self.counts["train"])

    @property
    def few_shot(self) -> bool:
        """Classes: val/test classes disjoint from train's (novel classes). Numbers: a `group:` column of tasks."""
        if self.regression:
            return self.group is not None
        if self.own_files:
            return False
        train = set(self.counts["train"])
        return bool(train) and not (set(self.counts["test"]) & train) and (self.val_carved or not (set(self.counts["val"]) & train))

    def summary(self) -> str:
        """One line: modality, classes (or the target), rows per split."""
        what = self.own_files or f"{len(self.classes)} classes"
        if self.regression:
            lo, hi = self.target_range
            tasks = f" in {len(self.counts['train'])} tasks ('{self.group}')" if self.group else ""
            what = f"regression on '{self.target}' (train {lo:g} to {hi:g}){tasks}"
        return (f"{self.modality}, {what}, rows " + ", ".join(f"{s} {n}" for s, n in self.rows.items())
                + (f", unlabeled {self.unlabeled_rows}" if self.unlabeled_rows else ""))


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


def _modality_of(df, target: str, regression: bool) -> str:
    header = list(df.columns)
    src = df.attrs["source"]
    if target not in header:
        fix = ("name the class column 'label'" if not regression else f"name the column of numbers '{target}'"
               + (", or name it in dataset.yaml with `target: <column>`" if target == "label" else " (dataset.yaml `target:`)"))
        raise DataError(f"{src} line 1: no '{target}' column (header: {', '.join(header)}); {fix}")
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
    meta = _read_meta(meta_file) if has_meta else {}  # checks task, target, group and bounds as a run does
    if not has_meta:  # a folder of a task type's own files (train.conll, a SQuAD train.json) says its task
        recognised = next(((name, m) for name, tt in all_task_types().items() if (m := tt.recognise(root))), None)
        if recognised:
            meta = {"task": recognised[0], "modality": recognised[1]}
    own = _own_files_folder(root, meta, has_meta)
    if own is not None:
        return own
    regression = task_type(meta.get("task") or "classification").numeric_target
    target, group = meta.get("target") or "label", meta.get("group")
    train, test = _csv(root, "train"), _csv(root, "test")
    modality = _modality_of(train, target, regression)
    if has_meta:
        declared = meta.get("modality")
        if declared != modality:
            raise DataError(f"{meta_file}: modality {declared!r}, but {root / 'train.csv'} holds {modality} rows "
                            f"(column '{INPUT_COLUMN[modality]}'); write `modality: {modality}` there")
    required = [INPUT_COLUMN[modality], target, *([group] if group else [])]
    frames = {"train": train, "test": test}
    val_carved = not (root / "val.csv").is_file()
    if not val_carved:
        frames["val"] = _csv(root, "val")
    for split, df in frames.items():
        if any(c not in df.columns for c in required):
            raise DataError(f"{df.attrs['source']} line 1: columns {list(df.columns)}; the {modality} layout needs {','.join(required)}"
                            + (f" (dataset.yaml `group: {group}` names the task column)" if group else ""))
        if df.empty:
            raise DataError(f"{df.attrs['source']} has a header but no rows; add labelled rows")
        if regression:
            _check_numbers(df, target)
    if not regression:
        _check_labels(frames)
    if val_carved:  # the rows a run trains on: val carved from train (seeded; stratified for classes), as load_dataset does
        frames["train"], frames["val"] = carve_val(train, SEED, VAL_FRACTION, stratify=not regression)
        if frames["val"].empty:  # a run would select its model on nothing
            raise DataError(f"{root / 'train.csv'}: carving val from its {len(train)} rows left no val rows ({VAL_FRACTION:.0%} of "
                            + ("each class" if not regression else "them") + " rounds to 0); add a val.csv with the same "
                            "columns, or more training rows")
    by = group if regression else "label"  # a regression without tasks has nothing to count per key
    counts = {s: Counter(frames[s][by]) if by else Counter() for s in ("train", "val", "test")}
    unl = root / "unlabeled.csv"
    found = Folder(root=root, modality=modality, has_meta=has_meta, rows={s: len(frames[s]) for s in ("train", "val", "test")},
                   counts=counts, val_carved=val_carved, unlabeled_rows=len(_read_csv(unl, [])) if unl.is_file() else None,
                   task=meta.get("task") or "classification", target=target, group=group, bounds=meta.get("bounds"))
    if regression:
        found.target_range = _varying_range(frames["train"], target, val_carved)
    if modality == "text":
        lengths = [len(t) for df in frames.values() for t in df["text"]]
        found.text_chars = (min(lengths), max(lengths))
    return found


def _own_files_folder(root: Path, meta: dict, has_meta: bool) -> Folder | None:
    """The Folder of a task type that reads its own files (token classification, extractive QA): read as a run reads
    it, its reader's first problem raised with its file, line and fix; None for the CSV contract."""
    tt = task_type(meta.get("task") or "classification")
    modality = meta.get("modality") or "text"
    ds = tt.read_dataset(root, meta, modality, root.name, SEED, VAL_FRACTION)
    if ds is None:
        return None
    tt.raise_reader_problems(ds)
    for split, df in ds.splits.items():
        if df.empty and not (split == "val" and ds.val_carved):
            raise DataError(f"{df.attrs.get('source', root)} has no {tt.name.replace('_', ' ')} rows; add some")
    counts, words = tt.init_summary(ds)
    if ds.val_carved and ds.splits["val"].empty:
        raise DataError(f"{root}: carving val from train left no val rows (train has {len(ds.splits['train'])}); add a val file "
                        "or more training rows")
    found = Folder(root=root, modality=modality, has_meta=has_meta, rows={s: len(ds.splits[s]) for s in ("train", "val", "test")},
                   counts={s: counts.get(s, Counter()) for s in ("train", "val", "test")}, val_carved=ds.val_carved,
                   unlabeled_rows=None, task=tt.name, own_files=words)
    return found


def _check_labels(frames: dict) -> None:
    """The label rules validation applies, before anything is counted: a label with surrounding whitespace (or empty)
    would be a class of its own ('apache ' beside 'apache'), and so would a case-only variant ('Food' beside 'food');
    labels are already read as NFC (tlops.text_files.normal_label), so Unicode forms are one class. The first bad
    line is named, with the fix."""
    spelled: dict[str, tuple[str, str, int]] = {}  # casefolded label -> (spelling, file, line) first seen
    for df in frames.values():
        for i, label in zip(df.index, df["label"]):
            where = f"{df.attrs['source']} line {csv_line(df, i)}"
            label = str(label)
            if label != label.strip() or not label.strip():
                raise DataError(f"{where}: label {label!r} has surrounding whitespace or is empty, which validation refuses "
                                f"(it would be a class apart from {label.strip()!r}); strip it" + (f", e.g. {label.strip()!r}" if label.strip() else ""))
            first = spelled.setdefault(label.casefold(), (label, df.attrs["source"], csv_line(df, i)))
            if first[0] != label:
                raise DataError(f"{where}: label {label!r} differs only by case from {first[0]!r} ({first[1]} line {first[2]}), "
                                f"which validation refuses (they would be two classes); spell the class one way, e.g. {first[0]!r}")


def _check_numbers(df, target: str) -> None:
    """Every row's target a finite number, as validation's target rules ask (its parser): the first bad line named."""
    from tlops.validation import _parse_target

    for i, v in zip(df.index, df[target]):
        number = _parse_target(v)
        if number is None or not math.isfinite(number):
            raise DataError(f"{df.attrs['source']} line {csv_line(df, i)}: '{target}' is {v!r}, not a finite number; dataset.yaml "
                            f"says task: regression: write a number (e.g. 3.5) there or drop the row, or remove `task: regression` "
                            "to train a classifier on the values as classes")


def _varying_range(train, target: str, val_carved: bool) -> tuple[float, float]:
    """(lowest, highest) training target; refused when they are equal, as validation's 'target not constant' rule does."""
    values = [float(v) for v in train[target]]
    lo, hi = min(values), max(values)
    if lo == hi:
        after = " after the val carve" if val_carved else ""
        raise DataError(f"{train.attrs['source']}: every training row{after} has '{target}' {lo:g}; a regressor needs targets that "
                        "vary (a constant is predicted without a model): add rows with other values")
    return lo, hi


def _slug(name: str) -> str:
    """A folder name as an MLflow model/experiment name: lower case, runs of other characters as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "tlops-model"


def _kind_entry(kind: str) -> StrategyEntry:
    """The first strategy registered with this `tlops init --strategy` starter kind: what it needs of the folder."""
    return next(e for e in all_strategies().values() if e.starter == kind)


def _few_shot_kind(kind: str) -> bool:
    return _kind_entry(kind).few_shot


def _default_kind(found: Folder) -> str:
    """The few-shot starter for a folder of novel classes (or tasks), the one that reads unlabeled.csv when the folder has
    unlabelled rows, else the default strategy's."""
    kinds = starter_kinds()
    if task_type(found.task).default_starter:
        return task_type(found.task).default_starter
    if found.few_shot:
        return next(k for k in kinds if _few_shot_kind(k))
    if found.unlabeled_rows:
        return next(k for k in kinds if UNLABELED in _kind_entry(k).splits)
    return get_strategy(DEFAULT_STRATEGY).starter


def _starter_name(found: Folder, kind: str) -> str:
    return task_type(found.task).starter_name(found.modality, kind)


def _check_kind(found: Folder, kind: str) -> None:
    kinds = starter_kinds()  # what the strategies' registry entries name
    if kind not in kinds:
        raise ConfigError(f"--strategy {kind!r}: starters exist for {', '.join(kinds)}")
    root = found.root
    if found.task not in _kind_entry(kind).tasks:
        fits = [k for k in kinds if found.task in _kind_entry(k).tasks]
        raise ConfigError(f"--strategy {kind!r} does not train {found.task.replace('_', ' ')}; starters for it: {', '.join(fits)}")
    if found.own_files:
        return
    if UNLABELED in _kind_entry(kind).splits and not found.unlabeled_rows:
        raise DataError(f"{root / 'unlabeled.csv'} is missing or empty; domain adaptation needs unlabelled target-domain rows "
                        f"(column '{INPUT_COLUMN[found.modality]}'), or pick --strategy linear_probe / finetune")
    if found.regression:  # a ridge or fine-tuned regressor also fits a folder of tasks (no class must be seen in train)
        if _few_shot_kind(kind):
            _check_task_layout(found)
        return
    if _few_shot_kind(kind) and not found.few_shot:
        raise DataError(f"{root / 'test.csv'} shares classes with train.csv; the few-shot layout needs novel classes in val.csv "
                        "and test.csv (none of train's), or pick --strategy linear_probe / finetune")
    if _few_shot_kind(kind) and found.val_carved:
        raise DataError(f"{root / 'val.csv'} is missing; few-shot validation needs its own novel classes (a carve of train "
                        "would share train's classes): add val.csv")
    if not _few_shot_kind(kind) and found.few_shot:
        raise DataError(f"{root / 'test.csv'} has none of train.csv's classes: that is the few-shot layout; use --strategy "
                        "fewshot, or put rows of the same classes in train and test")


def _check_task_layout(found: Folder) -> None:
    """Few-shot regression: a `group:` column of tasks, and val/test tasks none of train's."""
    root = found.root
    if found.group is None:
        raise DataError(f"{root / 'dataset.yaml'} names no `group:` column; few-shot regression learns from tasks: add `group: <column>` "
                        "(the column saying which task, e.g. which object, each row belongs to), or pick --strategy linear_probe / finetune")
    if found.val_carved:
        raise DataError(f"{root / 'val.csv'} is missing; few-shot validation needs its own new tasks (a carve of train would share "
                        "train's tasks): add val.csv")
    for split in ("val", "test"):
        shared = sorted(set(found.counts[split]) & set(found.counts["train"]))
        if shared:
            raise DataError(f"{root / f'{split}.csv'} shares {len(shared)} task(s) with train.csv ('{found.group}' {', '.join(shared[:3])}"
                            f"{' ...' if len(shared) > 3 else ''}); few-shot regression is evaluated on tasks never meta-trained on: "
                            "move those rows, or pick --strategy linear_probe / finetune")


@dataclass
class Limits:
    """What `init` fits to the folder: validation keys, the validation section's text, strategy values it changes."""

    validation: dict
    text: str  # the config's validation section (a comment alone where no key applies)
    changes: dict = field(default_factory=dict)  # strategy key -> the value replacing the starter's
    comments: dict = field(default_factory=dict)  # strategy key -> the comment replacing the starter's


def _char_limits(found: Folder) -> tuple[dict, list[str]]:
    """Text length limits that the folder's texts pass (the defaults, widened when needed) and their comment."""
    if not found.text_chars:
        return {}, []
    shortest, longest = found.text_chars
    limits = {"min_chars": min(3, shortest), "max_chars": max(2000, -(-longest // 1000) * 1000)}
    return limits, [f"# texts here have {shortest}-{longest} characters", *(f"{k}: {v}" for k, v in limits.items())]


def _section(lines: list[str]) -> str:
    """`validation:` with these lines indented, or the comment lines alone at the top level when no key is set."""
    if all(line.startswith("#") for line in lines):
        return "".join(f"{line}\n" for line in lines)
    return "validation:\n" + "".join(f"  {line}\n" for line in lines)


def _scaled_limits(found: Folder, kind: str, strategy: dict) -> Limits:
    """Validation values and strategy changes fitted to the folder's counts."""
    if found.own_files:
        return _own_files_limits(found)
    return (_regression_limits if found.regression else _class_limits)(found, kind, strategy)


def _own_files_limits(found: Folder) -> Limits:
    """A task type reading its own files checks them line by line as it reads them; the CSV keys do not apply."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(found.counts["train"].items()))
    return Limits({}, _section([f"# train: {counts}" if counts else "# train: nothing counted",
                                f"# validation: the {found.task.replace('_', ' ')} reader checks every file as it reads it",
                                "# (`tlops validate` lists each problem with its file and line)"]))


def _class_limits(found: Folder, kind: str, strategy: dict) -> Limits:
    label, smallest = min(found.counts["train"].items(), key=lambda kv: (kv[1], kv[0]))
    # half the smallest class (at most the demos' 20): the data passes, and a later version that loses half a class does not
    mpc = max(1, min(DEMO_MIN_PER_CLASS, smallest // 2))
    after = " after the val carve" if found.val_carved else ""
    chars, chars_lines = _char_limits(found)
    lines = [f"# smallest class: {label!r}, {smallest} training rows{after}; half of that (at most {DEMO_MIN_PER_CLASS}),",
             "# so a later data version that loses half a class is refused", f"min_per_class: {mpc}", *chars_lines]
    changes: dict = {}
    if _few_shot_kind(kind):  # episodes need shots + queries rows per class in every split (test also gives up the support rows)
        shots = strategy["shots"]
        support = 0 if (found.root / "support.csv").is_file() else SUPPORT_SHOTS
        room = min(min(found.counts["train"].values()) - shots, min(found.counts["val"].values()) - shots,
                   min(found.counts["test"].values()) - support - max(shots, 5))
        ways = min(strategy["ways"], len(found.counts["train"]), len(found.counts["val"]))
        if room < 1 or ways < 2 or len(found.counts["test"]) < 5:
            raise DataError(f"{found.root}: too few rows or classes for few-shot episodes (smallest class leaves {room} query rows "
                            f"after {shots} shots; {len(found.counts['test'])} test classes, 5 needed); add rows or classes")
        changes = {"queries": min(strategy["queries"], room), "ways": ways}
    return Limits({"min_per_class": mpc, **chars}, _section(lines), changes)


def _regression_limits(found: Folder, kind: str, strategy: dict) -> Limits:
    """No classes to count: the section says which target rules validation applies (dataset.yaml's, not this file's);
    text keeps its length limits. The strategy options that read classes are changed."""
    lo, hi = found.target_range
    after = " after the val carve" if found.val_carved else ""
    within, add = ((f", within dataset.yaml's bounds [{found.bounds[0]:g}, {found.bounds[1]:g}]", "") if found.bounds
                   else ("", "; add `bounds: [lo, hi]` to dataset.yaml to refuse values outside a known range"))
    chars, chars_lines = _char_limits(found)
    rules = (f"{'' if chars else 'validation: the defaults (file checks). '}Regression: no classes to count; every row's "
             f"'{found.target}' must be a finite number, not the same on every training row{within}. train.csv holds "
             f"{lo:g} to {hi:g}{after}{add}.")
    lines = [f"# {line}" for line in textwrap.wrap(rules, 110 - (2 if chars else 0))] + chars_lines
    changes, comments = _regression_changes(found, kind, strategy)
    return Limits(chars, _section(lines), changes, comments)


def _regression_changes(found: Folder, kind: str, strategy: dict) -> tuple[dict, dict]:
    """(strategy values, their comments) replacing the starter's where they read classes or could change the number: the
    few-shot queries fitted to the rows per task here, the rest as the starter's strategy says (its config's
    `starter_changes`)."""
    if _few_shot_kind(kind):
        return {"queries": _task_queries(found, strategy)}, {}
    changes = getattr(get_strategy(strategy["name"]).config, "starter_changes", None)
    return changes(strategy, found.task, found.modality) if changes is not None else ({}, {})


def _task_queries(found: Folder, strategy: dict) -> int:
    """Query rows per episode that fit: every split needs one task with shots + queries rows (test: after the support carve)."""
    shots = strategy["shots"]
    largest = {"train": max(found.counts["train"].values()), "val": max(found.counts["val"].values()),
               "test": max(_test_tasks_after_support(found).values(), default=0)}
    split, rows = min(largest.items(), key=lambda kv: kv[1])
    if rows <= shots:
        carve = "" if split != "test" or (found.root / "support.csv").is_file() else \
            f" once {SUPPORT_SHOTS} rows of one task leave it as the registered model's support set"
        raise DataError(f"{found.root / f'{split}.csv'}: its largest task has {rows} rows{carve}; an episode needs {shots} shots + at "
                        f"least 1 query row of one task ('{found.group}'): add rows to its tasks")
    return min(strategy["queries"], rows - shots)


def _test_tasks_after_support(found: Folder) -> Counter:
    """test's rows per task once the support rows leave it: the run's own carve (carve_support_task) on the task column."""
    if (found.root / "support.csv").is_file():
        return found.counts["test"]
    tasks = pd.DataFrame({found.group: [t for t, n in sorted(found.counts["test"].items()) for _ in range(n)]})
    rest, _ = carve_support_task(tasks, found.group, SUPPORT_SHOTS, SEED)
    return Counter(rest[found.group])


def _yaml_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _set_value(body: str, key: str, value, comment: str | None = None) -> str:
    """Change `  key: old   # comment` inside the strategy section, keeping its comment unless a new one is given."""
    pattern = re.compile(rf"^  {re.escape(key)}: \S+\s*(#.*)?$", re.M)
    start = body.index("\nstrategy:")
    head, tail = body[:start], body[start:]

    def line(m: re.Match) -> str:
        note = f"# {comment}" if comment else m.group(1) or ""
        return f"{f'  {key}: {_yaml_value(value)}':<{COMMENT_COLUMN}}{note}".rstrip()

    return head + pattern.sub(line, tail, count=1)


def _val_note(found: Folder) -> str:
    if found.own_files:
        return "no val file: this share of train is carved as val" if found.val_carved else "unused: a val file is given"
    return "val.csv is absent: this share of train.csv is carved as val" if found.val_carved else "unused: val.csv is given"


def _gate_metric(found: Folder, kind: str) -> str:
    """The task's default gate metric; few-shot classes are gated on episode accuracy."""
    return "accuracy" if _few_shot_kind(kind) and not found.regression else task_type(found.task).default_gate_metric


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
    name = _starter_name(found, kind)
    body = starter_text(name)
    strategy = yaml.safe_load(body)["strategy"]
    limits = _scaled_limits(found, kind, strategy)
    for k, v in limits.changes.items():
        body = _set_value(body, k, v, limits.comments.get(k))
    title, body = body.split("\n", 1)
    slug = _slug(found.root.resolve().name)
    metric = _gate_metric(found, kind)
    text = string.Template(STARTERS.joinpath("_frame.yaml").read_text(encoding="utf-8")).substitute(
        title=title.lstrip("# "), data_dir=found.root, summary=found.summary(), config_name=config_path.name,
        data_path=os.path.relpath(found.root.resolve(), config_path.resolve().parent),
        val_note=_val_note(found),
        validation=limits.text, body=body.rstrip("\n"), model_name=slug, metric=metric, metric_pad=" " * max(1, 20 - len(metric)),
        metric_note=" (lower is better)" if metric == "mae" else "", experiment=slug)
    return text, name, limits.validation, limits.changes


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

    # a starter that does not load, or does not fit the dataset's task as a run checks it, is a bug here
    cfg = config_from_dict(_as_loaded(text, config_path), source=f"starter {name}")
    check_config_fits(cfg, Dataset(root=found.root, modality=found.modality, name=found.root.name, splits={},
                                   val_carved=found.val_carved, meta={"task": found.task}))
    if not found.has_meta:
        task = f"task: {found.task}\n" if found.own_files else ""  # a CSV folder with no dataset.yaml: classification
        _write_atomic(found.root / "dataset.yaml", f"modality: {found.modality}\n{task}")
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
