"""Channels-last (NHWC) memory and the folded inference copy (BatchNorm and symmetric padding inside the convolutions)
of the convolutional image backbone: same features and gradients as the module as loaded in contiguous NCHW (only the
summation order differs), weights stay channels-last through training, the inference copy follows weight updates,
exports stay loadable. The same for the convolutional `timm:` / `torchvision:` backbones (BatchNorm folded into the
convolution before it), and a transformer (timm's test_vit) left in NCHW."""

from __future__ import annotations

import copy

import pytest
import torch

from tlops.backbones.efficientnet_lite import EfficientNetLiteBackbone

SIZE = 32


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random-weights EfficientNet-Lite0 state dict on disk (BN statistics randomised so they matter)."""
    from efficientnet_lite_pytorch import EfficientNet
    from safetensors.torch import save_file

    torch.manual_seed(0)
    m = EfficientNet.from_name("efficientnet-lite0", image_size=SIZE)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def pair(weights):
    """(channels-last backbone, the same weights as contiguous NCHW), built once: the first pass through each
    layout pays oneDNN's kernel generation, most of these tests' time."""
    fast = EfficientNetLiteBackbone(weights=weights, image_size=SIZE)
    plain = EfficientNetLiteBackbone(weights=weights, image_size=SIZE)
    plain.memory_format = torch.contiguous_format  # the old layout, for comparison
    return fast, plain


def _max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_channels_last_features_equal_nchw(pair):
    fast, plain = pair
    assert fast.model._conv_stem.weight.is_contiguous(memory_format=torch.channels_last), "weights not channels-last"
    assert plain.model._conv_stem.weight.is_contiguous(), "the comparison model should be plain NCHW"
    x = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = plain.model.extract_features(x).mean(dim=(2, 3))  # the module as loaded: NCHW, BatchNorm, padded copies
        a, b = fast.embed(x), plain.embed(x)  # an NCHW batch is converted by embed itself; both use the folded copy
        maps_a, maps_b = fast.feature_maps(x.sigmoid()), plain.feature_maps(x.sigmoid())
    assert a.shape == (4, 1280) and a.is_contiguous()
    assert _max_rel_diff(a, ref) < 1e-5, f"channels-last folded features differ from NCHW by {_max_rel_diff(a, ref):.2e} (relative)"
    assert _max_rel_diff(b, ref) < 1e-5, f"folded NCHW features differ from the module's by {_max_rel_diff(b, ref):.2e} (relative)"
    for ma, mb in zip(maps_a, maps_b):
        assert _max_rel_diff(ma, mb) < 1e-5, f"feature maps differ by {_max_rel_diff(ma, mb):.2e}"


def test_channels_last_training_step_matches_nchw(pair, tmp_path):
    """BatchNorm in eval mode, as fine-tuning runs it by default (`norm_stats: frozen`)."""
    fast, plain = copy.deepcopy(pair[0]), pair[1]
    x = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    for b in (fast, plain):
        b.model.zero_grad()
        b.embed(x).pow(2).mean().backward()
    ga, gb = fast.model._conv_stem.weight.grad, plain.model._conv_stem.weight.grad
    assert _max_rel_diff(ga, gb) < 1e-4, f"stem gradients differ by {_max_rel_diff(ga, gb):.2e} (relative)"
    with torch.no_grad():  # an SGD step by hand (optimizers update in place too; torch.optim's first import costs ~7 s here)
        for p in fast.model.parameters():
            if p.grad is not None:
                p.sub_(0.1 * p.grad)
    assert fast.model._conv_stem.weight.is_contiguous(memory_format=torch.channels_last), "an update step lost the layout"
    with torch.inference_mode():  # the folded inference copy follows the update (a stale copy would give the old features)
        after, direct = fast.embed(x), fast.model.extract_features(x.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3))
    assert _max_rel_diff(after, direct) < 1e-5, f"inference copy is stale: {_max_rel_diff(after, direct):.2e} from the updated model"
    fast.export(tmp_path / "pkg")  # safetensors needs contiguous tensors: export converts
    back = EfficientNetLiteBackbone(weights=tmp_path / "pkg" / "model.safetensors", image_size=SIZE)
    with torch.inference_mode():
        assert torch.equal(back.embed(x), fast.embed(x)), "exported channels-last weights did not round-trip"


def test_speech_embedding_channels_last_equals_nchw():
    """The packaged audio CNN (speech_embedding's ONNX initializers) runs channels-last; frames equal its NCHW run."""
    from tlops.backbones import load_backbone

    b = load_backbone("packaged:speech-embedding")
    assert next(p for p in b.model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    plain = copy.deepcopy(b.model).to(memory_format=torch.contiguous_format)
    mel = torch.randn(2, 1, 98, 32, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        a, ref = b.frame_states(mel), plain(mel)
    assert a.shape == ref.shape and _max_rel_diff(a, ref) < 1e-5, f"frames differ from NCHW by {_max_rel_diff(a, ref):.2e} (relative)"


# ---- timm: and torchvision: backbones (tlops/backbones/vision_zoo.py) ----

ZOO = ("timm:test_efficientnet", "timm:test_resnet", "torchvision:mobilenet_v3_small")  # timm's BatchNormAct2d, plain BatchNorm2d, torchvision's Conv2dNormActivation


@pytest.fixture(scope="module")
def zoo_specs(tmp_path_factory):
    """`<zoo>:<model>@file` for random-weight checkpoints (BatchNorm statistics randomised), as in test_vision_zoo_maps."""
    import timm
    import torchvision
    from safetensors.torch import save_file

    folder, out = tmp_path_factory.mktemp("zoo"), {}
    for spec in (*ZOO, "timm:test_vit"):
        zoo, name = spec.split(":")
        torch.manual_seed(0)
        net = timm.create_model(name, pretrained=False) if zoo == "timm" else torchvision.models.get_model(name, weights=None)
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / f"{name}.safetensors"))
        out[spec] = f"{spec}@{folder / f'{name}.safetensors'}"
    return out


def _nchw(spec: str):
    """The same backbone as tlops ran it before issue 33: contiguous NCHW weights and batches, the module as loaded."""
    from tlops.backbones import load_backbone

    b = load_backbone(spec, image_size=SIZE)
    b.memory_format, b.fold_for_inference = torch.contiguous_format, False
    b.model.to(memory_format=torch.contiguous_format)
    return b


@pytest.mark.parametrize("name", ZOO)
def test_zoo_channels_last_folded_features_equal_nchw(zoo_specs, name):
    from tlops.backbones import load_backbone

    fast, plain = load_backbone(zoo_specs[name], image_size=SIZE), _nchw(zoo_specs[name])
    convs = [p for p in fast.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs), "weights not channels-last after load"
    assert fast.compute_identity() == {"compute_version": 1}
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        a, ref = fast.embed(x), plain.embed(x)
        maps_a, maps_b = fast.feature_maps(x.sigmoid()), plain.feature_maps(x.sigmoid())
    folded = fast._derived[1]
    assert folded is not fast.model and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()), "a BatchNorm was not folded"
    assert a.shape == ref.shape == (3, fast.num_features)
    assert _max_rel_diff(a, ref) < 1e-5, f"channels-last folded features differ from NCHW by {_max_rel_diff(a, ref):.2e} (relative)"
    assert len(maps_a) == len(maps_b) > 0
    worst = max(_max_rel_diff(ma, mb) for ma, mb in zip(maps_a, maps_b, strict=True))
    assert all(ma.is_contiguous(memory_format=torch.channels_last) for ma in maps_a) and worst < 1e-5, f"maps differ by {worst:.2e}"


def test_zoo_folded_copy_follows_training_and_a_transformer_stays_nchw(zoo_specs, tmp_path):
    from tlops.backbones import backbone_from_export, load_backbone

    b = load_backbone(zoo_specs["timm:test_efficientnet"], image_size=SIZE)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        before = b.embed(x)  # builds the folded copy from the loaded weights
    b.embed(x).pow(2).mean().backward()  # grad mode, eval-mode BatchNorm (`norm_stats: frozen`): the model itself
    with torch.no_grad():
        for p in b.model.parameters():
            if p.grad is not None:
                p.sub_(0.1 * p.grad)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in b.model.parameters() if p.dim() == 4), "an update lost the layout"
    with torch.inference_mode():
        after, direct = b.embed(x), b.model(x).flatten(1)
    assert not torch.allclose(after, before), "the step changed nothing"
    assert _max_rel_diff(after, direct) < 1e-5, f"inference copy is stale: {_max_rel_diff(after, direct):.2e} from the updated model"
    b.export(tmp_path / "pkg")
    back = backbone_from_export(tmp_path / "pkg", {})
    assert back.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert _max_rel_diff(back.embed(x), after) < 1e-6, "exported weights did not round-trip"
    vit = load_backbone(zoo_specs["timm:test_vit"], image_size=SIZE)
    assert vit.memory_format == torch.contiguous_format and not vit.fold_for_inference and "compute_version" not in vit.identity()
    assert all(p.is_contiguous() for p in vit.model.parameters())


def test_folded_copy_refuses_a_convolution_whose_output_feeds_more_than_its_batchnorm():
    """A BatchNorm after a convolution folds only where it reads the convolution's output as returned and nothing else
    reads it: an in-place change in between is seen (version counter), a second reader by the probe check; embed then
    runs the model as loaded."""
    from tlops.backbones.vision_zoo import folded_copy

    class Branchy(torch.nn.Module):
        def __init__(self, mode: str):
            super().__init__()
            self.conv, self.bn, self.mode = torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3), mode

        def forward(self, x):
            y = self.conv(x)
            if self.mode == "read twice":
                return self.bn(y) + y
            if self.mode == "changed in place":
                y += x
            return self.bn(y)

    torch.manual_seed(0)
    probe = torch.randn(2, 3, 8, 8)
    nets, copies = {}, {}
    for mode in ("alone", "read twice", "changed in place"):
        nets[mode] = m = Branchy(mode).eval()
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.2, 2.0)
        copies[mode] = folded_copy(m, probe)
    assert copies["read twice"] is None and copies["changed in place"] is None, f"a convolution read twice or changed in place was folded: {copies}"
    with torch.no_grad():
        assert isinstance(copies["alone"].bn, torch.nn.Identity) and _max_rel_diff(copies["alone"](probe), nets["alone"](probe)) < 1e-5
