"""Images through the same contract, validation and flow as text (real EfficientNet-Lite0 weights)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import PATTERNS, make_tiny_vit, tiny_config
from tlops.backbones import load_backbone
from tlops.config import ValidationConfig
from tlops.data import load_dataset
from tlops.errors import DataError, ValidationFailed
from tlops.validation import raise_for_report, validate_dataset


def _edit_row(path: Path, row: int, value: str) -> None:
    rows = list(csv.reader(open(path)))
    rows[row + 1][0] = value
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_image_preprocessing_gray_to_rgb_and_groups(image_dataset):
    b = load_backbone("packaged:efficientnet-lite0", image_size=32)
    ds = load_dataset(image_dataset)
    batch = b.preprocess(ds.inputs("train")[:2])
    assert batch.shape == (2, 3, 32, 32) and torch.equal(batch[:, 0], batch[:, 1])  # grayscale copied to 3 channels
    assert batch.min() >= -127 / 128 - 1e-6 and batch.max() <= 1.0 + 1e-6  # (x*255-127)/128
    with torch.inference_mode():
        assert b.embed(batch).shape == (2, 1280)
    groups = b.parameter_groups()
    assert len(groups) == 18 and groups[0][0] is b.model._conv_stem.weight


def test_valid_image_dataset_passes(image_dataset):
    assert validate_dataset(load_dataset(image_dataset), ValidationConfig(min_per_class=3)).success


@pytest.mark.parametrize("case, rule", [
    ("undecodable", "image decodes"), ("zero-size", "file exists and is not empty"),
    ("dotdot", "path inside the dataset folder"), ("absolute", "path inside the dataset folder"),
    ("missing", "file exists and is not empty"),
])
def test_bad_images_name_file_and_rule(image_dataset, case, rule):
    if case == "undecodable":
        (image_dataset / "img" / "broken.png").write_bytes(b"this is not a png")
        value = "img/broken.png"
    elif case == "zero-size":
        (image_dataset / "img" / "empty.png").write_bytes(b"")
        value = "img/empty.png"
    else:
        value = {"dotdot": "../outside.png", "absolute": str(image_dataset / "img" / "train-blob-0.png"), "missing": "img/nope.png"}[case]
    _edit_row(image_dataset / "test.csv", 2, value)
    report = validate_dataset(load_dataset(image_dataset), ValidationConfig(min_per_class=3))
    with pytest.raises(ValidationFailed) as e:
        raise_for_report(report)
    failed = report.failed()
    assert [c.rule for c in failed] == [rule]
    assert failed[0].rows == [4] and failed[0].values == [value] and "test.csv line 4" in str(e.value)


def test_modality_mismatch_is_an_error(tmp_path, text_dataset):
    from tlops.config import config_from_dict
    from tlops.pipeline import features_step

    cfg = config_from_dict(tiny_config(tmp_path, text_dataset, tmp_path, backbone__name="packaged:efficientnet-lite0"))
    with pytest.raises(DataError, match="holds text data but backbone packaged:efficientnet-lite0 takes image"):
        features_step(cfg, tmp_path / "f")


def test_hf_image_code_path_and_package_round_trip(tmp_path, image_dataset):
    from tlops.backbones.hf_image import HFImageBackbone
    from tlops.features import embed_all
    from tlops.modules.heads import ProbeHead
    from tlops.package import Predictor, save_package

    vit = make_tiny_vit(tmp_path / "vit")
    b = load_backbone(f"hf:{vit}")
    assert isinstance(b, HFImageBackbone) and b.modality == "image" and b.num_features == 32
    paths = load_dataset(image_dataset).inputs("test")[:5]
    x = embed_all(b, paths, batch_size=2)
    assert x.shape == (5, 32) and np.isfinite(x).all()
    assert len(b.parameter_groups()) == 4  # embeddings, 2 layers, final norm
    head = ProbeHead(32, 3)
    pkg = save_package(tmp_path / "pkg", b, head, list(PATTERNS))
    assert (pkg / "backbone" / "model.safetensors").is_file()
    assert json.loads((pkg / "backbone" / "backbone.json").read_text())["kind"] == "hf"  # the rebuilder comes from the registry
    pred = Predictor(pkg)
    with torch.inference_mode():
        expected = [list(PATTERNS)[i] for i in head(torch.from_numpy(x)).argmax(1)]
    assert pred.predict(paths) == expected


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_timm_and_torchvision_code_paths(tmp_path, image_dataset, library):
    """Random-weight resnet18 checkpoints written here (code-path fixtures, not pretrained models),
    loaded through `<library>:resnet18@file`; features, groups, package round trip."""
    from safetensors.torch import save_file

    from tlops.features import embed_all
    from tlops.modules.heads import ProbeHead
    from tlops.package import Predictor, save_package

    torch.manual_seed(0)
    if library == "timm":
        import timm

        net = timm.create_model("resnet18", pretrained=False)
    else:
        import torchvision

        net = torchvision.models.resnet18(weights=None)
    ckpt = tmp_path / f"{library}-resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(ckpt))
    b = load_backbone(f"{library}:resnet18@{ckpt}", image_size=32)
    assert b.num_features == 512 and b.identity()["weights_sha256"][ckpt.name]
    paths = load_dataset(image_dataset).inputs("test")[:4]
    x = embed_all(b, paths, batch_size=2)
    assert x.shape == (4, 512) and np.isfinite(x).all()
    groups = b.parameter_groups()
    assert groups[0][0] is b.model.conv1.weight and sum(len(g) for g in groups) == len(list(b.model.parameters()))
    head = ProbeHead(512, 3)
    pkg = save_package(tmp_path / "pkg", b, head, list(PATTERNS))
    with torch.inference_mode():
        expected = [list(PATTERNS)[i] for i in head(torch.from_numpy(x)).argmax(1)]
    assert Predictor(pkg).predict(paths) == expected


def test_zoo_names_fail_clearly_offline():
    from tlops.errors import BackboneError

    with pytest.raises(BackboneError, match="timm:no_such_net: unknown model"):
        load_backbone("timm:no_such_net")
    with pytest.raises(BackboneError, match="torchvision:no_such_net: unknown model"):
        load_backbone("torchvision:no_such_net")
    with pytest.raises(BackboneError, match=r"timm:resnet18: pretrained weights could not be loaded.*timm:resnet18@/path"):
        load_backbone("timm:resnet18")  # HF_HUB_OFFLINE=1 in the tests: timm's hub download must fail, clearly
