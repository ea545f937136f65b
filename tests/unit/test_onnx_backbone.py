"""The `onnx:` backbone kind: a torch model exported with torch.onnx.export gives, through ONNX Runtime and the sidecar's
preprocessing, the same features as the torch model on the same pixels (to 1e-5), in either layout (NHWC: what tf2onnx
gives for a Keras model); a missing or wrong sidecar is refused with the fix. The packaged EfficientNet-Lite0 exported
the same way and a probe run on it: bench/onnx_backbone.py (its export takes 5-15 s here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_image_dataset, make_tiny_onnx
from tlops.backbones import backbone_from_export, load_backbone
from tlops.data import load_dataset
from tlops.errors import BackboneError
from tlops.features import embed_all


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    return load_dataset(make_image_dataset(tmp_path_factory.mktemp("img"), per_split=(2, 1, 1))).inputs("train")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_features_equal_the_torch_model_on_the_same_pixels(tmp_path, images, layout):
    from tlops.backbones.efficientnet_lite import load_image

    path, net = make_tiny_onnx(tmp_path, layout=layout)
    b = load_backbone(f"onnx:{path}", image_size=32)
    assert (b.kind, b.modality, b.num_features, b.image_size) == ("onnx", "image", 16, 32)
    pixels = torch.stack([load_image(p, 32) for p in images])
    with torch.inference_mode():
        want = net((pixels - 0.5) / 0.25).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(embed_all(b, images), want, atol=1e-5)
    b.export(tmp_path / "package")
    again = backbone_from_export(tmp_path / "package", {})
    np.testing.assert_allclose(embed_all(again, images), want, atol=1e-5)
    assert again.identity()["preprocessing"] == b.identity()["preprocessing"]


def test_a_missing_or_wrong_sidecar_is_refused_with_the_fix(tmp_path):
    path, _ = make_tiny_onnx(tmp_path)
    side = tmp_path / "tiny.yaml"
    side.write_text("modality: image\nlayout: NCWH\n")
    with pytest.raises(BackboneError, match="layout"):
        load_backbone(f"onnx:{path}")
    side.write_text("modality: image\ninput: pixels\n")
    with pytest.raises(BackboneError, match=r"input 'pixels' is not one of the graph's inputs \['images'\]"):
        load_backbone(f"onnx:{path}")
    side.unlink()
    with pytest.raises(BackboneError, match="no sidecar file") as e:
        load_backbone(f"onnx:{path}")
    assert "tiny.yaml" in str(e.value) and "mean:" in str(e.value)
    with pytest.raises(BackboneError, match="no such file"):
        load_backbone(f"onnx:{tmp_path / 'nope.onnx'}")
