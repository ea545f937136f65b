"""The backbone contract (tlops/backbones/base.py), checked the same way for every registered kind, like
timm's tests/test_models.py checks every model. A new kind fails `test_every_registered_kind_has_a_case`
until it gets a case here.

Models are random-weight code-path fixtures (tiny BERT / ViT / wav2vec2, resnet18 checkpoints written here)
or the real packaged EfficientNet-Lite0, speech_embedding and CREPE tiny, on tiny inputs.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.helpers import make_audio_dataset, make_image_dataset, make_tiny_onnx, make_tiny_vit, make_tiny_wav2vec2
from tlops.backbones import Backbone, backbone_from_export, list_kinds, load_backbone
from tlops.data import load_dataset
from tlops.features import embed_all

TEXTS = ["a dog", "a much longer sentence about a cat that sleeps in the sun all day", "bread and butter"]


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # the registry kind it exercises
    modality: str
    lazy: bool  # the model loads on first use of `model` (identity() must not load it)
    frozen: bool = False  # nothing trains (an ONNX Runtime session): parameter_groups refuses by name


CASES = [
    Case("hf-text", "hf", "text", lazy=True),
    Case("hf-image", "hf", "image", lazy=True),
    Case("hf-audio", "hf", "audio", lazy=True),
    Case("timm", "timm", "image", lazy=False),  # built at once: the feature width and transform come from the model
    Case("torchvision", "torchvision", "image", lazy=False),
    Case("efficientnet-lite0", "efficientnet-lite0", "image", lazy=True),
    Case("speech-embedding", "speech-embedding", "audio", lazy=True),
    Case("crepe", "crepe", "audio", lazy=True),
    Case("onnx", "onnx", "image", lazy=True, frozen=True),
]
IDS = [c.id for c in CASES]


def _resnet18_checkpoint(zoo: str, path: Path) -> Path:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    if zoo == "timm":
        import timm

        net = timm.create_model("resnet18", pretrained=False)
    else:
        import torchvision

        net = torchvision.models.resnet18(weights=None)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def specs(tmp_path_factory, tiny_bert) -> dict[str, tuple[str, dict, list[str]]]:
    """case id -> (backbone name, load_backbone options, three raw items)."""
    root = tmp_path_factory.mktemp("contract")
    images = load_dataset(make_image_dataset(root / "images", per_split=(1, 1, 1))).inputs("train")
    clips = load_dataset(make_audio_dataset(root / "audio", per_split=(1, 1, 1))).inputs("train")
    return {
        "hf-text": (f"hf:{tiny_bert}", {"max_length": 16}, TEXTS),
        "hf-image": (f"hf:{make_tiny_vit(root / 'vit')}", {}, images),
        "hf-audio": (f"hf:{make_tiny_wav2vec2(root / 'w2v')}", {"clip_seconds": 0.5}, clips),
        "timm": (f"timm:resnet18@{_resnet18_checkpoint('timm', root / 'timm.safetensors')}", {"image_size": 32}, images),
        "torchvision": (f"torchvision:resnet18@{_resnet18_checkpoint('torchvision', root / 'tv.safetensors')}", {"image_size": 32}, images),
        "efficientnet-lite0": ("packaged:efficientnet-lite0", {"image_size": 32}, images),
        "speech-embedding": ("packaged:speech-embedding", {"clip_seconds": 0.8}, clips),
        "crepe": ("packaged:crepe-tiny", {"clip_seconds": 0.3}, clips),
        "onnx": (f"onnx:{make_tiny_onnx(root / 'onnx')[0]}", {}, images),
    }


@pytest.fixture(scope="module")
def shared(specs):
    """One backbone per case for the checks that do not need a fresh one (loaded on first request)."""
    made: dict[str, Backbone] = {}

    def get(case: Case) -> tuple[Backbone, list[str]]:
        name, opts, items = specs[case.id]
        if case.id not in made:
            made[case.id] = load_backbone(name, **opts)
        return made[case.id], items

    return get


# everything the Protocol lists: its attributes, properties and methods
MEMBERS = sorted(set(Backbone.__annotations__) | {n for n, v in vars(Backbone).items()
                                                  if not n.startswith("_") and (callable(v) or isinstance(v, property))})


def _missing_members(b: Backbone) -> list[str]:
    """Protocol members `b` lacks, looked up statically (hasattr would run the lazy `model` property)."""
    missing = []
    for name in MEMBERS:
        try:
            inspect.getattr_static(b, name)
        except AttributeError:
            missing.append(name)
    return missing


def _tensors(batch: Any) -> dict[str, torch.Tensor]:
    """A collated batch as named tensors (a bare tensor is named "")."""
    if torch.is_tensor(batch):
        return {"": batch}
    assert isinstance(batch, dict) and batch, f"a batch is a tensor or a non-empty dict of tensors, got {type(batch).__name__}"
    return {k: v for k, v in batch.items() if torch.is_tensor(v)}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_embed_gives_finite_float32_rows_of_num_features(case, shared):
    b, items = shared(case)
    assert not _missing_members(b), f"{case.id}: {type(b).__name__} lacks Backbone members {_missing_members(b)}"
    assert (b.kind, b.modality) == (case.kind, case.modality), f"{case.id}: kind/modality {(b.kind, b.modality)}"
    assert isinstance(b.num_features, int) and b.num_features > 0, f"{case.id}: num_features {b.num_features!r}"
    calls = b.calls
    with torch.inference_mode():
        x = b.embed(b.preprocess(items))
    assert x.shape == (len(items), b.num_features), f"{case.id}: embed gave {tuple(x.shape)}, want ({len(items)}, {b.num_features})"
    assert x.dtype == torch.float32, f"{case.id}: embed gave {x.dtype}, want float32"
    assert torch.isfinite(x).all(), f"{case.id}: embed gave non-finite features"
    assert b.calls == calls + 1, f"{case.id}: calls went {calls} -> {b.calls} for one embed()"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_preprocess_is_collate_of_encode_and_embed_all_keeps_row_order(case, shared):
    b, items = shared(case)
    encoded = b.encode(items)
    assert len(encoded) == len(items), f"{case.id}: encode gave {len(encoded)} entries for {len(items)} items"
    lengths = b.lengths(encoded)
    assert lengths is None or (len(lengths) == len(items) and all(isinstance(n, int) for n in lengths)), \
        f"{case.id}: lengths must be None or one int per item, got {lengths!r}"
    via_encode, direct = _tensors(b.collate(encoded)), _tensors(b.preprocess(items))
    assert via_encode.keys() == direct.keys(), f"{case.id}: batch keys {sorted(via_encode)} vs {sorted(direct)}"
    for k in direct:
        assert torch.equal(via_encode[k], direct[k]), f"{case.id}: preprocess != collate(encode(...)) for {k!r}"
    contents = [b.content(x) for x in items]
    assert all(isinstance(c, bytes) and c for c in contents), f"{case.id}: content() must give non-empty bytes"
    assert len(set(contents)) == len(items), f"{case.id}: distinct items gave the same cache content"
    # embed_all may reorder batches (text runs longest-first); rows must come back in input order
    with torch.inference_mode():
        one_by_one = np.concatenate([b.embed(b.preprocess([x])).numpy() for x in items])
    np.testing.assert_allclose(embed_all(b, items, batch_size=2), one_by_one, atol=1e-4,
                               err_msg=f"{case.id}: embed_all rows differ from item-by-item features")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_identity_is_json_and_stable_without_loading_the_model(case, specs, monkeypatch):
    name, opts, _ = specs[case.id]
    first, second = load_backbone(name, **opts), load_backbone(name, **opts)
    ident = first.identity()
    monkeypatch.setattr("tlops.backbones.base.cpu_has_bf16", lambda: True)  # bf16 features are another cache namespace
    if case.frozen:
        with pytest.raises(Exception, match="runs only in fp32"):
            load_backbone(name, precision="bf16", **opts)
    else:
        assert load_backbone(name, precision="bf16", **opts).identity() == {**ident, "precision": "bf16"}, case.id
    text = json.dumps(ident, sort_keys=True)  # the cache namespace and the MLflow params are made from this
    assert json.loads(text) == ident, f"{case.id}: identity does not survive a JSON round trip"
    assert second.identity() == ident, f"{case.id}: two fresh loads give different identities"
    assert {"source", "weights_sha256", "layers", "pooling"} <= ident.keys(), f"{case.id}: identity keys {sorted(ident)}"
    assert not _missing_members(first), f"{case.id}: lacks Backbone members {_missing_members(first)}"
    if case.lazy:
        assert not first.loaded, f"{case.id}: identity() loaded the model (a fully cached run must not)"
    assert first.calls == 0, f"{case.id}: identity() called embed()"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parameter_groups_hold_every_trainable_parameter_once(case, shared):
    b, _ = shared(case)
    if case.frozen:
        from tlops.errors import BackboneError

        with pytest.raises(BackboneError, match="is frozen"):
            b.parameter_groups()
        return
    groups = b.parameter_groups()
    assert groups and all(isinstance(g, list) and g for g in groups), f"{case.id}: empty parameter group(s)"
    grouped = [id(p) for g in groups for p in g]
    assert len(grouped) == len(set(grouped)), f"{case.id}: {len(grouped) - len(set(grouped))} parameters in two groups"
    names = {id(p): n for n, p in b.model.named_parameters()}
    trainable = {id(p) for p in b.model.parameters() if p.requires_grad}
    missing = sorted(names[i] for i in trainable - set(grouped))
    foreign = [i for i in grouped if i not in trainable]
    assert not missing, f"{case.id}: trainable parameters in no group: {missing[:5]}"
    assert not foreign, f"{case.id}: {len(foreign)} grouped parameters are not trainable parameters of `model`"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_augment_keeps_shapes_and_repeats_for_the_same_generator(case, shared):
    b, items = shared(case)
    batch = b.preprocess(items)
    before = {k: v.clone() for k, v in _tensors(batch).items()}
    a = _tensors(b.augment(batch, torch.Generator().manual_seed(7)))
    again = _tensors(b.augment(batch, torch.Generator().manual_seed(7)))
    assert a.keys() == before.keys(), f"{case.id}: augment changed the batch keys to {sorted(a)}"
    for k, v in before.items():
        assert a[k].shape == v.shape and a[k].dtype == v.dtype, f"{case.id}: augment changed {k!r} to {tuple(a[k].shape)} {a[k].dtype}"
        assert torch.equal(a[k], again[k]), f"{case.id}: augment of {k!r} differs for the same generator seed"
        assert torch.equal(_tensors(batch)[k], v), f"{case.id}: augment modified its input {k!r} in place"
    if case.modality == "text":
        assert all(torch.equal(a[k], before[k]) for k in before), f"{case.id}: text batches are not augmented"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_export_round_trip_gives_the_same_kind_and_features(case, shared, tmp_path):
    b, items = shared(case)
    b.export(tmp_path / "backbone")
    spec = json.loads((tmp_path / "backbone" / "backbone.json").read_text())
    assert spec["kind"] == b.kind, f"{case.id}: backbone.json kind {spec['kind']!r}, want {b.kind!r}"
    meta = {"backbone": {"layers": b.layers, "pooling": b.pooling, "max_length": b.max_length}}  # as save_package writes it
    rebuilt = backbone_from_export(tmp_path / "backbone", meta)
    assert (rebuilt.kind, rebuilt.modality, rebuilt.num_features) == (b.kind, b.modality, b.num_features), \
        f"{case.id}: rebuilt as {(rebuilt.kind, rebuilt.modality, rebuilt.num_features)}"
    np.testing.assert_allclose(embed_all(rebuilt, items), embed_all(b, items), atol=1e-5,
                               err_msg=f"{case.id}: the exported backbone embeds differently")


FRAMES = {"hf-audio", "speech-embedding"}  # kinds with frame-level features (`frame_states`, speech recognition)


@pytest.mark.parametrize("case", [c for c in CASES if c.modality == "audio"], ids=[c.id for c in CASES if c.modality == "audio"])
def test_frame_states_are_what_embed_pools_or_a_refusal(case, shared):
    from tlops.errors import BackboneError

    b, items = shared(case)
    batch = b.preprocess(items)
    if case.id not in FRAMES:
        with pytest.raises(BackboneError, match="no per-frame features"):
            b.frame_states(batch)
        return
    with torch.inference_mode():
        frames, pooled = b.frame_states(batch), b.embed(batch)
    assert frames.dtype == torch.float32 and frames.shape[0] == len(items) and frames.shape[2] == b.num_features, frames.shape
    clip = b.clip_seconds
    assert frames.shape[1] == 1 + int((clip - b.frame_window) / b.frame_hop + 1e-6), (case.id, frames.shape, b.frame_hop)
    assert torch.allclose(frames.mean(1), pooled, atol=1e-5), f"{case.id}: the pooled features must be the frames' mean"


def test_every_registered_kind_has_a_case():
    missing = sorted(set(list_kinds()) - {c.kind for c in CASES})
    assert not missing, f"backbone kinds without a contract case: {missing}; add a Case (and its spec) above"
    unknown = sorted({c.kind for c in CASES} - set(list_kinds()))
    assert not unknown, f"contract cases for kinds the registry does not hold: {unknown}"
