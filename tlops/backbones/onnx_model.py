"""`onnx:<path/to/model.onnx>`: any framework's image model as a frozen backbone, run by ONNX Runtime (as the
speech_embedding front end is). Its preprocessing is declared in a sidecar file next to it, `<stem>.yaml` (or `.yml`,
`.json`), since an ONNX graph does not say how its pixels were normalised:

    modality: image            # image models (text and audio ONNX backbones: not yet)
    input: images              # the graph input to feed (default: its only input)
    output: features           # the graph output to read (default: its first output)
    layout: NCHW               # NCHW (PyTorch exports) or NHWC (TensorFlow/Keras through tf2onnx)
    image_size: 224            # square side the images are resized to (default: the graph's static size, else backbone.image_size)
    mean: [0.485, 0.456, 0.406]  # per channel, on pixels in [0, 1]: x' = (x - mean) / std
    std: [0.229, 0.224, 0.225]

The output is pooled to one vector per image: a (B, D) output as is, a feature map averaged over its spatial axes
(channels on axis 1 for NCHW, last for NHWC). Frozen: ONNX Runtime gives no gradients, so `parameter_groups` refuses
and the strategies that train the backbone say so; probes, domain adaptation and few-shot heads on the cached features
work. The package keeps the .onnx file and the sidecar (`export`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pydantic import Field, ValidationError

from tlops.backbones.base import BaseBackbone, ImageFiles
from tlops.backbones.registry import LoadOptions, register_backbone
from tlops.config_base import Strict
from tlops.errors import BackboneError
from tlops.hashing import file_sha256

SIDECARS = (".yaml", ".yml", ".json")
EXPORTED = "model.onnx"


class OnnxSidecar(Strict):
    modality: Literal["image"] = Field(description="what the model takes; image for now")
    input: str | None = Field(None, description="graph input name (default: its only input)")
    output: str | None = Field(None, description="graph output name (default: its first output)")
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    image_size: int | None = Field(None, ge=8, le=4096, description="square input side (default: the graph's static size)")
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0], min_length=3, max_length=3)
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0], min_length=3, max_length=3)


def sidecar_of(model: Path) -> Path:
    for suffix in SIDECARS:
        p = model.with_suffix(suffix)
        if p.is_file():
            return p
    raise BackboneError(f"onnx:{model} has no sidecar file declaring its preprocessing; write {model.with_suffix('.yaml')} with e.g.\n"
                        "  modality: image\n  layout: NCHW        # NHWC for a TensorFlow/Keras model through tf2onnx\n"
                        "  mean: [0.485, 0.456, 0.406]\n  std: [0.229, 0.224, 0.225]")


def read_sidecar(path: Path) -> OnnxSidecar:
    from tlops.text_files import parse_yaml, read_utf8

    tree = parse_yaml(read_utf8(path, BackboneError), f"ONNX sidecar {path}", BackboneError, "fix the syntax there")
    try:
        side = OnnxSidecar.model_validate(tree if tree is not None else {})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg']}" for err in e.errors(include_url=False))
        raise BackboneError(f"ONNX sidecar {path}: {problems}; valid keys: {', '.join(OnnxSidecar.model_fields)}") from None
    if any(s <= 0 for s in side.std):
        raise BackboneError(f"ONNX sidecar {path}: std {side.std} must be > 0 in every channel")
    return side


class _Session(torch.nn.Module):
    """The ONNX Runtime session as the backbone's `model` (no parameters: nothing trains)."""

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        # all graph optimisations (ORT's default, said here on purpose): its NCHWc convolutions came closest to a float64
        # computation on EfficientNet-Lite0 (3.9e-05 vs 5.0e-05 at DISABLE_ALL..EXTENDED; torch float32: 3.2e-05):
        # bench/onnx_precision.py
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types (InvalidGraph, Fail, ...)
            raise BackboneError(f"onnx:{path}: ONNX Runtime cannot load it ({type(e).__name__}: {str(e)[:300]})") from None


class OnnxBackbone(ImageFiles, BaseBackbone):
    kind = "onnx"

    def __init__(self, path: Path, image_size: int = 96, source: str | None = None):
        import onnx

        self.path = Path(path)
        if not self.path.is_file():
            raise BackboneError(f"onnx:{path}: no such file; give the path of a .onnx model file")
        self.sidecar_path = sidecar_of(self.path)
        self.side = read_sidecar(self.sidecar_path)
        graph = onnx.load(str(self.path), load_external_data=False).graph
        inits = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in inits]
        names = [i.name for i in inputs]
        self.input = self.side.input or (names[0] if len(names) == 1 else None)
        if self.input not in names:
            raise BackboneError(f"ONNX sidecar {self.sidecar_path}: input {self.side.input!r} is not one of the graph's inputs "
                                f"{names}; set input: to one of them")
        outputs = [o.name for o in graph.output]
        self.output = self.side.output or outputs[0]
        if self.output not in outputs:
            raise BackboneError(f"ONNX sidecar {self.sidecar_path}: output {self.output!r} is not one of the graph's outputs "
                                f"{outputs}; set output: to one of them")
        in_dims = _dims(next(i for i in inputs if i.name == self.input))
        out_dims = _dims(next(o for o in graph.output if o.name == self.output))
        static = in_dims[2] if self.side.layout == "NCHW" and len(in_dims) == 4 else in_dims[1] if len(in_dims) == 4 else None
        self.image_size = self.side.image_size or (static if isinstance(static, int) and static > 0 else image_size)
        self.source = source or f"onnx:{self.path}"
        self.layers, self.pooling, self.max_length = [-1], "mean", None
        self.found_via = "local ONNX file"
        self._model, self.calls = None, 0
        width = out_dims[1] if len(out_dims) == 2 or (len(out_dims) == 4 and self.side.layout == "NCHW") else out_dims[-1] if out_dims else None
        if isinstance(width, int) and width > 0:
            self.num_features = width
        else:  # a dynamic output width: one image through the graph says it
            with torch.inference_mode():
                self.num_features = int(self._run(torch.zeros(1, 3, self.image_size, self.image_size)).shape[1])

    def _load_model(self) -> torch.nn.Module:
        return _Session(self.path)

    def identity(self) -> dict[str, Any]:
        return {"source": self.source, "architecture": "onnx", "weights_sha256": {self.path.name: file_sha256(self.path)},
                "layers": self.layers, "pooling": self.pooling,
                "preprocessing": {"image_size": self.image_size, "mode": "RGB", "resize": "bilinear", "layout": self.side.layout,
                                  "mean": self.side.mean, "std": self.side.std, "input": self.input, "output": self.output}}

    def collate(self, paths: Sequence[str]) -> torch.Tensor:
        from tlops.backbones.efficientnet_lite import load_image

        x = torch.stack([load_image(p, self.image_size) for p in paths])
        mean = torch.tensor(self.side.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.side.std).view(1, 3, 1, 1)
        return (x - mean) / std  # NCHW here (augmentation works on it); NHWC only at the graph's door

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().float()
        if self.side.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        (y,) = self.model.session.run([self.output], {self.input: x.contiguous().numpy()})
        y = torch.from_numpy(y).float()
        if y.ndim == 4:
            y = y.mean(dim=(2, 3)) if self.side.layout == "NCHW" else y.mean(dim=(1, 2))
        elif y.ndim == 3:
            y = y.mean(dim=1)
        elif y.ndim != 2:
            raise BackboneError(f"onnx:{self.path}: output {self.output!r} has shape {tuple(y.shape)}; a backbone's output is "
                                "(B, D), (B, T, D) or a (B, C, H, W) / (B, H, W, C) map")
        return y

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self._run(batch)

    def parameter_groups(self) -> list[list[torch.nn.Parameter]]:
        raise BackboneError(f"the onnx backbone {self.source} is frozen (ONNX Runtime gives no gradients): train a head on its "
                            "features (strategy linear_probe, domain_adapt with trainable: 0, or a few-shot strategy on cached "
                            "features), or fine-tune the framework's own model")

    def export(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, out_dir / EXPORTED)
        side = self.side.model_dump() | {"input": self.input, "output": self.output, "image_size": self.image_size}
        (out_dir / "model.json").write_text(json.dumps(side))
        self.write_spec(out_dir, image_size=self.image_size)


def _dims(value_info) -> list:
    """A graph value's shape: ints where static, the symbol (or None) where not."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value_info.type.tensor_type.shape.dim]


def _from_export(folder: Path, spec: dict, meta: dict) -> OnnxBackbone:
    return OnnxBackbone(folder / EXPORTED, image_size=spec["image_size"], source=f"package:{folder}")


@register_backbone("onnx", "onnx:<...>", from_export=_from_export)
def _load(rest: str, opts: LoadOptions) -> OnnxBackbone:
    return OnnxBackbone(Path(rest).expanduser(), image_size=opts.image_size)
