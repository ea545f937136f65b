"""`tlops validate` prints labels and file names that look like Rich markup as written (a label `[/b]` crashed it)."""

from __future__ import annotations

import os

import yaml

from tests.cli import cli
from tests.helpers import make_text_dataset, tiny_config


def test_validate_prints_a_markup_looking_label_and_folder_as_written(tmp_path, tiny_bert):
    data = make_text_dataset(tmp_path / "[red]data")
    for split in ("train", "val", "test"):
        f = data / f"{split}.csv"
        f.write_text(f.read_text().replace(",animal\n", ",[/b]\n"))
    (data / "test.csv").write_text((data / "test.csv").read_text() + "a lone rock on the shore,mineral [/i]\n")  # unknown label
    cfg = tiny_config(tmp_path, data, tiny_bert)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = cli("validate", str(tmp_path / "c.yaml"), env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 1 and "Traceback" not in out.stderr, (out.stdout[-2000:], out.stderr[-2000:])
    assert "mineral [/i]" in out.stdout + out.stderr and "[red]data" in out.stdout + out.stderr, (out.stdout, out.stderr)
