"""The dataset-directory contract: dataset.yaml + train.csv [+ val.csv] + test.csv [+ unlabeled.csv].

Labels are normalised to Unicode NFC when they are read (`tlops.text_files.normal_label`): the `label` column of
every CSV read here and dataset.yaml's `labels:`. So 'café' written with a precomposed é (NFC) and with e + a
combining accent (NFD) is one class in train, val, test, the support set and the model's predictions. Labels are
otherwise kept as written, case included: two spellings that differ only by case ('Noun.Food' / 'noun.food') are
refused, by `labels:` here and by validation in the CSVs, instead of training as two classes.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tlops.errors import DataError
from tlops.text_files import key_line, normal_label, parse_yaml, read_utf8

MODALITIES = ("text", "image", "audio")
INPUT_COLUMN = {"text": "text", "image": "path", "audio": "path"}
UNLABELED = "unlabeled"  # target-domain inputs without labels (domain adaptation); unlabeled.csv


@dataclass
class Dataset:
    root: Path
    modality: str
    name: str
    splits: dict[str, pd.DataFrame]  # train, val, test (+ unlabeled); each has `input` column name below
    val_carved: bool
    meta: dict = field(default_factory=dict)
    label_splits: tuple[str, ...] = ("train",)  # few-shot: every labelled split (val/test hold novel classes)

    @property
    def input_column(self) -> str:
        return INPUT_COLUMN[self.modality]

    @property
    def task(self) -> str:
        """dataset.yaml `task:`: classification (default) or regression."""
        return self.meta.get("task") or "classification"

    def _task_type(self):
        from tlops.task_types import task_type

        return task_type(self.task)

    @property
    def numeric_target(self) -> bool:
        """Its task type predicts numbers (a regression): a target column of numbers, no classes."""
        return self._task_type().numeric_target

    @property
    def target_column(self) -> str:
        """The column holding what the model predicts: `label`, or a regression dataset's `target:` column."""
        return self.meta.get("target") or "label"

    @property
    def group_column(self) -> str | None:
        """A regression dataset's `group:` column: which task (e.g. which object) each row belongs to, for the
        meta-transfer strategies' episodes; None when dataset.yaml names none."""
        return self.meta.get("group")

    def groups(self, split: str) -> np.ndarray:
        """The split's task of each row (the `group:` column, as strings)."""
        if self.group_column is None:
            raise ValueError(f"{self.root / 'dataset.yaml'} names no `group:` column")
        return np.array([str(v) for v in self.splits[split][self.group_column]], dtype=object)

    @property
    def labels(self) -> list[str]:
        """Known label set: dataset.yaml `labels` if given, else the labels seen in `label_splits` (train; sorted).
        A dataset of numbers (a regression) has no classes: []."""
        if self.numeric_target:
            return []
        if self.meta.get("labels"):
            return [str(x) for x in self.meta["labels"]]
        return sorted({str(v) for s in self.label_splits if s in self.splits for v in self.splits[s]["label"].unique()})

    def label_ids(self, split: str) -> np.ndarray:
        """The split's labels as int64 indices into `labels`; -1 for every row of the unlabelled split."""
        if split == UNLABELED:
            return np.full(len(self.splits[split]), -1, dtype=np.int64)
        index = {l: i for i, l in enumerate(self.labels)}
        return np.array([index[l] for l in self.splits[split]["label"]], dtype=np.int64)

    def targets(self, split: str) -> np.ndarray:
        """A regression split's numeric targets (float64; validation has checked they parse and are finite);
        NaN for every row of the unlabelled split."""
        if split == UNLABELED:
            return np.full(len(self.splits[split]), np.nan)
        return np.array([float(v) for v in self.splits[split][self.target_column]], dtype=np.float64)

    def y(self, split: str) -> np.ndarray:
        """What the features step stores as `y`: class indices, or a regression dataset's numeric targets."""
        return self.targets(split) if self.numeric_target else self.label_ids(split)

    def inputs(self, split: str) -> list[str]:
        """Texts, or file paths resolved against the dataset folder (validation checks they stay inside it)."""
        values = self.splits[split][self.input_column].tolist()
        if self.modality == "text":
            return values
        return [str(self.root / v) for v in values]


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    """The CSV as string columns (empty fields stay ""; a `label` column's values in Unicode NFC, see the module's
    docstring). attrs: `source` (the file) and `lines` (each row's first line in the file, 1-based: a quoted field
    with newlines or a blank line does not shift later rows)."""
    text = read_utf8(path, DataError)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows, lines = [], []
    start = 1
    try:
        for record in reader:
            if record and header is None:
                header = record
            elif record:  # a blank line is skipped, as pandas does
                if len(record) != len(header):
                    raise DataError(f"{path} line {start}: {len(record)} fields but the header has {len(header)} "
                                    f"({', '.join(header)}); quote a field that holds a comma, e.g. \"a, b\",label")
                rows.append(record)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as e:
        if "field larger than field limit" in str(e):
            raise DataError(f"{path} line {start}: a field is longer than {csv.field_size_limit():,} characters, the CSV "
                            "reader's limit; shorten that field or split its text over several rows (a text model reads only "
                            "backbone.max_length tokens of it); if no field should be that long, close the quote opened "
                            f"on line {start}") from None
        problem = "a quoted field starting here is never closed" if "end of data" in str(e) else str(e)
        raise DataError(f"{path} line {start}: {problem}; quote the whole field and double any quote inside it "
                        '(e.g. "she said ""hi""",label)') from None
    if header is None:
        raise DataError(f"{path} is empty; it needs a header row with columns {required} and data rows")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{path} line 1: column(s) {repeated} appear more than once in the header; name each column once")
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {missing}; found {header}. "
            f"Rename the columns so the file has {required}."
        )
    df = pd.DataFrame(rows, columns=header, dtype=str) if rows else pd.DataFrame({c: pd.Series([], dtype=str) for c in header})
    if "label" in df.columns:
        df["label"] = df["label"].map(normal_label)
    df.attrs["source"] = str(path)
    df.attrs["lines"] = tuple(lines)
    return df


def csv_line(df: pd.DataFrame, row) -> int:
    """The file line (1-based) where a row of a split read by `_read_csv` starts; `row` is its index label."""
    lines = df.attrs.get("lines")
    return lines[int(row)] if lines and int(row) < len(lines) else int(row) + 2  # +1 header, +1 one-based


def _read_meta(meta_file: Path) -> dict:
    """dataset.yaml as a mapping, with `labels` (if given) a list of distinct, trimmed strings."""
    text = read_utf8(meta_file, DataError)
    meta = parse_yaml(text, str(meta_file), DataError, "fix the syntax there (indentation, brackets, quotes)")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise DataError(f"{meta_file} must be a mapping such as `modality: text`, got a {type(meta).__name__}; "
                        "write one `key: value` per line (modality, optional name and labels)")
    _check_task(meta, meta_file, text)
    labels = meta.get("labels")
    if labels is None:
        return meta
    if not isinstance(labels, list):
        raise DataError(f"{meta_file} line {key_line(text, 'labels')}: labels must be a list, got {labels!r}; "
                        "write e.g. labels: [cat, dog]")
    odd = [i for i, x in enumerate(labels) if not isinstance(x, str)]
    if odd:
        raise DataError(f"{meta_file} line {key_line(text, 'labels', odd[0])}: labels {[labels[i] for i in odd]} are not strings "
                        "(YAML reads bare yes/no/on/off as booleans and 1 as a number); quote them, e.g. labels: ['yes', 'no']")
    seen: dict[str, int] = {}  # the NFC label -> its index
    folded: dict[str, int] = {}
    for i, x in enumerate(labels):
        where = f"{meta_file} line {key_line(text, 'labels', i)}"
        if x != x.strip() or not x:
            raise DataError(f"{where}: label {x!r} has surrounding whitespace or is empty; strip it, "
                            f"e.g. {x.strip()!r} (' a' and 'a' would be two different classes)")
        n = normal_label(x)
        if n in seen:
            same = "" if x == labels[seen[n]] else (f" (as {labels[seen[n]]!r} on line {key_line(text, 'labels', seen[n])}: "
                                                     "the same letters in another Unicode form; labels are read as NFC)")
            raise DataError(f"{where}: label {x!r} more than once{same}; list each label once")
        j = folded.get(n.casefold())
        if j is not None:
            raise DataError(f"{where}: labels {labels[j]!r} (line {key_line(text, 'labels', j)}) and {x!r} differ only by case "
                            f"and would be two classes; spell the class one way (e.g. {labels[j]!r}) in `labels:` and the CSVs")
        seen[n], folded[n.casefold()] = i, i
    meta["labels"] = [normal_label(x) for x in labels]
    return meta


def _check_task(meta: dict, meta_file: Path, text: str) -> None:
    """`task`, `target` and `bounds`: the regression part of dataset.yaml."""
    from tlops.task_types import all_task_types

    task = meta.get("task")
    known = all_task_types()
    if task is not None and task not in list(known):
        raise DataError(f"{meta_file} line {key_line(text, 'task')}: task {task!r} is not one of {list(known)}; "
                        "write `task: regression` for numeric targets, or leave it out for classes")
    regression = task is not None and known[task].numeric_target  # the target column holds numbers
    for key in ("target", "bounds", "group"):
        if key in meta and not regression:
            raise DataError(f"{meta_file} line {key_line(text, key)}: `{key}:` only applies to a regression dataset; "
                            f"add `task: regression` or remove `{key}:`")
    if regression and meta.get("labels"):
        raise DataError(f"{meta_file} line {key_line(text, 'labels')}: a regression dataset has no class list; "
                        "remove `labels:` (or remove `task: regression` if the labels are classes)")
    target = meta.get("target")
    if target is not None and (not isinstance(target, str) or not target.strip()):
        raise DataError(f"{meta_file} line {key_line(text, 'target')}: target {target!r} must be a column name, e.g. target: price")
    group = meta.get("group")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        raise DataError(f"{meta_file} line {key_line(text, 'group')}: group {group!r} must be a column name, e.g. group: item "
                        "(the column saying which task each row belongs to)")
    bounds = meta.get("bounds")
    if bounds is not None:
        ok = (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                                                      and np.isfinite(b) for b in bounds) and bounds[0] < bounds[1])
        if not ok:
            raise DataError(f"{meta_file} line {key_line(text, 'bounds')}: bounds {bounds!r} must be two finite numbers [lo, hi] "
                            "with lo < hi, e.g. bounds: [0, 5]")


def load_dataset(path: str | Path, seed: int = 0, val_fraction: float = 0.15) -> Dataset:
    root = Path(path)
    meta_file = root / "dataset.yaml"
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; point data.path at a folder holding dataset.yaml, train.csv and test.csv")
    if not meta_file.is_file():
        raise DataError(f"{meta_file} is missing; create it with at least `modality: text` (or image, audio)")
    meta = _read_meta(meta_file)
    modality = meta.get("modality")
    if not isinstance(modality, str) or modality not in MODALITIES:
        raise DataError(f"{meta_file}: modality {modality!r} is not one of {list(MODALITIES)}; write e.g. `modality: text`")
    name = meta.get("name")
    name = root.name if name is None else name
    if not isinstance(name, str):
        raise DataError(f"{meta_file}: name {name!r} is not a string; quote it, e.g. name: '{name}'")
    from tlops.task_types import task_type

    kind = task_type(meta.get("task") or "classification")
    owned = kind.read_dataset(root, meta, modality, name, seed, val_fraction)
    if owned is not None:  # a task type that reads its own files (token_classification: CoNLL / JSON lines)
        return owned
    col = INPUT_COLUMN[modality]
    target = meta.get("target") or "label"
    required = [col, target, *([meta["group"]] if meta.get("group") else [])]
    splits: dict[str, pd.DataFrame] = {}
    for split in ("train", "test"):
        f = root / f"{split}.csv"
        if not f.is_file():
            raise DataError(f"{f} is missing; the {split} split needs columns {', '.join(repr(c) for c in required)}")
        splits[split] = _read_csv(f, required)
    val_file = root / "val.csv"
    carved = not val_file.is_file()
    if carved:
        # numeric targets have no classes to stratify by: a plain seeded sample
        splits["train"], splits["val"] = carve_val(splits["train"], seed, val_fraction, stratify=not kind.numeric_target)
    else:
        splits["val"] = _read_csv(val_file, required)
    unl = root / f"{UNLABELED}.csv"
    if unl.is_file():  # its columns are checked by validation, which can say what a wrong one means
        splits[UNLABELED] = _read_csv(unl, [])
    return Dataset(root=root, modality=modality, name=name, splits=splits, val_carved=carved, meta=meta)


def carve_val(train: pd.DataFrame, seed: int, fraction: float, stratify: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split of train into train/val, stratified by label unless `stratify` is False (numeric targets)
    (row numbers in attrs stay those of train.csv)."""
    rng = np.random.default_rng(seed)
    val_idx = []
    groups = train.groupby("label", sort=True) if stratify else [(None, train)]
    for _, group in groups:
        n = int(round(len(group) * fraction))
        if n and len(group) - n >= 1:
            val_idx.extend(rng.choice(group.index.to_numpy(), size=n, replace=False).tolist())
    val = train.loc[sorted(val_idx)]
    rest = train.drop(index=val_idx)
    for df in (val, rest):
        df.attrs["source"] = train.attrs.get("source", "train.csv")
        df.attrs["lines"] = train.attrs.get("lines", ())
    return rest, val


def write_split_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    """The demo builders' CSV writer: UTF-8, "\n" line ends, so rebuilds are byte-identical (DVC md5)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def dataset_content_md5(root: str | Path) -> str:
    """md5 over the dataset folder's files (relative path + bytes), for runs on data outside DVC."""
    from tlops.data.md5_state import remembered_md5s

    root = Path(root)
    h = hashlib.md5()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for f, md5 in zip(files, remembered_md5s(files)):
        h.update(str(f.relative_to(root)).encode())
        h.update(bytes.fromhex(md5))
    return h.hexdigest()
