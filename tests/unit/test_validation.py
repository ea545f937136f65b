"""Bad input: each case names the file, the row (CSV line) or value, and the fix."""

import pandas as pd
import pytest

from tlops.config import ValidationConfig
from tlops.data import load_dataset
from tlops.errors import DataError, ValidationFailed
from tlops.validation import raise_for_report, validate_dataset

CFG = ValidationConfig(min_per_class=3)


def _edit(path, fn):
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df = fn(df)
    df.to_csv(path, index=False)


def _fails(root) -> str:
    return _fails_with(root, CFG)


def _fails_with(root, cfg: ValidationConfig) -> str:
    report = validate_dataset(load_dataset(root), cfg)
    with pytest.raises(ValidationFailed) as e:
        raise_for_report(report)
    assert e.value.report is report and not report.success
    return str(e.value)


def test_clean_dataset_passes(text_dataset):
    report = validate_dataset(load_dataset(text_dataset), CFG)
    assert report.success, report.failed()
    assert report.rows == {"train": 42, "val": 12, "test": 18}


def test_whitespace_and_empty_text_name_the_lines(text_dataset):
    def blank(df):
        df.loc[2, "text"] = "   "
        df.loc[5, "text"] = ""
        return df

    _edit(text_dataset / "train.csv", blank)
    msg = _fails(text_dataset)
    assert "non-empty text" in msg and "train.csv lines 4, 7" in msg and "Fix:" in msg


def test_unknown_label_in_test(text_dataset):
    _edit(text_dataset / "test.csv", lambda df: df.assign(label=df["label"].where(df.index != 3, "mineral")))
    msg = _fails(text_dataset)
    assert "labels from the known set" in msg and "test.csv line 5" in msg and "mineral" in msg


def test_single_class(text_dataset):
    for split in ("train", "val", "test"):
        _edit(text_dataset / f"{split}.csv", lambda df: df.assign(label="animal"))
    assert "at least two classes" in _fails(text_dataset)


def test_duplicate_between_train_and_test_is_leakage(text_dataset):
    train = pd.read_csv(text_dataset / "train.csv")
    leaked = train.loc[0, "text"]
    _edit(text_dataset / "test.csv", lambda df: df.assign(text=df["text"].where(df.index != 1, "  " + leaked.upper())))
    msg = _fails(text_dataset)
    assert "leakage" in msg and "test.csv line 3" in msg


def test_too_few_rows_for_a_class(text_dataset):
    _edit(text_dataset / "train.csv", lambda df: df[(df["label"] != "food") | (df.index < 6)])  # 'food' keeps 2 rows
    report = validate_dataset(load_dataset(text_dataset), ValidationConfig(min_per_class=3))
    failed = report.failed()
    assert [c.rule for c in failed] == ["every class has at least 3 training rows"]
    assert failed[0].rows == ["label 'food' (2 rows)"]
    assert "train.csv class label 'food' (2 rows)" in _fails_with(text_dataset, ValidationConfig(min_per_class=3))
    two_short = _fails_with(text_dataset, ValidationConfig(min_per_class=1000))
    assert "train.csv classes label " in two_short and "classs" not in two_short, two_short


def test_missing_file_and_column(text_dataset):
    (text_dataset / "test.csv").unlink()
    with pytest.raises(DataError, match="test.csv is missing"):
        load_dataset(text_dataset)
    (text_dataset / "test.csv").write_text("sentence,label\nhello there,animal\n")
    with pytest.raises(DataError, match=r"test.csv lacks column\(s\) \['text'\]"):
        load_dataset(text_dataset)


def test_missing_folder_and_yaml(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="dataset.yaml is missing"):
        load_dataset(tmp_path / "d")


def test_val_is_carved_stratified_and_seeded(tmp_path):
    from tests.helpers import make_text_dataset

    root = make_text_dataset(tmp_path / "d", with_val=False)
    a, b = load_dataset(root, seed=1), load_dataset(root, seed=1)
    assert a.val_carved and a.splits["val"].index.tolist() == b.splits["val"].index.tolist()
    assert set(a.splits["val"]["label"]) == {"animal", "food", "vehicle"}
    assert not set(a.splits["val"].index) & set(a.splits["train"].index)
    assert validate_dataset(a, CFG).success
