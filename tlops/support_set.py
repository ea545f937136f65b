"""Inputs at predict time, checked before the model sees them: the rows to classify (every model), and a
support set (few-shot serving: labelled rows of the classes to tell apart, given with the request).

A support set travels as JSON, one object per row: `[{"text": "...", "label": "..."}, ...]` for a text
model, `{"path": ..., "label": ...}` for image and audio models (the dataset contract's column names), so
it fits an MLflow string param and `mlflow models serve`. `tlops predict --support CSV` reads the same
columns from a CSV. Every error is one line naming the row, the value and the fix.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tlops.errors import DataError
from tlops.text_files import normal_label

# validation.control_characters: strip: C0 controls and DEL except NUL, tab, newline and carriage return are removed from
# texts, in training data and in the model's inputs alike; a backspace takes the character it overstrikes with it
# (nroff's underline `_\bX` and bold `X\bX`, as in Debian's fortunes, read `X`). NUL is refused either way.
STRIPPED_CONTROLS = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
OVERSTRUCK = re.compile(r"[^\x00-\x1f\x7f]\x08")


def strip_control_characters(text: str) -> str:
    """`text` without the control characters validation.control_characters: strip removes (NUL kept: it is refused)."""
    if not STRIPPED_CONTROLS.search(text):
        return text
    return STRIPPED_CONTROLS.sub("", OVERSTRUCK.sub("", text))


INPUT_KEY = {"text": "text", "image": "path", "audio": "path"}  # the dataset contract's input column per modality
INPUT_KEYS = ("text", "path")
SUPPORT_FORMAT = 'a JSON list of {"text": ..., "label": ...} rows (image/audio models: "path" instead of "text")'


@dataclass(frozen=True)
class SupportSet:
    """Labelled raw inputs; hashable, so an adapted classifier can be reused for the same support set."""

    inputs: tuple[str, ...]
    labels: tuple[str, ...]

    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def values(self) -> list[float]:
        """A regression support set's target values (its labels are their numbers)."""
        return [float(v) for v in self.labels]


def check_inputs(items: Sequence[Any], where: str = "input") -> list[str]:
    """The rows to classify as strings; refuses what training refuses (missing, empty or whitespace-only
    values) and NUL bytes, which no text or file path holds, instead of returning a label for them."""
    return [check_value(x, f"{where} row {i}") for i, x in enumerate(items, start=1)]


def check_value(x: Any, where: str) -> str:
    """One input (a text or a file path), or a DataError naming `where`, the value and the fix."""
    if x is None or (isinstance(x, float) and x != x):  # None / NaN: a missing cell, not the text "None"
        raise DataError(f"{where} is missing ({x!r}); give every row a text or file path, or drop the row")
    if not isinstance(x, str):
        raise DataError(f"{where} is a {type(x).__name__} ({x!r}), not a string; give texts or file paths")
    if not x.strip():
        raise DataError(f"{where} is empty or only whitespace ({x!r}); remove the row or give it text (training refuses such rows too)")
    if "\x00" in x:
        raise DataError(f"{where} holds a NUL byte ({x[:40]!r}); strip the \\x00 characters from the input")
    return x


def support_from_rows(rows: Any, modality: str, source: str = "support", numeric: bool = False) -> SupportSet:
    """A support set from its rows (dicts), checked: layout (one input key + label), values, classes. `numeric`: a
    few-shot regressor's support set, whose labels are the rows' target values (finite numbers; one task, no classes)."""
    if not isinstance(rows, list):
        raise DataError(f"{source}: expected {SUPPORT_FORMAT}; got a {type(rows).__name__}")
    if not rows:
        raise DataError(f"{source} is empty; give a few labelled rows for each class to predict ({SUPPORT_FORMAT})")
    key = INPUT_KEY[modality]
    model = f"{'an' if modality[0] in 'aeiou' else 'a'} {modality} model"
    inputs, labels = [], []
    for i, row in enumerate(rows, start=1):
        where = f"{source} row {i}"
        if not isinstance(row, dict):
            raise DataError(f"{where} is {row!r}, not an object; expected {SUPPORT_FORMAT}")
        unknown = sorted(set(row) - {"label", *INPUT_KEYS})
        if unknown or "label" not in row or not set(row) & set(INPUT_KEYS):
            raise DataError(f"{where} has keys {sorted(row)}; each row needs 'label' and {key!r}"
                            + (f" (unknown: {unknown})" if unknown else ""))
        if all(k in row for k in INPUT_KEYS):
            raise DataError(f"{where} has both 'text' and 'path'; give only {key!r} (this is {model})")
        given = next(k for k in INPUT_KEYS if k in row)
        if given != key:
            raise DataError(f"{where} gives {given!r} but this is {model}: its support rows need {key!r} "
                            f"({'texts' if key == 'text' else f'{modality} file paths'})")
        label = row["label"]
        if numeric:
            inputs.append(check_value(row[key], where))
            labels.append(repr(_target_value(label, where)))
            continue
        if not isinstance(label, str) or not label.strip():
            raise DataError(f"{where} has label {label!r}; give every support row a non-empty label")
        inputs.append(check_value(row[key], where))
        labels.append(normal_label(label.strip()))  # like training's labels: " cat " is the class "cat", in Unicode NFC
    if numeric:
        return SupportSet(tuple(inputs), tuple(labels))
    first: dict[str, int] = {}  # casefolded label -> its first row
    for i, label in enumerate(labels, start=1):
        j = first.setdefault(label.casefold(), i)
        if labels[j - 1] != label:
            raise DataError(f"{source} rows {j} and {i}: labels {labels[j - 1]!r} and {label!r} differ only by case and would be "
                            f"two classes; spell the class one way (e.g. {labels[j - 1]!r})")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"{source} has one class ({classes[0]!r}); a few-shot prediction chooses among its classes: "
                        "give rows of at least 2 classes")
    return SupportSet(tuple(inputs), tuple(labels))


def _target_value(label: Any, where: str) -> float:
    """A regression support row's target: a finite number (or a string of one, as a CSV gives it)."""
    try:
        value = float(label) if not isinstance(label, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value):
        raise DataError(f"{where} has label {label!r}; this model predicts numbers: give each support row its target value, "
                        "a finite number (e.g. 12.5)")
    return value


def support_from_json(text: str, modality: str, source: str = "support param", numeric: bool = False) -> SupportSet:
    """A support set from the pyfunc's `support` param (a JSON string)."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{source} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); give {SUPPORT_FORMAT}") from None
    return support_from_rows(rows, modality, source, numeric)


def support_rows_from_csv(path: Path, numeric: bool = False) -> list[dict[str, str]]:
    """The rows of a support CSV (an input column `text` or `path`, and `label`) as the JSON rows the pyfunc
    takes; relative paths become absolute (relative to the CSV, as in a dataset folder). Errors name the line.
    `numeric`: the model is a few-shot regressor, so each label must be a target value (a finite number)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"support file {path} not found; give a CSV with a 'text' (or 'path') and a 'label' column")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            key = next((k for k in INPUT_KEYS if k in columns), None)
            unknown = [c for c in columns if c not in ("label", *INPUT_KEYS)]
            if key is None or "label" not in columns or unknown or all(k in columns for k in INPUT_KEYS):
                raise DataError(f"{path} has columns {columns}; a support CSV has 'label' and one of 'text' (text models) or "
                                "'path' (image/audio files)" + (f"; unknown: {unknown}" if unknown else ""))
            rows, line = [], 1
            for rec in reader:
                first, line = line + 1, reader.line_num  # the row's first line (quoted fields may span lines)
                where = f"{path} line {first}"
                if None in rec or any(v is None for v in rec.values()):
                    raise DataError(f"{where} has {len(rec)} fields where the header has {len(columns)}; fix the row's commas/quotes")
                value, label = check_value(rec[key], where), rec["label"]
                if not label.strip():
                    raise DataError(f"{where} has an empty label; give every support row its class")
                if numeric:
                    _target_value(label, where)
                if key == "path" and not Path(value).is_absolute():
                    value = str((path.parent / value).resolve())
                rows.append({key: value, "label": label.strip()})
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 (byte {e.object[e.start:e.start + 1]!r} at offset {e.start}); save it as UTF-8") from None
    if not rows:
        raise DataError(f"{path} has a header but no rows; give a few labelled rows for each class to predict")
    return rows
