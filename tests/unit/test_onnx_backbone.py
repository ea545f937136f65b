"""The `onnx:` backbone kind: a torch model exported with torch.onnx.export gives, through ONNX Runtime and the sidecar's
preprocessing, the same features as the torch model on the same pixels (to 1e-5), in either layout (NHWC: what tf2onnx
gives for a Keras model); a text transformer exported with token ids and attention mask (export_hf_text) gives the
`hf:` backbone's pooled features and token states, through the package too; a missing or wrong sidecar (or tokenizer
folder) is refused with the fix. The packaged EfficientNet-Lite0 exported
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


TEXTS = ["a small dog barks at the postman", "ONNX", "tokens padded to the longest text of the batch, then pooled over the mask"]


@pytest.fixture(scope="module")
def text_onnx(tmp_path_factory, tiny_bert):
    """The session's tiny random-weight BERT (MiniLM's tokenizer) exported as an onnx: text backbone (export_hf_text)."""
    from tlops.backbones.onnx_model import export_hf_text

    return tiny_bert, export_hf_text(tiny_bert, tmp_path_factory.mktemp("text") / "onnx")


def test_a_text_model_gives_the_hf_backbones_features_and_token_states(tmp_path, text_onnx):
    bert, path = text_onnx
    want_b = load_backbone(f"hf:{bert}", max_length=16)
    b = load_backbone(f"onnx:{path}", max_length=16)
    assert (b.kind, b.modality, b.num_features, b.max_length, b.pooling) == ("onnx", "text", 32, 16, "mean")
    want = embed_all(want_b, TEXTS)
    np.testing.assert_allclose(embed_all(b, TEXTS), want, atol=1e-5)
    batch = b.preprocess(TEXTS)
    assert int(batch["attention_mask"].sum(1).max()) == 16 and int(batch["attention_mask"].sum(1).min()) < 16  # truncated, padded
    with torch.inference_mode():
        np.testing.assert_allclose(b.token_states(batch).numpy(), want_b.token_states(want_b.preprocess(TEXTS)).numpy(), atol=1e-5)
    b.export(tmp_path / "package")
    again = backbone_from_export(tmp_path / "package", {})
    np.testing.assert_allclose(embed_all(again, TEXTS), want, atol=1e-5)
    assert again.identity()["tokenizer_sha256"] == b.identity()["tokenizer_sha256"] and again.max_length == 16
    with pytest.raises(BackboneError, match="is frozen"):
        b.parameter_groups()


def test_a_text_sidecar_without_its_tokenizer_is_refused_with_the_fix(text_onnx):
    _, path = text_onnx
    side = path.with_suffix(".yaml")
    good = side.read_text()
    try:
        side.write_text("modality: text\ntokenizer: elsewhere\n")
        with pytest.raises(BackboneError, match="tokenizer: 'elsewhere' is not a tokenizer folder") as e:
            load_backbone(f"onnx:{path}")
        assert "save_pretrained" in str(e.value)
        side.write_text("modality: text\nlayout: NCHW\n")
        with pytest.raises(BackboneError, match="layout: Extra inputs are not permitted.*valid keys for modality text"):
            load_backbone(f"onnx:{path}")
        side.write_text("modality: text\nattention_mask: mask\n")
        with pytest.raises(BackboneError, match=r"attention_mask 'mask' is not one of the graph's inputs"):
            load_backbone(f"onnx:{path}")
    finally:
        side.write_text(good)
