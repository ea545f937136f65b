"""The few-shot dataset contract: meta-train classes in train.csv; val.csv and test.csv on novel classes
(disjoint from train); and the support set of the registered model, `support.csv` (a few labelled rows
of the classes it should recognise, those of test.csv) or, when absent, `support_shots` rows per test
class carved from test.csv with the run's seed (those rows then leave test, so the model is never
evaluated on its own support rows).
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
    if file.is_file():
        ds.splits[SUPPORT] = _read_csv(file, [ds.input_column, "label"])
    else:
        ds.splits["test"], ds.splits[SUPPORT] = carve_support(ds.splits["test"], support_shots, seed)
    return ds


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
