"""The few-shot dataset contract: meta-train classes in train.csv; val.csv and test.csv on novel classes
(disjoint from train); and the support set of the registered model, `support.csv` (a few labelled rows
of the classes it should recognise, those of test.csv) or, when absent, `support_shots` rows per test
class carved from test.csv with the run's seed (those rows then leave test, so the model is never
evaluated on its own support rows).

A regression dataset's episodes are its tasks instead of its classes (dataset.yaml `group:` names the column
saying which task each row belongs to): val and test hold tasks never meta-trained on, and the support set is
`support_shots` labelled rows of one test task (support.csv, or carved from the first test task in a seeded
order), the task the registered model is adapted to and evaluated on.
"""

from __future__ import annotations

import numpy as np

from tlops.data.dataset import Dataset, _read_csv

SUPPORT = "support"
LABELLED = ("train", "val", "test", SUPPORT)


def as_few_shot(ds: Dataset, support_shots: int, seed: int) -> Dataset:
    """The dataset with labels drawn from every labelled split and a support split (read or carved)."""
    ds.label_splits = LABELLED
    file = ds.root / f"{SUPPORT}.csv"
    group = ds.group_column  # only a dataset of numbers may name one (dataset.yaml `group:`): its rows' tasks
    if file.is_file():
        ds.splits[SUPPORT] = _read_csv(file, [ds.input_column, ds.target_column, *([group] if group else [])])
    elif group:
        ds.splits["test"], ds.splits[SUPPORT] = carve_support_task(ds.splits["test"], group, support_shots, seed)
    else:
        ds.splits["test"], ds.splits[SUPPORT] = carve_support(ds.splits["test"], support_shots, seed)
    return ds


def carve_support_task(test, group: str, shots: int, seed: int):
    """(test without the support rows, `shots` seeded rows of one test task): the first task, in a seeded order,
    with more than `shots` rows (so some of its rows stay in test to evaluate the registered model on)."""
    rng = np.random.default_rng(seed)
    tasks = sorted(set(test[group]))
    order = [tasks[i] for i in rng.permutation(len(tasks))]
    rows = next((test.index[test[group] == t].to_numpy() for t in order if (test[group] == t).sum() > shots), None)
    if rows is None:  # validation names the problem (no test task has enough rows); carve nothing meanwhile
        return test, test.iloc[:0]
    picked = sorted(rng.choice(rows, size=shots, replace=False).tolist())
    support, rest = test.loc[picked], test.drop(index=picked)
    for df in (support, rest):
        df.attrs["source"] = test.attrs.get("source", "test.csv")
    return rest, support


def carve_support(test, shots: int, seed: int):
    """(test without the support rows, `shots` seeded rows per class); row numbers in attrs stay test.csv's."""
    rng = np.random.default_rng(seed)
    picked = []
    for _, group in test.groupby("label", sort=True):
        picked.extend(rng.choice(group.index.to_numpy(), size=min(shots, len(group) - 1), replace=False).tolist())
    support, rest = test.loc[sorted(picked)], test.drop(index=picked)
    for df in (support, rest):
        df.attrs["source"] = test.attrs.get("source", "test.csv")
    return rest, support
