"""timm and torchvision image backbones, with their own pretrained-weight loading.

Names: `timm:<model>` (timm's pretrained weights, from the Hugging Face hub) and
`torchvision:<model>` (the model's DEFAULT weights enum). Append `@<local weights file>` to load a
checkpoint from disk instead (safetensors or a torch state dict), e.g. offline or for fine-tuned weights.
The classifier is dropped: features are the pooled pre-logits, (B, num_features).

Dense heads (detection, segmentation) read `feature_maps`: the unpooled maps at strides 8, 16 and 32, from timm's
`forward_intermediates` (the last stage of each stride in the model's `feature_info`) or, for torchvision, from
torchvision's `IntermediateLayerGetter` (what its own FPN and LR-ASPP builders use) over the stages of a ResNet
(`layer2`..`layer4`) or of a model whose body is a `features` sequence (MobileNet, EfficientNet, ConvNeXt), each
stride's last stage; channels and strides are measured once on a small dummy input.

Convolutional models (any 2-D convolution whose window is larger than its stride: ResNet, MobileNet, EfficientNet,
ConvNeXt, RegNet) keep weights and batches in channels-last (NHWC) memory, which oneDNN's CPU convolutions run faster;
embedding under inference_mode goes through a copy with each BatchNorm folded into the convolution before it,
rebuilt whenever a weight changes. Transformers (ViT, Swin: their one convolution is a patch embedding, window =
stride) stay contiguous NCHW and unfolded. Measured in bench/RESULTS.md "Speed (issue 33): channels-last for timm
and torchvision backbones".
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from tlops.backbones.base import BaseBackbone, ImageFiles
from tlops.backbones.registry import LoadOptions, register_backbone
from tlops.errors import BackboneError, DataError
from tlops.hashing import file_sha256

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
MAP_STRIDES = (8, 16, 32)  # the strides of the maps `feature_maps` returns (as packaged:efficientnet-lite0's)
STAGE_CONTAINERS = ("features", "layers", "trunk_output")  # torchvision: a top-level sequence of stages, one parameter group each


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackboneError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _drop_classifier(model: nn.Module) -> int:
    """Replace the last Linear layer with Identity; return its input width (the feature size)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise BackboneError(f"{type(model).__name__}: no Linear classifier found to remove")
    parent = model.get_submodule(last.rsplit(".", 1)[0]) if "." in last else model
    width = parent.get_submodule(last.rsplit(".", 1)[-1]).in_features
    setattr(parent, last.rsplit(".", 1)[-1], nn.Identity())
    return width


def _state_sha256(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def is_convolutional(model: nn.Module) -> bool:
    """Whether the model convolves: some 2-D convolution's window is larger than its stride. A ViT's or Swin's only
    convolution is its patch embedding (window = stride, no overlap), which channels-last memory does not speed up."""
    return any(isinstance(m, nn.Conv2d) and any(k > s for k, s in zip(m.kernel_size, m.stride)) for m in model.modules())


def _conv_norm_pairs(model: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """(convolution, BatchNorm) module names where the BatchNorm's input is that convolution's output, seen with
    forward hooks on one eval-mode forward of `probe`: the very tensor the convolution returned, not changed in place since
    (its version counter). Modules called more than once are left out (shared weights)."""
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    norms = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    made: dict[int, tuple[torch.Tensor, str, int]] = {}  # id of a convolution's output -> (the tensor, kept alive so ids stay unique; its conv; version)
    calls: dict[str, int] = {}
    seen: list[tuple[str, str]] = []

    def on_conv(name):
        def hook(mod, args, out):
            calls[name] = calls.get(name, 0) + 1
            made[id(out)] = (out, name, out._version)
        return hook

    def on_norm(name):
        def hook(mod, args):
            calls[name] = calls.get(name, 0) + 1
            src = made.get(id(args[0])) if args else None
            if src is not None and src[0] is args[0] and src[2] == args[0]._version:
                seen.append((src[1], name))
        return hook

    hooks = [m.register_forward_hook(on_conv(n)) for n, m in convs.items()]
    hooks += [m.register_forward_pre_hook(on_norm(n)) for n, m in norms.items()]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in hooks:
            h.remove()
    return [(c, b) for c, b in seen if calls[c] == 1 and calls[b] == 1]


def _without_norm(norm: nn.BatchNorm2d) -> nn.Module | None:
    """What stays of a BatchNorm folded into its convolution: nothing for torch's own; timm's BatchNormAct2d keeps its
    (eval-mode) dropout and activation. None for another subclass, whose forward tlops does not know."""
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # timm not installed: only torchvision models
        return None
    if type(norm) is BatchNormAct2d:
        return nn.Sequential(norm.drop, norm.act)
    return None


def folded_copy(model: nn.Module, probe: torch.Tensor, tol: float = 1e-4) -> nn.Module | None:
    """An eval-mode copy of `model` with each BatchNorm that directly follows a convolution folded into it (torch's
    `fuse_conv_bn_eval`): the same function without a normalisation pass over every activation. None when nothing
    folds or the copy's output on `probe` differs from the model's by more than `tol` (relative to its largest value),
    e.g. where a convolution's output also feeds something besides its BatchNorm."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    ref_model = model if not model.training else copy.deepcopy(model).eval()
    exact = torch.autocast(probe.device.type, enabled=False)  # the check compares float32 to float32, inside embed_all's bf16 autocast too
    try:
        with exact:
            pairs = _conv_norm_pairs(ref_model, probe)
    except Exception as e:  # noqa: BLE001 -- any model whose forward the probe does not fit (size asserts, ...): embed runs it as loaded
        log.debug("no folded copy of %s: the probe forward failed (%s)", type(model).__name__, e)
        return None
    if not pairs:  # no BatchNorm after a convolution (ConvNeXt: LayerNorm)
        return None
    out = copy.deepcopy(ref_model)
    folded = 0
    for conv_name, norm_name in pairs:
        conv, norm = out.get_submodule(conv_name), out.get_submodule(norm_name)
        rest = _without_norm(norm)
        if rest is None or conv.weight.shape[0] != norm.num_features or not norm.track_running_stats:
            continue
        for name, new in ((conv_name, fuse_conv_bn_eval(conv, norm)), (norm_name, rest)):
            parent, _, leaf = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, leaf, new)
        folded += 1
    if not folded:
        return None
    with torch.no_grad(), exact:
        ref, got = ref_model(probe), out(probe)
    diff = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    if not diff <= tol:
        log.debug("no folded copy of %s: it differs from the model by %.2e (relative)", type(model).__name__, diff)
        return None
    return out


class ZooImageBackbone(ImageFiles, BaseBackbone):
    """One class for both zoos (kinds "timm" and "torchvision"): they differ only in how the model and its
    transform are built. The model is built at once (its feature width and transform come from it)."""

    # Channels-last weights and batches for convolutional models (set per model in __init__; contiguous NCHW for
    # transformers) and, under inference_mode, the folded copy (`folded_copy`; False: the module as loaded).
    memory_format = torch.channels_last
    fold_for_inference = True
    compute_version = 1  # 1: channels-last + folded BatchNorm (features within ~1e-5 relative of the NCHW module); 0 for non-convolutional models

    def __init__(self, zoo: str, spec: str, image_size: int | None = None, headless: bool = False):
        """`headless`: the weights file was written by `export` (classifier already removed)."""
        self.zoo = self.kind = zoo
        self.model_name, _, weights = spec.partition("@")
        self.weights = Path(weights) if weights else None
        self.headless = headless
        self.image_size = image_size
        self.layers, self.pooling, self.max_length = [-1], "mean", None
        self.found_via = "local file" if self.weights else f"{zoo} pretrained weights"
        self.calls = 0
        self._maps_plan: tuple | None = None  # (timm stage indices or torchvision's layer getter and names, channels), on first use
        self._model = self._build()
        self.num_features = _drop_classifier(self._model)
        if self.headless:
            self._model.load_state_dict(_load_state(self.weights))
        self._model.eval()
        if not is_convolutional(self._model):  # a transformer: its features are computed as before issue 33
            self.memory_format, self.fold_for_inference, self.compute_version = torch.contiguous_format, False, 0
        self._model.to(memory_format=self.memory_format)
        self.transform = self._transform()

    def _build(self) -> nn.Module:
        try:
            if self.zoo == "timm":
                import timm

                if self.model_name not in timm.list_models():
                    raise BackboneError(f"timm:{self.model_name}: unknown model; see timm.list_models()")
                model = timm.create_model(self.model_name, pretrained=self.weights is None)
            else:
                import torchvision.models as tvm

                if self.model_name not in tvm.list_models():
                    raise BackboneError(f"torchvision:{self.model_name}: unknown model; valid: {', '.join(tvm.list_models()[:8])}, ...")
                model = tvm.get_model(self.model_name, weights=None if self.weights else "DEFAULT")
        except BackboneError:
            raise
        except Exception as e:  # hub unreachable, no cached weights
            raise BackboneError(
                f"{self.zoo}:{self.model_name}: pretrained weights could not be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                f"Offline, give a local checkpoint: {self.zoo}:{self.model_name}@/path/to/weights.safetensors") from None
        if self.weights is not None and not self.headless:
            model.load_state_dict(_load_state(self.weights))
        return model

    def _transform(self):
        if self.zoo == "timm":
            import timm.data

            over = {"input_size": (3, self.image_size, self.image_size)} if self.image_size else {}
            return timm.data.create_transform(**timm.data.resolve_data_config(over, model=self._model))
        from torchvision.transforms._presets import ImageClassification

        size = self.image_size or 224
        return ImageClassification(crop_size=size, resize_size=int(size * 256 / 224))  # torchvision's standard eval preset

    def identity(self) -> dict[str, Any]:
        weights = {self.weights.name: file_sha256(self.weights)} if self.weights else {"state_dict": _state_sha256(self._model)}
        return {"source": f"{self.zoo}:{self.model_name}", "architecture": self.model_name, "weights_sha256": weights,
                "layers": self.layers, "pooling": self.pooling, "preprocessing": {"transform": repr(self.transform)}, **self.compute_identity()}

    def collate(self, paths: Sequence[str]) -> torch.Tensor:
        """Decode to RGB, then the zoo's eval transform."""
        from PIL import Image

        out = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    out.append(self.transform(im.convert("RGB")))
            except (OSError, ValueError) as e:
                raise DataError(f"image {p} could not be decoded ({e}); replace or remove that file") from None
        return torch.stack(out).contiguous(memory_format=self.memory_format)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        fast = self.fold_for_inference and torch.is_inference_mode_enabled() and not self.model.training
        model = self._inference_model() if fast else self.model
        return model(batch.contiguous(memory_format=self.memory_format)).flatten(1).float()

    def _inference_model(self) -> nn.Module:
        """`folded_copy(model)` (or the model itself when nothing folds), rebuilt whenever a weight changed
        (`derived_model`). Only under inference_mode."""
        def build(m: nn.Module) -> nn.Module:
            size = self.image_size or 64
            probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            folded = folded_copy(m, probe.to(next(m.parameters()).device).contiguous(memory_format=self.memory_format))
            return m if folded is None else folded.to(memory_format=self.memory_format)

        return self.derived_model(build)

    # ---- multi-scale feature maps for dense heads (detection, segmentation); embed() does not use them ----
    feature_strides = MAP_STRIDES  # of the maps `feature_maps` returns, relative to the input

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channels of the stride 8, 16 and 32 maps; a BackboneError naming the model when it has no such maps."""
        return self._plan()[1]

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unpooled maps at strides 8, 16 and 32 of RGB images in [0, 1] (B, 3, H, W): the zoo's normalisation (the
        mean/std of its eval transform), then the model's own stages in its current train/eval mode."""
        where, _ = self._plan()
        mean, std = (torch.tensor(v, dtype=images.dtype, device=images.device).view(1, 3, 1, 1) for v in self._norm)
        x = ((images - mean) / std).contiguous(memory_format=self.memory_format)
        if self.zoo == "timm":
            try:
                return list(self._model.forward_intermediates(x, indices=list(where), intermediates_only=True))
            except NotImplementedError as e:
                raise self._no_maps(f"forward_intermediates: {e}") from None
        getter, names = where
        out = getter(x)
        return [out[n] for n in names]

    def _plan(self) -> tuple:
        if self._maps_plan is None:
            self._maps_plan = self._timm_plan() if self.zoo == "timm" else self._torchvision_plan()
        return self._maps_plan

    def _no_maps(self, why: str) -> BackboneError:
        return BackboneError(
            f"{self.zoo}:{self.model_name} gives no feature maps at strides {', '.join(map(str, MAP_STRIDES))} ({why}), which a "
            "detection or segmentation head needs; use a convolutional model (timm or torchvision resnet*, mobilenet*, "
            "efficientnet*, convnext*) or packaged:efficientnet-lite0")

    def _timm_plan(self) -> tuple:
        import timm.data

        m = self._model
        info = getattr(m, "feature_info", None)
        if not info or not hasattr(m, "forward_intermediates"):
            raise self._no_maps("timm has no feature_info / forward_intermediates for it")
        reductions = [int(f["reduction"]) for f in info]
        missing = [s for s in MAP_STRIDES if s not in reductions]
        if missing:
            raise self._no_maps(f"its stages reduce by {sorted(set(reductions))}")
        indices = [max(i for i, r in enumerate(reductions) if r == s) for s in MAP_STRIDES]  # each stride's last stage
        cfg = timm.data.resolve_data_config({}, model=m)
        self._norm = (tuple(cfg["mean"]), tuple(cfg["std"]))
        return tuple(indices), tuple(int(info[i]["num_chs"]) for i in indices)

    def _torchvision_plan(self) -> tuple:
        from torchvision.models._utils import IntermediateLayerGetter

        m = self._model
        if all(hasattr(m, f"layer{i}") for i in (2, 3, 4)):  # ResNet, ResNeXt, Wide ResNet
            body, names = m, [n for n, _ in m.named_children()]
            names = names[: names.index("layer4") + 1]
        elif isinstance(getattr(m, "features", None), nn.Sequential):  # MobileNet v2/v3, EfficientNet v1/v2, ConvNeXt, ...
            body, names = m.features, [n for n, _ in m.features.named_children()]
        else:
            raise self._no_maps(f"tlops reads the stages of ResNets and of models with a `features` sequence; "
                                f"{type(m).__name__} has {', '.join(n for n, _ in m.named_children())}")
        getter = IntermediateLayerGetter(body, {n: n for n in names})
        h, w = 64, 96  # strides from the maps' sizes on a small input (not square: channels-last maps do not fit both)
        modes = {mod: mod.training for mod in m.modules()}
        m.eval()
        try:
            with torch.no_grad():
                probe = torch.zeros(1, 3, h, w, device=next(m.parameters()).device)
                sizes = {n: tuple(t.shape) for n, t in getter(probe).items()}
        finally:
            for mod, mode in modes.items():
                mod.training = mode
        at = {}
        for n, shape in sizes.items():  # each stride's last stage
            if len(shape) == 4 and shape[2] and h % shape[2] == 0 and h // shape[2] * shape[3] == w:
                at[h // shape[2]] = (n, shape[1])
        missing = [s for s in MAP_STRIDES if s not in at]
        if missing:
            raise self._no_maps(f"no stage of {type(m).__name__} gives a (B, C, H, W) map at stride {missing[0]}")
        chosen = [at[s][0] for s in MAP_STRIDES]
        getter = IntermediateLayerGetter(body, {n: n for n in chosen})  # stops after the stride-32 stage
        self._norm = (tuple(self.transform.mean), tuple(self.transform.std))
        return (getter, chosen), tuple(int(at[s][1]) for s in MAP_STRIDES)

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """From input side to output side, one group per stage so the top N groups are the last N stages (the stride-32
        maps come from the last ones): timm's own coarse grouping (`group_matcher(coarse=True)`: stem, each stage, the
        head's layers), or for torchvision the top-level children in definition order (stem, stages, head) with a
        top-level sequence of stages (`features`, `layers`, `trunk_output`) split into its stages."""
        m = self._model
        if self.zoo == "timm" and hasattr(m, "group_matcher"):
            from timm.models import group_parameters

            return [g for g in group_parameters(m, m.group_matcher(coarse=True), return_values=True).values() if g]
        groups = []
        for name, child in m.named_children():
            parts = list(child.children()) if name in STAGE_CONTAINERS and isinstance(child, (nn.Sequential, nn.ModuleList)) else [child]
            groups += [list(c.parameters()) for c in parts]
        return [g for g in groups if g]

    def export(self, out_dir: Path) -> None:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self._model.state_dict().items()}, str(out_dir / WEIGHTS_FILE))
        self.write_spec(out_dir, model=self.model_name, image_size=self.image_size)


def _from_export(folder: Path, spec: dict, meta: dict) -> ZooImageBackbone:
    return ZooImageBackbone(spec["kind"], f"{spec['model']}@{folder / WEIGHTS_FILE}", image_size=spec["image_size"], headless=True)


def _loader(zoo: str):
    def load(rest: str, opts: LoadOptions) -> ZooImageBackbone:
        return ZooImageBackbone(zoo, rest, image_size=opts.image_size)

    return load


for _zoo in ("timm", "torchvision"):
    register_backbone(_zoo, f"{_zoo}:<model>[@weights file]", from_export=_from_export)(_loader(_zoo))
