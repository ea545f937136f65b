"""Data validation with Great Expectations: every rule is a GX expectation; the report names rows.

Rules: at least one data row in train.csv, test.csv and a given val.csv (the other rules of an empty split are
not asked), schema, non-empty text, sane lengths, labels from the known set and without surrounding whitespace,
one spelling per class (labels are read in Unicode NFC, so only case can split a class: 'Cat' beside 'cat' is
refused), no control characters in text, enough rows per class, at least two classes, not mostly duplicate
inputs, and no test/val text that also appears in train (leakage). A regression dataset (dataset.yaml `task:
regression`) replaces the label rules with target rules: a number on every row, finite, within optional
`bounds`, not constant in train. The unlabelled target
split (`unlabeled.csv`, domain adaptation) when present or required: present, not empty, no label
column, inputs of the dataset's modality, and no input shared with test unless the config allows it.
Few-shot (meta) strategies: val and test on classes disjoint from train, >= shots + queries rows per
class, enough classes for the episodes, and a support split with test's classes and none of its inputs.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from tlops.config import ValidationConfig
from tlops.data.dataset import UNLABELED, Dataset, csv_line
from tlops.data.media import inside, probe_audio, probe_image
from tlops.errors import DataError
from tlops.errors import ValidationFailed
from tlops.records import Check, ValidationReport

MAX_ROWS_IN_REPORT = 20
DUPLICATE_RULE = "duplicate inputs"
# C0 controls and DEL, except tab, newline and carriage return (a quoted CSV field may hold line breaks).
# A NUL byte in "text" usually means a UTF-16 file or binary data read as text.
CONTROL_IN_TEXT = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# A label is a class name: ' noun.animal ' would silently be a class of its own beside 'noun.animal'.
ODD_LABEL = r"\A\s|\s\Z|[\x00-\x1f\x7f]"

log = logging.getLogger(__name__)


@dataclass
class Rule:
    split: str
    frame: str  # "rows" (the split's CSV rows), "class_counts" (one row per label) or "group_counts" (one row per task)
    expectation: object
    rule: str
    fix: str


def control_fix(cfg: ValidationConfig) -> str:
    """What to do about control characters in text: with the default, remove them or opt in to stripping; once stripped,
    only NUL is left to refuse."""
    nul = "a NUL byte often means a UTF-16 file or binary data: save the file as UTF-8 text"
    if cfg.control_characters == "strip":
        return f"remove the NUL characters from those texts ({nul}; validation.control_characters: strip removes the others)"
    return (f"remove NUL and other control characters from those texts ({nul}), or set validation.control_characters: strip "
            "to drop all but NUL (the model then strips them from its inputs too)")


def normalise_text(s: str) -> str:
    return re.sub(r"\s+", " ", str(s)).strip().lower()


def _rules(ds: Dataset, cfg: ValidationConfig, frame_of, few_shot=None) -> list[Rule]:
    import great_expectations.expectations as gxe

    col = ds.input_column
    known = ds.labels
    rules: list[Rule] = []
    regression = ds.numeric_target
    empty = {split for split in ("train", "val", "test") if len(ds.splits[split]) == 0}
    variants = {} if regression else _case_variants(ds)  # spellings that differ from a class's kept one only by case
    for split in ("train", "val", "test"):
        if not (split == "val" and ds.val_carved):  # a carved val is no file of the user's
            name = os.path.basename(ds.splits[split].attrs.get("source", f"{split}.csv"))
            rules.append(Rule(split, "rows", gxe.ExpectTableRowCountToBeBetween(min_value=1), "at least one data row",
                              f"{name} has a header but no data rows; add rows below the header ('{col}' and "
                              f"'{ds.target_column}' values)" + (", or remove val.csv to carve val from train.csv" if split == "val" else "")))
        if split in empty:
            continue  # nothing else to say about rows that are not there
        rules.append(Rule(split, "rows", gxe.ExpectColumnToExist(column=col), "schema", f"add a '{col}' column"))
        rules += _target_rules(ds, split) if regression else [
            Rule(split, "rows", gxe.ExpectColumnToExist(column="label"), "schema", "add a 'label' column"),
            Rule(split, "rows", gxe.ExpectColumnValuesToMatchRegex(column="label", regex=r"\S"), "non-empty label", "give every row a label"),
            Rule(split, "rows", gxe.ExpectColumnValuesToNotMatchRegex(column="label", regex=ODD_LABEL),
                 "labels without surrounding whitespace or control characters",
                 "strip the spaces around those labels (' noun.animal ' would be a class of its own beside 'noun.animal')"),
        ]
        rules += [
            Rule(split, "rows", gxe.ExpectColumnValuesToBeUnique(column="duplicate_key", mostly=1.0 - cfg.max_duplicate_fraction),
                 f"{DUPLICATE_RULE} (at most {cfg.max_duplicate_fraction:.0%} of rows are copies)",
                 f"drop the repeated rows (copies add no information and inflate {split} metrics), "
                 "or raise validation.max_duplicate_fraction if the repeats are real"),
        ]
        if ds.modality == "text":
            rules += [
                Rule(split, "rows", gxe.ExpectColumnValuesToMatchRegex(column=col, regex=r"\S"), "non-empty text", "remove rows whose text is empty or only whitespace"),
                Rule(split, "rows", gxe.ExpectColumnValuesToNotMatchRegex(column=col, regex=CONTROL_IN_TEXT), "no control characters in text",
                     control_fix(cfg)),
                Rule(split, "rows", gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=cfg.min_chars, max_value=cfg.max_chars),
                     f"text length within [{cfg.min_chars}, {cfg.max_chars}] characters",
                     "fix or drop those rows, or change validation.min_chars / validation.max_chars"),
            ]
        if (not regression and known and (split != "train" or ds.meta.get("labels"))
                and not (few_shot and split != "train")):  # few-shot: novel classes; no known labels: train is empty
            rules.append(Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=sorted({*known, *(v for v, k in variants.items() if k in known)})),
                              "labels from the known set",  # a case variant of a known label is the next rule's to name
                              "use only labels that appear in train (or listed under `labels:` in dataset.yaml), spelled "
                              "the same, case included (Unicode forms need not match: labels are read as NFC)"))
    for split in [s for s in ds.splits if s != UNLABELED and s not in empty] if variants else []:
        rules.append(Rule(split, "rows", gxe.ExpectColumnValuesToNotBeInSet(column="label", value_set=sorted(variants)),
                          "one spelling per class (labels that differ only by case)", _case_fix(variants)))
    if "train" not in empty:
        rules += [
            Rule("train", "rows", gxe.ExpectColumnUniqueValueCountToBeBetween(column="target_value", min_value=2),
                 "target not constant", f"every training row has the same '{ds.target_column}'; a regressor needs targets that vary "
                 "(a constant is predicted without a model)"),
        ] if regression else [
            Rule("train", "class_counts", gxe.ExpectColumnValuesToBeBetween(column="count", min_value=cfg.min_per_class),
                 f"every class has at least {cfg.min_per_class} training rows",
                 "add training rows for those classes, drop them, or lower validation.min_per_class"),
            Rule("train", "rows", gxe.ExpectColumnUniqueValueCountToBeBetween(column="label", min_value=2),
                 "at least two classes", "a classifier needs two or more labels in train.csv"),
        ]
    if ds.modality != "text":
        for split in ("train", "val", "test"):
            if split not in empty:
                rules += _file_rules(ds, split, cfg)
    train_keys = sorted(set(frame_of("train", "rows")["content_key"]) - {""})
    what = "text" if ds.modality == "text" else "file content"
    for split in ("val", "test"):
        if split not in empty:
            rules.append(Rule(split, "rows", gxe.ExpectColumnValuesToNotBeInSet(column="content_key", value_set=train_keys),
                              f"no {what} shared with train (leakage)",
                              f"remove those rows from {split} or from train, so evaluation never sees training data"))
    if UNLABELED in ds.splits:
        rules += _unlabeled_rules(ds, cfg, frame_of)
    if few_shot is not None and not empty:  # the episodes' rules wait until every split has rows
        rules += _few_shot_task_rules(ds, few_shot, frame_of) if ds.numeric_target else _few_shot_rules(ds, few_shot, frame_of)
    return rules


def _case_variants(ds: Dataset) -> dict[str, str]:
    """{spelling: the class's kept spelling} for labels that differ from another only by case (after NFC, which
    the dataset reader applied). The kept spelling is dataset.yaml's `labels:` entry, else the most frequent in
    train, then in every labelled split, then the first in sorted order."""
    listed = {str(x).casefold(): str(x) for x in ds.meta.get("labels") or []}
    in_train, everywhere = Counter(), Counter()
    for split, df in ds.splits.items():
        if split != UNLABELED and "label" in df.columns:
            counts = Counter(df["label"])
            everywhere.update(counts)
            if split == "train":
                in_train.update(counts)
    spellings: dict[str, set[str]] = {}
    for label in everywhere:
        spellings.setdefault(label.casefold(), set()).add(label)
    out = {}
    for folded, group in spellings.items():
        group |= {listed[folded]} if folded in listed else set()
        if len(group) > 1:
            kept = listed.get(folded) or min(group, key=lambda l: (-in_train[l], -everywhere[l], l))
            out.update({l: kept for l in group if l != kept})
    return out


def _case_fix(variants: dict[str, str]) -> str:
    kept: dict[str, list[str]] = {}
    for spelling, k in sorted(variants.items()):
        kept.setdefault(k, []).append(spelling)
    pairs = [f"{' / '.join(repr(o) for o in others)} and {k!r}" for k, others in sorted(kept.items())]
    shown = "; ".join(pairs[:5]) + (f"; and {len(pairs) - 5} more" if len(pairs) > 5 else "")
    return (f"{shown} differ only by case and would train as separate classes; spell the class one way: write "
            + ", ".join(repr(k) for k in sorted(kept)[:5]) + " on those lines (or fix the other spelling everywhere)")


def _target_rules(ds: Dataset, split: str) -> list[Rule]:
    """A regression split's target column: present, a number on every row, finite, within dataset.yaml `bounds`.
    Each rule sees only the rows the previous one let through (derived columns are null elsewhere)."""
    import great_expectations.expectations as gxe

    t = ds.target_column
    rules = [
        Rule(split, "rows", gxe.ExpectColumnToExist(column=t), "schema",
             f"add a '{t}' column of numbers" + ("" if t != "label" else " (or name another column with `target:` in dataset.yaml)")),
        Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="target_parses", value_set=[True]), "numeric target",
             f"write a number (e.g. 3.5) in '{t}' on those lines: dataset.yaml says task: regression; if the values are "
             "class names, remove `task: regression` to train a classifier"),
        Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="target_finite", value_set=[True]), "finite target",
             f"replace the inf/nan values in '{t}' with real numbers, or drop those rows"),
    ]
    bounds = ds.meta.get("bounds")
    if bounds:
        rules.append(Rule(split, "rows", gxe.ExpectColumnValuesToBeBetween(column="target_value", min_value=bounds[0], max_value=bounds[1]),
                          f"target within bounds [{bounds[0]}, {bounds[1]}]",
                          f"fix those '{t}' values, or widen `bounds:` in dataset.yaml if they are real"))
    return rules


def _parse_target(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


EVAL_WAYS, HEADLINE_SHOTS = 5, 5  # the reported 5-way 1-shot and 5-way 5-shot test episodes


def _few_shot_rules(ds: Dataset, s, frame_of) -> list[Rule]:
    """Meta-train classes in train; novel classes in val and test; enough rows and classes for the episodes
    (`s`: the strategy config's ways, shots, queries); the support split covers exactly test's classes."""
    import great_expectations.expectations as gxe

    from tlops.data.fewshot import SUPPORT

    train_labels = sorted(set(frame_of("train", "rows")["label"]))
    test_labels = sorted(set(frame_of("test", "rows")["label"]))
    rules: list[Rule] = []
    need = {"train": (s.ways, s.shots + s.queries), "val": (s.ways, s.shots + s.queries),
            "test": (max(s.ways, EVAL_WAYS), max(s.shots, HEADLINE_SHOTS) + s.queries)}
    for split, (ways, rows) in need.items():
        if split != "train":
            rules.append(Rule(split, "rows", gxe.ExpectColumnValuesToNotBeInSet(column="label", value_set=train_labels),
                              "classes disjoint from train (novel classes)",
                              f"few-shot evaluation measures adaptation to classes never meta-trained on: move those classes' rows "
                              f"out of {split}.csv or out of train.csv"
                              + (" (val was carved from train.csv: add a val.csv of novel classes)" if split == "val" and ds.val_carved else "")))
        rules += [
            Rule(split, "class_counts", gxe.ExpectColumnValuesToBeBetween(column="count", min_value=rows),
                 f"every class has at least {rows} rows ({rows - s.queries} shots + {s.queries} queries)",
                 f"add rows to those classes or drop them from {split}, or lower strategy.shots / strategy.queries"
                 + (" (test also gives strategy.support_shots rows per class to the support set when there is no support.csv)"
                    if split == "test" and not (ds.root / f"{SUPPORT}.csv").is_file() else "")),
            Rule(split, "rows", gxe.ExpectColumnUniqueValueCountToBeBetween(column="label", min_value=ways),
                 f"at least {ways} classes", f"{ways}-way episodes need {ways} classes in {split}.csv: add classes or lower strategy.ways"),
        ]
    if SUPPORT in ds.splits:
        test_keys = sorted(set(frame_of("test", "rows")["content_key"]) - {""})
        rules += [
            Rule(SUPPORT, "rows", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=test_labels), "support labels are test classes",
                 "the support set defines the registered model's classes, which test.csv evaluates: use test's classes only"),
            Rule(SUPPORT, "rows", gxe.ExpectColumnDistinctValuesToContainSet(column="label", value_set=test_labels),
                 "every test class has support rows", "add support rows (a few labelled examples) for every class of test.csv"),
            Rule(SUPPORT, "rows", gxe.ExpectColumnValuesToNotBeInSet(column="content_key", value_set=test_keys),
                 "no input shared with test (leakage)", "remove those rows from support.csv or from test.csv"),
        ]
    return rules


def _few_shot_task_rules(ds: Dataset, s, frame_of) -> list[Rule]:
    """A regression dataset's few-shot contract: a `group:` column says which task each row belongs to; val and
    test tasks are not train's (new tasks); each split has a task with enough rows for an episode; the support
    set is rows of one test task (the one the registered model adapts to)."""
    import great_expectations.expectations as gxe

    from tlops.data.fewshot import SUPPORT

    group = ds.group_column
    if group is None:
        raise DataError(f"{ds.root / 'dataset.yaml'}: strategy {s.name} learns from tasks, and this regression dataset names no "
                        "task column; add `group: <column>` (the column saying which task, e.g. which object, each row belongs to)")
    train_groups = sorted(set(frame_of("train", "rows")[group]))
    test_groups = sorted(set(frame_of("test", "rows")[group]))
    rules: list[Rule] = []
    for split in ("train", "val", "test"):
        rows = s.shots + s.queries
        if split != "train":
            rules.append(Rule(split, "rows", gxe.ExpectColumnValuesToNotBeInSet(column=group, value_set=train_groups),
                              "tasks disjoint from train (new tasks)",
                              f"few-shot evaluation measures adaptation to tasks never meta-trained on: move those {group!r} "
                              f"groups' rows out of {split}.csv or out of train.csv"
                              + (" (val was carved from train.csv: add a val.csv of new tasks)" if split == "val" and ds.val_carved else "")))
        rules.append(Rule(split, "group_counts", gxe.ExpectColumnMaxToBeBetween(column="count", min_value=rows),
                          f"a task with at least {rows} rows ({s.shots} shots + {s.queries} queries)",
                          f"add rows to the tasks of {split}.csv, or lower strategy.shots / strategy.queries"
                          + (" (test also gives strategy.support_shots rows of one task to the support set when there is no "
                             "support.csv)" if split == "test" and not (ds.root / f"{SUPPORT}.csv").is_file() else "")))
    if SUPPORT in ds.splits:
        test_keys = sorted(set(frame_of("test", "rows")["content_key"]) - {""})
        rules += [
            Rule(SUPPORT, "rows", gxe.ExpectColumnUniqueValueCountToBeBetween(column=group, min_value=1, max_value=1),
                 "rows of one task", f"the support set is the few labelled rows of the task the registered model is for: keep "
                                     f"one {group!r} value in support.csv"),
            Rule(SUPPORT, "rows", gxe.ExpectColumnValuesToBeInSet(column=group, value_set=test_groups), "a test task",
                 "test.csv evaluates the registered model on its support task's other rows: use a task of test.csv"),
            Rule(SUPPORT, "rows", gxe.ExpectColumnValuesToNotBeInSet(column="content_key", value_set=test_keys),
                 "no input shared with test (leakage)", "remove those rows from support.csv or from test.csv"),
        ]
    return rules


MEDIA_SUFFIX = r"\.(?:wav|flac|ogg|mp3|m4a|png|jpe?g|bmp|gif|tiff?|webp)\s*$"


def _unlabeled_rules(ds: Dataset, cfg: ValidationConfig, frame_of) -> list[Rule]:
    """unlabeled.csv: target-domain inputs the model adapts to, without labels."""
    import great_expectations.expectations as gxe

    col, u = ds.input_column, UNLABELED
    columns = list(ds.splits[u].columns)
    rules = [
        Rule(u, "rows", gxe.ExpectColumnToExist(column=col), f"{ds.modality} inputs in a '{col}' column",
             f"dataset.yaml says modality: {ds.modality}, so unlabeled.csv needs a '{col}' column of target-domain "
             f"{'texts' if ds.modality == 'text' else ds.modality + ' file paths'}"),
        Rule(u, "rows", gxe.ExpectTableRowCountToBeBetween(min_value=1), "at least one unlabelled row",
             "add target-domain inputs to unlabeled.csv (domain adaptation trains on them)"),
        Rule(u, "rows", gxe.ExpectTableColumnsToMatchSet(column_set=[c for c in frame_of(u, "rows").columns if c != "label"],
                                                             exact_match=True),
             "no label column", "drop the 'label' column from unlabeled.csv: target labels must never reach training "
             "(labelled target rows belong in test.csv, for evaluation)"),
    ]
    if col not in columns:
        return rules  # nothing more to say about inputs that are not there
    if ds.modality == "text":
        rules += [
            Rule(u, "rows", gxe.ExpectColumnValuesToMatchRegex(column=col, regex=r"\S"), "non-empty text",
                 "remove rows whose text is empty or only whitespace"),
            Rule(u, "rows", gxe.ExpectColumnValuesToNotMatchRegex(column=col, regex=MEDIA_SUFFIX), "texts, not media file paths",
                 "this is a text dataset: put target-domain texts in unlabeled.csv, not image or audio files"),
            Rule(u, "rows", gxe.ExpectColumnValuesToNotMatchRegex(column=col, regex=CONTROL_IN_TEXT), "no control characters in text",
                 control_fix(cfg)),
        ]
    else:
        rules += _file_rules(ds, u, cfg)
    if not cfg.allow_unlabeled_test_overlap:
        what = "text" if ds.modality == "text" else "file content"
        test_keys = sorted(set(frame_of("test", "rows")["content_key"]) - {""})
        rules.append(Rule(u, "rows", gxe.ExpectColumnValuesToNotBeInSet(column="content_key", value_set=test_keys),
                          f"no {what} shared with test (leakage)",
                          "remove those rows from unlabeled.csv, or set validation.allow_unlabeled_test_overlap: true "
                          "if adapting to the test inputs themselves (transductive) is intended"))
    return rules


def _file_rules(ds: Dataset, split: str, cfg: ValidationConfig) -> list[Rule]:
    import great_expectations.expectations as gxe

    rules = [
        Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="path_inside", value_set=[True]),
             "path inside the dataset folder", f"use paths relative to {ds.root}, without '..' or a leading '/'"),
        Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="exists", value_set=[True]),
             "file exists and is not empty", "add the missing files or remove their rows"),
    ]
    if ds.modality == "image":
        rules += [
            Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
                 "image decodes", "replace the broken files (PNG, JPEG, ... that PIL can open) or remove their rows"),
            Rule(split, "rows", gxe.ExpectColumnValuesToBeBetween(column="min_side", min_value=cfg.min_image_side, max_value=cfg.max_image_side),
                 f"image sides within [{cfg.min_image_side}, {cfg.max_image_side}] px",
                 "resize those images or change validation.min_image_side / max_image_side"),
            Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="channels", value_set=[1, 2, 3, 4]),
                 "image has 1-4 channels", "convert those images to grayscale or RGB"),
        ]
    if ds.modality == "audio":
        rules += [
            Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
                 "audio decodes", "replace the broken files (WAV, FLAC, OGG that libsndfile reads) or remove their rows"),
            Rule(split, "rows", gxe.ExpectColumnValuesToBeBetween(column="sample_rate", min_value=8000, max_value=192000),
                 "sample rate known (8-192 kHz)", "resample those files to 16 kHz"),
            Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="channels", value_set=[1, 2]),
                 "mono or stereo", "mix those files down to mono or stereo"),
            Rule(split, "rows", gxe.ExpectColumnValuesToBeBetween(column="seconds", min_value=cfg.min_audio_seconds, max_value=cfg.max_audio_seconds),
                 f"duration within [{cfg.min_audio_seconds}, {cfg.max_audio_seconds}] s",
                 "trim or drop those clips, or change validation.min_audio_seconds / max_audio_seconds"),
            Rule(split, "rows", gxe.ExpectColumnValuesToBeBetween(column="peak", min_value=cfg.min_audio_peak),
                 f"not silent (peak >= {cfg.min_audio_peak})", "remove silent clips or check the recording gain"),
        ]
    return rules


def _frame(ds: Dataset, split: str, kind: str) -> pd.DataFrame:
    df = ds.splits[split]
    if kind in ("class_counts", "group_counts"):
        key = "label" if kind == "class_counts" else ds.group_column
        counts = df[key].value_counts().rename_axis(key).reset_index(name="count")
        return counts.sort_values(key).reset_index(drop=True)
    df = df.copy()
    col = ds.input_column
    if col not in df.columns:
        df["content_key"] = ""
    elif ds.modality == "text":
        df["content_key"] = df[col].map(normalise_text)
    else:
        df["path_inside"] = df[col].map(lambda p: inside(ds.root, p))
        probe = probe_image if ds.modality == "image" else probe_audio
        facts = [probe(ds.root / p) if ok else {"exists": False} for p, ok in zip(df[col], df["path_inside"])]
        # A rule is only asked of rows the previous rule let through (GX skips nulls): a missing file
        # fails "exists" once, not also "decodes" and "size".
        df["exists"] = [f["exists"] if ok else None for f, ok in zip(facts, df["path_inside"])]
        df["decodes"] = [f.get("decodes") if f["exists"] else None for f in facts]
        ints, floats = (("width", "height", "channels"), ()) if ds.modality == "image" else (("sample_rate", "channels"), ("seconds", "peak"))
        for name in ints:
            df[name] = pd.array([f[name] if f.get("decodes") else None for f in facts], dtype="Int64")
        for name in floats:
            df[name] = pd.array([f[name] if f.get("decodes") else None for f in facts], dtype="Float64")
        if ds.modality == "image":
            df["min_side"] = df[["width", "height"]].min(axis=1, skipna=False)
        df["content_key"] = [f.get("content_key", "") for f in facts]
    df["duplicate_key"] = df["content_key"].where(df["content_key"] != "", None)  # a missing file is no duplicate
    if ds.numeric_target and split != UNLABELED and ds.target_column in df.columns:
        parsed = [_parse_target(v) for v in df[ds.target_column]]
        finite = [None if v is None else bool(math.isfinite(v)) for v in parsed]
        df["target_parses"] = [v is not None for v in parsed]
        df["target_finite"] = finite
        df["target_value"] = pd.array([v if ok else None for v, ok in zip(parsed, finite)], dtype="Float64")
    return df


def _where(ds: Dataset, split: str, kind: str, frame: pd.DataFrame, idx: list) -> tuple[str, list]:
    source = ds.splits[split].attrs.get("source", f"{split}.csv")
    if kind in ("class_counts", "group_counts"):
        key = "label" if kind == "class_counts" else ds.group_column
        return source, [f"{key} {frame.loc[i, key]!r} ({frame.loc[i, 'count']} rows)" for i in idx]
    return source, [csv_line(ds.splits[split], i) for i in idx]  # where the row starts in the file


def _missing_split(ds: Dataset, split: str) -> Check:
    return Check(split=split, file=str(ds.root / f"{split}.csv"), rule=f"{split}.csv present", expectation="file_exists",
                 success=False, observed="missing",
                 fix=f"the strategy trains on unlabelled target-domain inputs: add {split}.csv with a '{ds.input_column}' "
                     "column (no labels), or pick a strategy that does not need it")


def validate_dataset(ds: Dataset, cfg: ValidationConfig, required: tuple[str, ...] | list[str] = (),
                     few_shot=None) -> ValidationReport:
    """Run all rules; return the report. `required`: extra splits (e.g. "unlabeled") the strategy needs;
    `few_shot`: a meta strategy's config (ways, shots, queries), whose few-shot contract is checked too.
    Raises nothing; see `raise_for_report`."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("tlops")
    frames: dict[tuple[str, str], pd.DataFrame] = {}

    from tlops.task_types import task_type

    task = task_type(ds.task)
    owned = task.validation_rules(ds, cfg, lambda split, kind: frame_of(split, kind))  # a task type's own files and rules

    def frame_of(split: str, kind: str) -> pd.DataFrame:  # each file is probed once per validation
        if (split, kind) not in frames:
            frames[split, kind] = _frame(ds, split, kind) if owned is None else task.validation_frame(ds, split, kind)
        return frames[split, kind]

    def where(split: str, kind: str, frame: pd.DataFrame, idx: list) -> tuple[str, list]:
        return _where(ds, split, kind, frame, idx) if owned is None else task.validation_where(ds, split, kind, frame, idx)

    rules = _rules(ds, cfg, frame_of, few_shot) if owned is None else owned
    checks = [*task.reader_checks(ds), *(_missing_split(ds, split) for split in required if split not in ds.splits)]
    for (split, kind) in dict.fromkeys((r.split, r.frame) for r in rules):
        frame = frame_of(split, kind)
        asset = source.add_dataframe_asset(f"{split}_{kind}")
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
        mine = [r for r in rules if r.split == split and r.frame == kind]
        suite = gx.ExpectationSuite(name=f"{split}_{kind}")
        for i, r in enumerate(mine):
            r.expectation.meta = {"tlops_rule": i}
            suite.add_expectation(r.expectation)
        result = batch.validate(suite, result_format="COMPLETE")
        by_rule = {er.expectation_config.meta["tlops_rule"]: er for er in result.results}
        for i, r in enumerate(mine):
            er = by_rule[i]
            res = er.result or {}
            idx = res.get("unexpected_index_list") or []
            file, rows = where(split, kind, frame, idx[:MAX_ROWS_IN_REPORT])
            values = res.get("partial_unexpected_list") or []
            column = getattr(r.expectation, "column", "")
            if kind == "rows" and idx and column.startswith("target_"):  # a derived fact of the target: show the value as written
                values = frame.loc[idx[:MAX_ROWS_IN_REPORT], ds.target_column].tolist()
            elif owned is None and kind == "rows" and idx and column != "label" and (ds.modality != "text" or column.endswith("_key")):
                # a rule on a derived fact (decodes, seconds, a content key): show the offending inputs, not the facts
                values = frame.loc[idx[:MAX_ROWS_IN_REPORT], ds.input_column].tolist()
            checks.append(Check(
                split=split, file=file, rule=r.rule, expectation=er.expectation_config.type, success=bool(er.success),
                unexpected_count=res.get("unexpected_count"), rows=rows, values=[str(v)[:300] for v in values[:MAX_ROWS_IN_REPORT]],
                observed=_jsonable(res.get("observed_value")), fix=r.fix,
            ))
    _warn_about_duplicates(checks, ds)
    return ValidationReport(success=all(c.success for c in checks), dataset=str(ds.root), checks=checks,
                            rows={s: len(df) for s, df in ds.splits.items()})


def _warn_about_duplicates(checks: list[Check], ds: Dataset) -> None:
    """Repeated inputs under the refusal threshold pass, but are worth knowing: say how many and where."""
    for c in checks:
        if c.success and c.rule.startswith(DUPLICATE_RULE) and c.unexpected_count:
            log.warning("%s: %d of %d rows share their input with another row (lines %s); drop the copies unless "
                        "the repeats are real", c.file, c.unexpected_count, len(ds.splits[c.split]),
                        ", ".join(map(str, c.rows[:10])) + (" ..." if c.unexpected_count > 10 else ""))


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)[:200]


def failure_message(report: ValidationReport) -> str:
    lines = [f"data validation failed for {report.dataset}; nothing was trained or registered:"]
    for c in report.failed():
        where = f"{c.file}"
        if c.rows:
            shown = ", ".join(str(r) for r in c.rows[:10])
            more = "" if (c.unexpected_count or 0) <= 10 else f" (+{c.unexpected_count - 10} more)"
            many = len(c.rows) > 1
            label = ("lines" if many else "line") if isinstance(c.rows[0], int) else ("classes" if many else "class")
            where += f" {label} {shown}{more}"
        vals = f"; values {c.values[:5]}" if c.values and isinstance(c.rows[0] if c.rows else 0, int) else ""
        obs = f"; observed {c.observed}" if c.observed is not None and not c.rows else ""
        lines.append(f"  - rule '{c.rule}' failed in {where}{vals}{obs}. Fix: {c.fix}.")
    return "\n".join(lines)


def raise_for_report(report: ValidationReport) -> None:
    if not report.success:
        raise ValidationFailed(failure_message(report), report)
