"""Multi-scale feature maps of `timm:` and `torchvision:` backbones (`feature_maps`, `feature_strides`,
`feature_channels`), which detection and segmentation heads read: shapes and strides, the maps being the model's own
stages (the pooled stride-32 map of a ResNet is its pooled pre-logits), a refusal for a model without such maps, and
one fine-tuning step of a detector and of a segmenter on them (the top parameter groups train, the stem does not).

Models are random-weight code-path fixtures (a torchvision resnet18 checkpoint written here, as bench/rank.py does;
timm's tiny `test_efficientnet` / `test_vit`), not pretrained ones.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import make_detection_dataset, make_segmentation_dataset
from tlops.backbones import load_backbone
from tlops.errors import BackboneError


def _checkpoint(zoo: str, name: str, path) -> str:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    if zoo == "timm":
        import timm

        net = timm.create_model(name, pretrained=False)
    else:
        import torchvision

        net = torchvision.models.get_model(name, weights=None)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return f"{zoo}:{name}@{path}"


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    return _checkpoint("torchvision", "resnet18", tmp_path_factory.mktemp("tv") / "resnet18.safetensors")


@pytest.fixture(scope="module")
def tiny_timm(tmp_path_factory):
    return _checkpoint("timm", "test_efficientnet", tmp_path_factory.mktemp("timm") / "test_efficientnet.safetensors")


def test_torchvision_resnet_maps_are_its_own_stages_at_strides_8_16_32(resnet18):
    b = load_backbone(resnet18, image_size=64)
    assert tuple(b.feature_strides) == (8, 16, 32) and tuple(b.feature_channels) == (128, 256, 512)
    images = torch.rand(2, 3, 32, 64)
    with torch.inference_mode():
        maps = b.feature_maps(images)
        mean, std = torch.tensor(b.transform.mean).view(1, 3, 1, 1), torch.tensor(b.transform.std).view(1, 3, 1, 1)
        pooled = b.embed((images - mean) / std)  # the model's own forward: avgpool(layer4) of the normalised images
    assert [tuple(m.shape) for m in maps] == [(2, 128, 4, 8), (2, 256, 2, 4), (2, 512, 1, 2)]
    torch.testing.assert_close(maps[-1].mean((2, 3)), pooled, atol=1e-5, rtol=1e-4)
    assert b.model.training is False  # measuring the strides left the model's modes as they were


def test_timm_maps_follow_feature_info_and_a_model_without_them_is_refused(tiny_timm, tmp_path):
    b = load_backbone(tiny_timm, image_size=64)
    info = {f["reduction"]: f["num_chs"] for f in b.model.feature_info}
    assert tuple(b.feature_channels) == (info[8], info[16], info[32])
    with torch.inference_mode():
        maps = b.feature_maps(torch.rand(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, info[8], 8, 8), (1, info[16], 4, 4), (1, info[32], 2, 2)]
    groups = b.parameter_groups()  # timm's coarse grouping: the stem, then one group per stage (the classifier is dropped)
    assert groups[0][0] is b.model.conv_stem.weight and groups[-1][0] is b.model.blocks[-1][0].conv_pw.weight
    vit = load_backbone(_checkpoint("timm", "test_vit", tmp_path / "vit.safetensors"), image_size=64)
    with pytest.raises(BackboneError, match=r"timm:test_vit gives no feature maps at strides 8, 16, 32 \(its stages reduce by \[16\]\).*resnet"):
        _ = vit.feature_channels


def _changed(before: dict, model: torch.nn.Module, depth: int = 1) -> set[str]:
    """The parameters (and buffers) that training changed, by the first `depth` parts of their names."""
    return {".".join(k.split(".")[:depth]) for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(before[k], v)}


def test_one_finetune_step_of_a_detector_on_a_timm_model(tiny_timm, tmp_path):
    from tlops.detection.files import read_coco_dataset
    from tlops.detection.model import Detector, DetectorConfig, Sample

    splits, categories, _ = read_coco_dataset(make_detection_dataset(tmp_path / "d", images=(2, 1, 1)))
    ids = [c for c, _ in categories]
    train, val = ([Sample(im.path, im.boxes, [ids.index(c) for c in im.categories]) for im in splits[s]] for s in ("train", "val"))
    b = load_backbone(tiny_timm, image_size=64)
    det = Detector(b, [n for _, n in categories], DetectorConfig(image_size=64, fpn_channels=32, epochs=1, batch_size=2, trainable=2))
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    rows = det.fit(train, val)
    assert len(rows) == 1 and torch.isfinite(torch.tensor(rows[0]["train_loss"]))
    assert _changed(before, b.model, depth=2) == {"blocks.3", "blocks.4"}  # the top two groups: the stride 16 and 32 stages
    pred = det.predict_paths([val[0].path], score_threshold=0.0)[0]
    assert pred["boxes"].shape[1:] == (4,) and len(pred["boxes"]) == len(pred["scores"])


def test_one_finetune_step_of_a_segmenter_on_torchvision_resnet18(resnet18, tmp_path):
    from tlops.data.dataset import _read_meta
    from tlops.segmentation.files import read_segmentation_dataset
    from tlops.segmentation.model import Segmenter, SegmenterConfig

    data = make_segmentation_dataset(tmp_path / "s", images=(2, 1, 1))
    splits, labels, _ = read_segmentation_dataset(data, _read_meta(data / "dataset.yaml"))
    pairs = {s: [(str(data / r.path), str(data / r.mask)) for r in splits[s]] for s in ("train", "val")}
    b = load_backbone(resnet18, image_size=64)
    seg = Segmenter(b, labels, SegmenterConfig(image_size=64, inter_channels=16, epochs=1, batch_size=2, trainable=1))
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    rows = seg.fit(pairs["train"], pairs["val"])
    assert len(rows) == 1 and 0.0 <= rows[0]["val_miou"] <= 1.0
    assert _changed(before, b.model) == {"layer4"}  # the top group trained (batch-norm statistics frozen), nothing else
    mask = seg.predict_paths([pairs["val"][0][0]])[0]
    assert mask.shape == (64, 64)
