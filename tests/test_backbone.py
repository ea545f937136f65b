import numpy as np
import pytest
import torch

from tlops.backbones import load_backbone
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
    assert b._model is None and b.calls == 0
    with torch.inference_mode():
        b.embed(b.preprocess(["x"]))
    assert b._model is not None and b.calls == 1
