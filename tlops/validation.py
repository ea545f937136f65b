"""Data validation with Great Expectations: every rule is a GX expectation; the report names rows.

Rules: schema, non-empty text, sane lengths, labels from the known set, enough rows per class,
at least two classes, and no test/val text that also appears in train (leakage).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pandas as pd

from tlops.config import ValidationConfig
from tlops.data.dataset import Dataset
from tlops.errors import ValidationFailed

MAX_ROWS_IN_REPORT = 20


@dataclass
class Rule:
    split: str
    frame: str  # "rows" (the split's CSV rows) or "class_counts" (one row per label)
    expectation: object
    rule: str
    fix: str


def normalise_text(s: str) -> str:
    return re.sub(r"\s+", " ", str(s)).strip().lower()


def _rules(ds: Dataset, cfg: ValidationConfig) -> list[Rule]:
    import great_expectations.expectations as gxe

    col = ds.input_column
    known = ds.labels
    rules: list[Rule] = []
    for split in ("train", "val", "test"):
        rules += [
            Rule(split, "rows", gxe.ExpectColumnToExist(column=col), "schema", f"add a '{col}' column"),
            Rule(split, "rows", gxe.ExpectColumnToExist(column="label"), "schema", "add a 'label' column"),
            Rule(split, "rows", gxe.ExpectColumnValuesToMatchRegex(column="label", regex=r"\S"), "non-empty label", "give every row a label"),
        ]
        if ds.modality == "text":
            rules += [
                Rule(split, "rows", gxe.ExpectColumnValuesToMatchRegex(column=col, regex=r"\S"), "non-empty text", "remove rows whose text is empty or only whitespace"),
                Rule(split, "rows", gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=cfg.min_chars, max_value=cfg.max_chars),
                     f"text length within [{cfg.min_chars}, {cfg.max_chars}] characters",
                     "fix or drop those rows, or change validation.min_chars / validation.max_chars"),
            ]
        if split != "train" or ds.meta.get("labels"):
            rules.append(Rule(split, "rows", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=known),
                              "labels from the known set",
                              "use only labels that appear in train (or listed under `labels:` in dataset.yaml)"))
    rules += [
        Rule("train", "class_counts", gxe.ExpectColumnValuesToBeBetween(column="count", min_value=cfg.min_per_class),
             f"every class has at least {cfg.min_per_class} training rows",
             "add training rows for those classes, drop them, or lower validation.min_per_class"),
        Rule("train", "rows", gxe.ExpectColumnUniqueValueCountToBeBetween(column="label", min_value=2),
             "at least two classes", "a classifier needs two or more labels in train.csv"),
    ]
    if ds.modality == "text":
        seen = sorted(set(ds.splits["train"][col].map(normalise_text)))
        for split in ("val", "test"):
            rules.append(Rule(split, "rows", gxe.ExpectColumnValuesToNotBeInSet(column="text_key", value_set=seen),
                              "no text shared with train (leakage)",
                              f"remove those rows from {split} or from train, so evaluation never sees training text"))
    return rules


def _frame(ds: Dataset, split: str, kind: str) -> pd.DataFrame:
    df = ds.splits[split]
    if kind == "class_counts":
        counts = df["label"].value_counts().rename_axis("label").reset_index(name="count")
        return counts.sort_values("label").reset_index(drop=True)
    df = df.copy()
    if ds.modality == "text" and ds.input_column in df.columns:
        df["text_key"] = df[ds.input_column].map(normalise_text)
    return df


def _where(ds: Dataset, split: str, kind: str, frame: pd.DataFrame, idx: list) -> tuple[str, list]:
    source = ds.splits[split].attrs.get("source", f"{split}.csv")
    if kind == "class_counts":
        return source, [f"label {frame.loc[i, 'label']!r} ({frame.loc[i, 'count']} rows)" for i in idx]
    return source, [int(i) + 2 for i in idx]  # CSV line: +1 header, +1 one-based


def validate_dataset(ds: Dataset, cfg: ValidationConfig) -> dict:
    """Run all rules; return a JSON-able report. Raises nothing; see `raise_for_report`."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("tlops")
    rules = _rules(ds, cfg)
    checks = []
    for (split, kind) in dict.fromkeys((r.split, r.frame) for r in rules):
        frame = _frame(ds, split, kind)
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
            file, rows = _where(ds, split, kind, frame, idx[:MAX_ROWS_IN_REPORT])
            checks.append({
                "split": split, "file": file, "rule": r.rule, "expectation": er.expectation_config.type,
                "success": bool(er.success), "unexpected_count": res.get("unexpected_count"),
                "rows": rows, "values": [str(v)[:80] for v in (res.get("partial_unexpected_list") or [])[:MAX_ROWS_IN_REPORT]],
                "observed": _jsonable(res.get("observed_value")), "fix": r.fix,
            })
    return {"success": all(c["success"] for c in checks), "dataset": str(ds.root), "checks": checks,
            "rows": {s: len(df) for s, df in ds.splits.items()}}


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)[:200]


def failure_message(report: dict) -> str:
    lines = [f"data validation failed for {report['dataset']}; nothing was trained or registered:"]
    for c in report["checks"]:
        if c["success"]:
            continue
        where = f"{c['file']}"
        if c["rows"]:
            shown = ", ".join(str(r) for r in c["rows"][:10])
            more = "" if (c["unexpected_count"] or 0) <= 10 else f" (+{c['unexpected_count'] - 10} more)"
            label = ("line" if isinstance(c["rows"][0], int) else "class") + ("s" if len(c["rows"]) > 1 else "")
            where += f" {label} {shown}{more}"
        vals = f"; values {c['values'][:5]}" if c["values"] and isinstance(c["rows"][0] if c["rows"] else 0, int) else ""
        obs = f"; observed {c['observed']}" if c["observed"] is not None and not c["rows"] else ""
        lines.append(f"  - rule '{c['rule']}' failed in {where}{vals}{obs}. Fix: {c['fix']}.")
    return "\n".join(lines)


def raise_for_report(report: dict) -> None:
    if not report["success"]:
        raise ValidationFailed(failure_message(report), report)
