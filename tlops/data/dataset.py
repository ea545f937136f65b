"""The dataset-directory contract: dataset.yaml + train.csv [+ val.csv] + test.csv [+ unlabeled.csv]."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tlops.errors import DataError

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
    def labels(self) -> list[str]:
        """Known label set: dataset.yaml `labels` if given, else the labels seen in `label_splits` (train; sorted)."""
        if self.meta.get("labels"):
            return [str(x) for x in self.meta["labels"]]
        return sorted({str(v) for s in self.label_splits if s in self.splits for v in self.splits[s]["label"].unique()})

    def label_ids(self, split: str) -> np.ndarray:
        """The split's labels as int64 indices into `labels`; -1 for every row of the unlabelled split."""
        if split == UNLABELED:
            return np.full(len(self.splits[split]), -1, dtype=np.int64)
        index = {l: i for i, l in enumerate(self.labels)}
        return np.array([index[l] for l in self.splits[split]["label"]], dtype=np.int64)

    def inputs(self, split: str) -> list[str]:
        """Texts, or file paths resolved against the dataset folder (validation checks they stay inside it)."""
        values = self.splits[split][self.input_column].tolist()
        if self.modality == "text":
            return values
        return [str(self.root / v) for v in values]


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; it needs a header row with columns {required} and data rows") from None
    except Exception as e:  # malformed CSV (unbalanced quotes, bad encoding)
        raise DataError(f"{path} could not be read as CSV: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {missing}; found {list(df.columns)}. "
            f"Rename the columns so the file has {required}."
        )
    df.attrs["source"] = str(path)
    return df


def load_dataset(path: str | Path, seed: int = 0, val_fraction: float = 0.15) -> Dataset:
    root = Path(path)
    meta_file = root / "dataset.yaml"
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; point data.path at a folder holding dataset.yaml, train.csv and test.csv")
    if not meta_file.is_file():
        raise DataError(f"{meta_file} is missing; create it with at least `modality: text` (or image, audio)")
    meta = yaml.safe_load(meta_file.read_text()) or {}
    modality = meta.get("modality")
    odd = [x for x in meta.get("labels") or [] if not isinstance(x, str)]
    if odd:
        raise DataError(f"{meta_file}: labels {odd} are not strings (YAML reads bare yes/no/on/off as booleans and 1 as a number); "
                        "quote them, e.g. labels: ['yes', 'no']")
    if modality not in MODALITIES:
        raise DataError(f"{meta_file}: modality {modality!r} is not one of {list(MODALITIES)}")
    col = INPUT_COLUMN[modality]
    splits: dict[str, pd.DataFrame] = {}
    for split in ("train", "test"):
        f = root / f"{split}.csv"
        if not f.is_file():
            raise DataError(f"{f} is missing; the {split} split needs columns '{col}' and 'label'")
        splits[split] = _read_csv(f, [col, "label"])
    val_file = root / "val.csv"
    carved = not val_file.is_file()
    if carved:
        splits["train"], splits["val"] = carve_val(splits["train"], seed, val_fraction)
    else:
        splits["val"] = _read_csv(val_file, [col, "label"])
    unl = root / f"{UNLABELED}.csv"
    if unl.is_file():  # its columns are checked by validation, which can say what a wrong one means
        splits[UNLABELED] = _read_csv(unl, [])
    return Dataset(root=root, modality=modality, name=meta.get("name", root.name), splits=splits, val_carved=carved, meta=meta)


def carve_val(train: pd.DataFrame, seed: int, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified, seeded split of train into train/val (row numbers in attrs stay those of train.csv)."""
    rng = np.random.default_rng(seed)
    val_idx = []
    for _, group in train.groupby("label", sort=True):
        n = int(round(len(group) * fraction))
        if n and len(group) - n >= 1:
            val_idx.extend(rng.choice(group.index.to_numpy(), size=n, replace=False).tolist())
    val = train.loc[sorted(val_idx)]
    rest = train.drop(index=val_idx)
    for df in (val, rest):
        df.attrs["source"] = train.attrs.get("source", "train.csv")
    return rest, val


def write_split_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    """The demo builders' CSV writer: UTF-8, "\n" line ends, so rebuilds are byte-identical (DVC md5)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def dataset_content_md5(root: str | Path) -> str:
    """md5 over the dataset folder's files (relative path + bytes), for runs on data outside DVC."""
    root = Path(root)
    h = hashlib.md5()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(hashlib.md5(f.read_bytes()).digest())
    return h.hexdigest()
