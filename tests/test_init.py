"""`tlops init`: a starter config per modality that loads and passes validation on the folder it was written for,
limits scaled to the data, refusals that name the file and the fix, the shipped starters (and that they agree
with the demo configs), and config-relative paths. No flow run, no model: init only writes names."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, make_audio_dataset, make_image_dataset, make_text_dataset
from tlops.config import load_config
from tlops.errors import ConfigError, DataError, ValidationFailed
from tlops.init import init, starter_names
from tlops.pipeline import validate_step

MAKERS = {"text": make_text_dataset, "image": make_image_dataset, "audio": make_audio_dataset}


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_init_writes_a_config_that_loads_and_validates_its_folder(modality, tmp_path, monkeypatch):
    data = MAKERS[modality](tmp_path / "My Sounds_2024")
    if modality != "audio":  # text, image: init finds the modality from the columns and file types and writes dataset.yaml
        (data / "dataset.yaml").unlink()
    out = tmp_path / "configs" / "mine.yaml"
    r = init(data, out)
    assert r.starter == f"{modality}_linear_probe" and r.wrote_dataset_yaml == (modality != "audio")
    assert yaml.safe_load((data / "dataset.yaml").read_text())["modality"] == modality
    monkeypatch.chdir(tmp_path / "configs")  # neither the data's folder nor the config's parent's
    cfg = load_config(out)
    assert Path(cfg.data.path) == data.resolve()
    assert yaml.safe_load(out.read_text())["data"]["path"] == "../My Sounds_2024"  # written relative to the config
    demo = load_config(REPO / "configs" / f"{modality}_linear_probe.yaml")
    assert cfg.backbone == demo.backbone and cfg.strategy == demo.strategy
    assert cfg.registry.model_name == cfg.tracking.experiment == "my-sounds-2024"
    report = validate_step(cfg)  # raises ValidationFailed with the failed rules otherwise
    assert report.success and report.rows["train"] > 0


def test_min_per_class_is_scaled_to_the_smallest_class_after_the_val_carve(tmp_path):
    data = make_text_dataset(tmp_path / "small", n_train=14, with_val=False)  # 14 rows per class, 2 carved as val
    r = init(data, tmp_path / "small.yaml")
    assert r.folder.val_carved and set(r.folder.counts["train"].values()) == {12}
    assert r.validation["min_per_class"] == 6
    cfg = load_config(tmp_path / "small.yaml")
    assert validate_step(cfg).success
    demo_limit = load_config(tmp_path / "small.yaml", ["validation.min_per_class=20"])  # what a copied demo config said
    with pytest.raises(ValidationFailed, match="at least 20 training rows"):
        validate_step(demo_limit)
    text = (tmp_path / "small.yaml").read_text()
    assert "12 training rows after the val carve" in text and "min_per_class: 6\n" in text


def _few_shot_folder(root: Path, rows: int = 12) -> Path:
    """15 classes of distinct sentences: 5 meta-train classes, 5 novel val classes, 5 novel test classes."""
    root.mkdir(parents=True)
    classes = {"train": "ABCDE", "val": "FGHIJ", "test": "KLMNO"}
    for split, names in classes.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([f"sentence number {i} about the topic {c}", f"topic-{c}"] for c in names for i in range(rows))
    return root


def test_few_shot_layout_gets_the_fewshot_starter_with_episodes_that_fit(tmp_path):
    data = _few_shot_folder(tmp_path / "novel")
    r = init(data, tmp_path / "novel.yaml")
    assert r.starter == "text_fewshot" and r.folder.few_shot
    # test: 12 rows - 5 carved for the support set - 5 shots leaves 2 queries
    assert r.strategy_changes == {"queries": 2, "ways": 5}
    cfg = load_config(tmp_path / "novel.yaml")
    assert cfg.strategy.name == "protonet" and cfg.strategy.queries == 2 and cfg.registry.metric == "accuracy"
    assert validate_step(cfg).success
    with pytest.raises(DataError, match="few-shot layout"):
        init(data, tmp_path / "other.yaml", kind="linear_probe")


def test_refusals_name_the_file_and_the_fix_and_write_nothing(tmp_path):
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"notes/train\.csv is missing; found readme\.csv.*text,label"):
        init(empty, tmp_path / "c.yaml")
    with pytest.raises(DataError, match="is not a folder"):
        init(tmp_path / "nope", tmp_path / "c.yaml")

    odd = make_image_dataset(tmp_path / "odd", per_split=(2, 1, 1))
    (odd / "dataset.yaml").unlink()
    with open(odd / "train.csv", "a") as f:
        f.write("img/scan.pdf,blob\n")
    with pytest.raises(DataError, match=r"train\.csv line 8: path 'img/scan\.pdf' is neither an image"):
        init(odd, tmp_path / "c.yaml")
    (odd / "train.csv").write_text("file,label\nimg/a.png,blob\n")
    with pytest.raises(DataError, match=r"train\.csv line 1: no 'text' or 'path' column \(header: file, label\)"):
        init(odd, tmp_path / "c.yaml")
    assert not (tmp_path / "c.yaml").exists() and not (odd / "dataset.yaml").exists()

    numbers = make_text_dataset(tmp_path / "numbers")
    (numbers / "dataset.yaml").write_text("modality: text\ntask: regression\ngroup: item\n")
    with pytest.raises(DataError, match=r"numbers/dataset.yaml says task: regression; `tlops init` writes classification starters "
                                        r"only\. Copy configs/image_fewshot_regression.yaml"):
        init(numbers, tmp_path / "c.yaml")
    assert not (tmp_path / "c.yaml").exists()

    text = make_text_dataset(tmp_path / "t")
    with pytest.raises(DataError, match="unlabeled.csv is missing"):
        init(text, tmp_path / "c.yaml", kind="domain_adapt")
    init(text, tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="exists; pass --out"):
        init(text, tmp_path / "c.yaml")


def test_starters_ship_in_the_package_and_agree_with_the_demo_configs():
    names = starter_names()
    assert set(names) == {f"{m}_{k}" for m in ("text", "image", "audio") for k in ("linear_probe", "finetune", "domain_adapt", "fewshot")}
    from tlops.init import STARTERS

    for name in names:
        starter = yaml.safe_load(STARTERS.joinpath(f"{name}.yaml").read_text())
        demo = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
        for section in ("backbone", "strategy"):
            assert starter[section] == demo[section], f"starter {name} and configs/{name}.yaml differ in {section}: change both"


def test_cli_init_and_list(tmp_path):
    make_text_dataset(tmp_path / "reviews")
    listed = subprocess.run([sys.executable, "-m", "flows.cli", "init", "--list", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "text_linear_probe" in json.loads(listed.stdout)["starters"]
    made = subprocess.run([sys.executable, "-m", "flows.cli", "init", "reviews", "--strategy", "finetune", "--json"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    got = json.loads(made.stdout)
    assert got["config"] == "reviews.yaml" and got["starter"] == "text_finetune" and got["classes"] == ["animal", "food", "vehicle"]
    assert load_config(tmp_path / "reviews.yaml").strategy.name == "finetune"
    bad = subprocess.run([sys.executable, "-m", "flows.cli", "init", "missing"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "missing is not a folder" in bad.stderr


def test_config_paths_resolve_against_the_config_file_and_set_against_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "project" / "configs").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    f = tmp_path / "project" / "configs" / "c.yaml"
    f.write_text(yaml.safe_dump({"data": {"path": "../data/set", "dvc_cache": "../dvc"}, "backbone": {"name": "hf:x"},
                                 "features": {"cache_dir": ".tlops/cache"}, "registry": {"model_name": "m"}}))
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(f)
    assert cfg.data.path == str(tmp_path / "project" / "data" / "set")
    assert cfg.data.dvc_cache == str(tmp_path / "project" / "dvc")
    assert cfg.features.cache_dir == ".tlops/cache"  # working state: the directory tlops runs in, as mlruns/
    typed = load_config(f, ["data.path=mine", "data.dvc_cache=/abs/cache"])
    assert typed.data.path == str(tmp_path / "elsewhere" / "mine") and typed.data.dvc_cache == "/abs/cache"
