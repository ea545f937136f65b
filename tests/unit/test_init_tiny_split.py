"""`tlops init` on a folder too small for the val carve (issue 27): 6 training rows, 3 per class, carve 15% of each
class = 0 rows. It used to write a config whose run would select its model on an empty val split; now one error line
names train.csv, the count and the fix, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import cli
from tlops.errors import DataError
from tlops.init import init

ROWS = ["the cat sat", "a cat ran", "my cat naps", "the dog ran", "a dog barks", "my dog naps"]


def _six(root: Path) -> Path:
    root.mkdir()
    (root / "train.csv").write_text("text,label\n" + "".join(f"{t},{t.split()[1]}\n" for t in ROWS))
    (root / "test.csv").write_text("text,label\nthe cat,cat\nthe dog,dog\n")
    return root


def test_a_val_carve_of_no_rows_is_refused_naming_the_fix(tmp_path):
    data = _six(tmp_path / "six")
    with pytest.raises(DataError) as e:
        init(data, tmp_path / "c.yaml")
    assert str(e.value) == (f"{data / 'train.csv'}: carving val from its 6 rows left no val rows (15% of each class rounds to 0); "
                            "add a val.csv with the same columns, or more training rows")
    assert not (tmp_path / "c.yaml").exists() and not (data / "dataset.yaml").exists()
    r = cli("init", str(data), "--out", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert r.returncode == 2 and [line for line in r.stderr.splitlines() if line.strip()] == [f"error: {e.value}"], r.stderr  # input is wrong
    (data / "val.csv").write_text("text,label\nour cat,cat\nour dog,dog\n")  # the fix it names works
    assert init(data, tmp_path / "c.yaml").folder.rows == {"train": 6, "val": 2, "test": 2}
