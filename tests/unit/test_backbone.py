import json

import numpy as np
import pytest
import torch

from tlops.backbones import backbone_from_export, list_kinds, load_backbone, register_backbone
from tlops.data import load_dataset
from tlops.errors import BackboneError
from tlops.features import embed_all


def test_unknown_prefix_lists_valid_names():
    with pytest.raises(BackboneError, match=r"unknown backbone name 'foo:bar'.*'hf:<\.\.\.>'"):
        load_backbone("foo:bar")


def test_missing_folder_and_unknown_hub_id_offline(tmp_path):
    with pytest.raises(BackboneError, match="folder not found"):
        load_backbone(f"hf:{tmp_path}/nope")
    with pytest.raises(BackboneError, match="no-such-org/no-such-model.*HF_HUB_OFFLINE"):
        load_backbone("hf:no-such-org/no-such-model")


def test_layer_out_of_range(tiny_bert):
    with pytest.raises(BackboneError, match=r"layers \[7\] out of range"):
        load_backbone(f"hf:{tiny_bert}", layers=[7])


def test_embed_shape_and_layer_concat(tiny_bert):
    b = load_backbone(f"hf:{tiny_bert}")
    two = load_backbone(f"hf:{tiny_bert}", layers=[-1, 1])
    texts = ["a dog", "a much longer sentence about a cat that sleeps"]
    assert embed_all(b, texts).shape == (2, 32) == (2, b.num_features)
    x2 = embed_all(two, texts)
    assert x2.shape == (2, 64) and two.num_features == 64
    np.testing.assert_allclose(x2[:, :32], embed_all(b, texts), atol=1e-5)  # last layer block matches


def test_dynamic_padding_does_not_change_features(tiny_bert):
    b = load_backbone(f"hf:{tiny_bert}")
    texts = ["short", "a considerably longer text that forces padding of the short one"]
    together = embed_all(b, texts, batch_size=2)
    alone = np.concatenate([embed_all(b, [t], batch_size=1) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_parameter_groups_run_input_to_output(tiny_bert):
    b = load_backbone(f"hf:{tiny_bert}")
    groups = b.parameter_groups()
    names = {id(p): n for n, p in b.model.named_parameters()}
    assert len(groups) == 4  # embeddings, layer 0, layer 1, pooler
    assert all(names[id(p)].startswith("embeddings") for p in groups[0])
    assert all(names[id(p)].startswith("encoder.layer.1") for p in groups[2])
    assert sum(len(g) for g in groups) == len(list(b.model.parameters()))


def test_identity_changes_with_weights_and_preprocessing(tiny_bert, tmp_path):
    from tests.helpers import make_tiny_bert

    base = load_backbone(f"hf:{tiny_bert}").identity()
    other = make_tiny_bert(tmp_path / "other", seed=1)
    assert load_backbone(f"hf:{other}").identity()["weights_sha256"] != base["weights_sha256"]
    assert load_backbone(f"hf:{tiny_bert}", max_length=64).identity() != base
    assert load_backbone(f"hf:{tiny_bert}", pooling="cls").identity() != base


def test_weights_load_lazily(tiny_bert):
    b = load_backbone(f"hf:{tiny_bert}")
    b.identity()
    assert not b.loaded and b.calls == 0
    with torch.inference_mode():
        b.embed(b.preprocess(["x"]))
    assert b.loaded and b.calls == 1


def test_unknown_packaged_name_and_kind_list_the_valid_ones(tmp_path):
    with pytest.raises(BackboneError, match=r"unknown packaged backbone 'packaged:nope'; valid: packaged:efficientnet-lite0, packaged:speech-embedding"):
        load_backbone("packaged:nope")
    with pytest.raises(BackboneError, match=r"'packaged:speech-embedding'"):  # the full list of forms for an unknown prefix
        load_backbone("foo:bar")
    (tmp_path / "backbone.json").write_text(json.dumps({"kind": "nope"}))
    with pytest.raises(BackboneError, match=r"unknown backbone kind 'nope'; valid: hf, timm, torchvision"):
        backbone_from_export(tmp_path, {})


def test_registry_refuses_a_second_kind_for_the_same_names():
    before = list_kinds()
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone("hf", "hf2:<...>", from_export=lambda *a: None)(lambda rest, opts: None)
    with pytest.raises(ValueError, match="overlaps kind 'hf'"):
        register_backbone("hf-again", "hf:<...>", from_export=lambda *a: None)(lambda rest, opts: None)
    assert list_kinds() == before, "a refused registration must leave the table as it was"


@pytest.mark.parametrize("modality", ["text", "audio"])
def test_packages_written_before_hf_exports_had_a_backbone_json_still_load(tmp_path, tiny_bert, modality):
    """Until now an HF export had no backbone.json: the options were in the package meta (text) and the clip
    length in tlops_audio.json (audio). Such folders rebuild with the same options and features."""
    from tests.helpers import make_audio_dataset, make_tiny_wav2vec2

    if modality == "text":
        b = load_backbone(f"hf:{tiny_bert}", layers=[-1, 1], pooling="cls", max_length=16)
        items = ["a dog", "a much longer sentence about a cat that sleeps all day long"]
    else:
        b = load_backbone(f"hf:{make_tiny_wav2vec2(tmp_path / 'w2v')}", clip_seconds=0.5)
        items = load_dataset(make_audio_dataset(tmp_path / "audio", per_split=(1, 1, 1))).inputs("train")[:2]
    b.export(tmp_path / "export")
    spec = json.loads((tmp_path / "export" / "backbone.json").read_text())
    assert spec["kind"] == "hf" and spec["pooling"] == b.pooling, spec
    (tmp_path / "export" / "backbone.json").unlink()
    meta = {"backbone": {"layers": b.layers, "pooling": b.pooling, "max_length": b.max_length}}  # what save_package writes
    old = backbone_from_export(tmp_path / "export", meta)
    assert (old.kind, old.modality, old.layers, old.pooling, old.max_length) == (b.kind, b.modality, b.layers, b.pooling, b.max_length)
    assert getattr(old, "clip_seconds", None) == getattr(b, "clip_seconds", None)
    np.testing.assert_allclose(embed_all(old, items), embed_all(b, items), atol=1e-6, err_msg="rebuilt old-style package embeds differently")


def test_augmentation_crops_images_and_shifts_audio_along_time_only():
    from tlops.backbones.augment import augment_audio, augment_image

    def g(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    img = torch.randn(4, 3, 32, 32)
    a = augment_image(img, g(0))
    assert a.shape == img.shape and torch.equal(a, augment_image(img, g(0))) and not torch.equal(a, img)
    mel = torch.randn(3, 1, 50, 32)  # speech_embedding: (B, 1, frames, mel bins)
    m = augment_audio(mel, g(5), time_axis=2)
    assert m.shape == mel.shape and torch.allclose(m.sum(2), mel.sum(2), atol=1e-5), "a shift along frames only"
    feats = {"input_features": torch.randn(2, 40, 80)}  # HF spectrogram input: (B, frames, bins)
    f = augment_audio(feats, g(5), time_axis=1)["input_features"]
    assert torch.allclose(f.sum(1), feats["input_features"].sum(1), atol=1e-5), "a shift along frames only"
    wav = {"input_values": torch.randn(2, 800), "attention_mask": torch.ones(2, 800)}  # raw samples: the last axis
    out = augment_audio(wav, g(5), time_axis=1)
    assert out["input_values"].shape == (2, 800) and torch.equal(out["attention_mask"], wav["attention_mask"])
    assert torch.allclose(out["input_values"].sum(1), wav["input_values"].sum(1), atol=1e-4)


def test_a_backbone_first_loaded_inside_inference_mode_still_has_trainable_weights():
    """`embed_all` runs under torch.inference_mode; when it is a backbone's first use, the lazily loaded weights must
    still be normal tensors, or fine-tuning the same backbone later in the process fails in backward."""
    from tlops.backbones.base import BaseBackbone

    class Lazy(BaseBackbone):
        kind, modality, num_features = "lazy", "text", 3

        def _load_model(self) -> torch.nn.Module:
            return torch.nn.Linear(2, 3)

    b = Lazy()
    with torch.inference_mode():
        b.model(torch.ones(1, 2))
    assert not any(p.is_inference() for p in b.model.parameters())
    b.model(torch.ones(4, 2)).sum().backward()
    assert b.model.weight.grad is not None
