"""Images through the same contract, validation and flow as text (real EfficientNet-Lite0 weights)."""

from __future__ import annotations

from pathlib import Path

import torch

from tlops.backbones import load_backbone


def test_efficientnet_lite0_is_the_real_imagenet_model():
    import sklearn.datasets

    flower = Path(sklearn.datasets.__file__).parent / "images" / "flower.jpg"
    b = load_backbone("packaged:efficientnet-lite0", image_size=224)
    with torch.inference_mode():
        assert int(b.model(b.preprocess([str(flower)])).argmax(1)) == 985  # ImageNet class 985: daisy
    assert b.identity()["weights_sha256"]["efficientnet-lite0-57934424.pth"].startswith("57934424")
