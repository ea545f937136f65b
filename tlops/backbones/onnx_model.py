"""`onnx:<path/to/model.onnx>`: any framework's image or text model as a frozen backbone, run by ONNX Runtime (as the
speech_embedding front end is). Its preprocessing is declared in a sidecar file next to it, `<stem>.yaml` (or `.yml`,
`.json`), since an ONNX graph does not say how its pixels were normalised or its text tokenised. An image model:

    modality: image            # image | text (audio ONNX backbones: not yet)
    input: images              # the graph input to feed (default: its only input)
    output: features           # the graph output to read (default: its first output)
    layout: NCHW               # NCHW (PyTorch exports) or NHWC (TensorFlow/Keras through tf2onnx)
    image_size: 224            # square side the images are resized to (default: the graph's static size, else backbone.image_size)
    mean: [0.485, 0.456, 0.406]  # per channel, on pixels in [0, 1]: x' = (x - mean) / std
    std: [0.229, 0.224, 0.225]

The output is pooled to one vector per image: a (B, D) output as is, a feature map averaged over its spatial axes
(channels on axis 1 for NCHW, last for NHWC). A text model (a transformer exported with token ids and an attention
mask as inputs, e.g. by torch.onnx.export or Hugging Face Optimum):

    modality: text
    tokenizer: tokenizer       # a Hugging Face tokenizer folder (tokenizer.json or vocab files), relative to the sidecar
    max_length: 128            # token limit (default: backbone.max_length)
    pooling: mean              # mean (over the attention mask) | cls (default: backbone.pooling)
    input_ids: input_ids       # graph input names; defaults: input_ids, attention_mask (when the graph has it);
    attention_mask: attention_mask  # a token_type_ids input is fed zeros
    output: last_hidden_state  # (B, T, D): pooled, and per-token features for token classification; or (B, D) as is
 Frozen: ONNX Runtime gives no gradients, so `parameter_groups` refuses
and the strategies that train the backbone say so; probes, domain adaptation and few-shot heads on the cached features
work. The package keeps the .onnx file and the sidecar (`export`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pydantic import Field, ValidationError

from tlops.backbones.base import BaseBackbone, ImageFiles, TextItems
from tlops.backbones.registry import LoadOptions, register_backbone
from tlops.config_base import Strict
from tlops.errors import BackboneError
from tlops.hashing import file_sha256

SIDECARS = (".yaml", ".yml", ".json")
EXPORTED = "model.onnx"


class OnnxSidecar(Strict):
    modality: Literal["image"] = Field(description="what the model takes: image here (text: OnnxTextSidecar)")
    input: str | None = Field(None, description="graph input name (default: its only input)")
    output: str | None = Field(None, description="graph output name (default: its first output)")
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    image_size: int | None = Field(None, ge=8, le=4096, description="square input side (default: the graph's static size)")
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0], min_length=3, max_length=3)
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0], min_length=3, max_length=3)


class OnnxTextSidecar(Strict):
    modality: Literal["text"]
    tokenizer: str = Field("tokenizer", description="Hugging Face tokenizer folder, relative to the sidecar file")
    max_length: int | None = Field(None, ge=2, le=65536, description="token limit (default: backbone.max_length)")
    pooling: Literal["mean", "cls"] | None = Field(None, description="mean over the attention mask, or the first token (default: backbone.pooling)")
    input_ids: str | None = Field(None, description="graph input of the token ids (default: input_ids, or the graph's only input)")
    attention_mask: str | None = Field(None, description="graph input of the mask (default: attention_mask when the graph has it)")
    output: str | None = Field(None, description="graph output name (default: its first output)")


def sidecar_of(model: Path) -> Path:
    for suffix in SIDECARS:
        p = model.with_suffix(suffix)
        if p.is_file():
            return p
    raise BackboneError(f"onnx:{model} has no sidecar file declaring its preprocessing; write {model.with_suffix('.yaml')} with e.g.\n"
                        "  modality: image\n  layout: NCHW        # NHWC for a TensorFlow/Keras model through tf2onnx\n"
                        "  mean: [0.485, 0.456, 0.406]\n  std: [0.229, 0.224, 0.225]")


def read_sidecar(path: Path) -> OnnxSidecar | OnnxTextSidecar:
    from tlops.text_files import parse_yaml, read_utf8

    tree = parse_yaml(read_utf8(path, BackboneError), f"ONNX sidecar {path}", BackboneError, "fix the syntax there")
    tree = tree if tree is not None else {}
    schema = OnnxTextSidecar if isinstance(tree, dict) and tree.get("modality") == "text" else OnnxSidecar
    try:
        side = schema.model_validate(tree)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg']}" for err in e.errors(include_url=False))
        raise BackboneError(f"ONNX sidecar {path}: {problems}; valid keys for modality {tree.get('modality', 'image') if isinstance(tree, dict) else 'image'}: "
                            f"{', '.join(schema.model_fields)}") from None
    if isinstance(side, OnnxTextSidecar):
        return side
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


class _Frozen:
    source: str
    precisions = ("fp32",)  # ONNX Runtime runs the graph as exported: torch's bf16 autocast does not reach it

    def parameter_groups(self) -> list[list[torch.nn.Parameter]]:
        raise BackboneError(f"the onnx backbone {self.source} is frozen (ONNX Runtime gives no gradients): train a head on its "
                            "features (strategy linear_probe, domain_adapt with trainable: 0, or a few-shot strategy on cached "
                            "features), or fine-tune the framework's own model")


def _open_model(path: Path, sidecar_type: type, loader: str) -> tuple[Path, Path, Any]:
    """(the .onnx file, its sidecar's path, the sidecar read) for the `loader` ("image", "text") whose sidecar type is
    `sidecar_type`; a missing file or another modality's sidecar is one BackboneError naming it."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"onnx:{path}: no such file; give the path of a .onnx model file")
    sidecar_path = sidecar_of(path)
    side = read_sidecar(sidecar_path)
    if not isinstance(side, sidecar_type):
        raise BackboneError(f"ONNX sidecar {sidecar_path}: modality {side.modality} given to the {loader} loader")
    return path, sidecar_path, side


class OnnxBackbone(_Frozen, ImageFiles, BaseBackbone):
    kind = "onnx"

    def __init__(self, path: Path, image_size: int = 96, source: str | None = None):
        import onnx

        self.path, self.sidecar_path, self.side = _open_model(path, OnnxSidecar, "image")
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

    def export(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, out_dir / EXPORTED)
        side = self.side.model_dump() | {"input": self.input, "output": self.output, "image_size": self.image_size}
        (out_dir / "model.json").write_text(json.dumps(side))
        self.write_spec(out_dir, image_size=self.image_size)


def _dims(value_info) -> list:
    """A graph value's shape: ints where static, the symbol (or None) where not."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value_info.type.tensor_type.shape.dim]


TOKENIZER_FILES = ("tokenizer", "vocab", "special_tokens", "merges", "spiece", "sentencepiece", "added_tokens")


class OnnxTextBackbone(_Frozen, TextItems, BaseBackbone):
    """A transformer exported to ONNX: texts tokenised by the sidecar's tokenizer folder, padded per batch (as
    `hf:` text backbones do), run with token ids and the attention mask; a (B, T, D) output is pooled over the mask
    (mean) or at the first token (cls) and also serves token-level tasks (`token_states`)."""

    kind = "onnx"

    def __init__(self, path: Path, max_length: int = 128, pooling: str = "mean", source: str | None = None):
        import onnx

        self.path, self.sidecar_path, self.side = _open_model(path, OnnxTextSidecar, "text")
        self.tokenizer_dir = (self.sidecar_path.parent / Path(self.side.tokenizer).expanduser()).resolve()
        if not self.tokenizer_dir.is_dir() or not self._tokenizer_files():
            raise BackboneError(f"ONNX sidecar {self.sidecar_path}: tokenizer: {self.side.tokenizer!r} is not a tokenizer folder "
                                f"({self.tokenizer_dir}: no tokenizer.json or vocab files); save the model's tokenizer there "
                                "(tokenizer.save_pretrained(folder)) or point tokenizer: at it, relative to the sidecar")
        graph = onnx.load(str(self.path), load_external_data=False).graph
        inits = {i.name for i in graph.initializer}
        names = [i.name for i in graph.input if i.name not in inits]
        self.ids_input = self.side.input_ids or ("input_ids" if "input_ids" in names else names[0] if len(names) == 1 else None)
        self.mask_input = self.side.attention_mask or ("attention_mask" if "attention_mask" in names else None)
        self.type_input = "token_type_ids" if "token_type_ids" in names and "token_type_ids" not in (self.ids_input, self.mask_input) else None
        for key, name in (("input_ids", self.ids_input), ("attention_mask", self.mask_input)):
            if (name is not None or key == "input_ids") and name not in names:
                raise BackboneError(f"ONNX sidecar {self.sidecar_path}: {key} {name!r} is not one of the graph's inputs {names}; "
                                    f"set {key}: to one of them")
        rest = [n for n in names if n not in (self.ids_input, self.mask_input, self.type_input)]
        if rest:
            raise BackboneError(f"onnx:{self.path}: the graph also takes {rest}, which a text backbone does not feed (it feeds "
                                "token ids, the attention mask and zero token_type_ids); export the model with those inputs only")
        outputs = [o.name for o in graph.output]
        self.output = self.side.output or outputs[0]
        if self.output not in outputs:
            raise BackboneError(f"ONNX sidecar {self.sidecar_path}: output {self.output!r} is not one of the graph's outputs "
                                f"{outputs}; set output: to one of them")
        self.source = source or f"onnx:{self.path}"
        self.max_length = self.side.max_length or max_length
        self.pooling = self.side.pooling or pooling
        if self.pooling not in ("mean", "cls"):
            raise BackboneError(f"onnx:{self.path}: pooling {self.pooling!r}; an ONNX text backbone pools mean or cls")
        self.layers = [-1]
        self.found_via = "local ONNX file"
        self._model, self._tokenizer, self.calls = None, None, 0
        out_dims = _dims(next(o for o in graph.output if o.name == self.output))
        width = out_dims[-1] if len(out_dims) in (2, 3) else None
        if isinstance(width, int) and width > 0:
            self.num_features = width
        else:  # a dynamic width: one text through the graph says it
            with torch.inference_mode():
                self.num_features = int(self._pooled(self.collate(self.tokenize(["width"]))).shape[1])

    def _tokenizer_files(self) -> list[Path]:
        return sorted(f for f in self.tokenizer_dir.iterdir() if f.is_file() and f.name.startswith(TOKENIZER_FILES))

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_dir, trust_remote_code=False)
        return self._tokenizer

    def _load_model(self) -> torch.nn.Module:
        return _Session(self.path)

    def identity(self) -> dict[str, Any]:
        import hashlib

        return {"source": self.source, "architecture": "onnx", "weights_sha256": {self.path.name: file_sha256(self.path)},
                "tokenizer_sha256": hashlib.sha256(b"".join(f.read_bytes() for f in self._tokenizer_files())).hexdigest(),
                "layers": self.layers, "pooling": self.pooling,
                "preprocessing": {"max_length": self.max_length, "truncation": True, "input_ids": self.ids_input,
                                  "attention_mask": self.mask_input, "output": self.output}}

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False)["input_ids"]

    def collate(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Padded to the longest in the batch, as `hf:` text backbones pad."""
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.as_tensor(x)
            mask[i, : len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def _run(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {self.ids_input: batch["input_ids"].long().numpy()}
        if self.mask_input is not None:
            feed[self.mask_input] = batch["attention_mask"].long().numpy()
        if self.type_input is not None:
            feed[self.type_input] = torch.zeros_like(batch["input_ids"]).long().numpy()
        (y,) = self.model.session.run([self.output], feed)
        y = torch.from_numpy(y).float()
        if y.ndim not in (2, 3):
            raise BackboneError(f"onnx:{self.path}: output {self.output!r} has shape {tuple(y.shape)}; a text backbone's output "
                                "is (B, T, D) token states or (B, D)")
        return y

    def _pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self._run(batch)
        if h.ndim == 2:
            return h
        if self.pooling == "cls":
            return h[:, 0]
        m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        return self._pooled(batch)

    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        h = self._run(batch)
        if h.ndim != 3:
            raise BackboneError(f"onnx:{self.path}: output {self.output!r} is pooled (B, D), so it gives no per-token features for a "
                                "token-level task; export the model's (B, T, D) token states and name that output")
        return h

    def export(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, out_dir / EXPORTED)
        (out_dir / "tokenizer").mkdir(exist_ok=True)
        for f in self.tokenizer_dir.iterdir():
            if f.is_file():
                shutil.copyfile(f, out_dir / "tokenizer" / f.name)
        side = self.side.model_dump() | {"tokenizer": "tokenizer", "max_length": self.max_length, "pooling": self.pooling,
                                         "input_ids": self.ids_input, "attention_mask": self.mask_input, "output": self.output}
        (out_dir / "model.json").write_text(json.dumps(side))
        self.write_spec(out_dir, modality="text", max_length=self.max_length, pooling=self.pooling)


class _LastHidden(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_hf_text(folder: Path, out: Path, opset: int = 17) -> Path:
    """A Hugging Face text model folder (safetensors weights) as an `onnx:` text backbone: `out/model.onnx` (token ids and
    attention mask in, last_hidden_state (B, T, D) out, batch and length dynamic; torch.onnx.export), its tokenizer in
    `out/tokenizer/` and the sidecar `out/model.yaml`. Returns the .onnx path."""
    import warnings

    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).eval()
    out.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(folder, trust_remote_code=False).save_pretrained(out / "tokenizer")
    ids = torch.ones(2, 8, dtype=torch.long)
    path = out / "model.onnx"
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(_LastHidden(model), (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
                                        "last_hidden_state": {0: "batch", 1: "length"}})
    (out / "model.yaml").write_text("modality: text\ntokenizer: tokenizer\n")
    return path


def onnx_backbone(path: Path, opts: LoadOptions | None = None, source: str | None = None) -> OnnxBackbone | OnnxTextBackbone:
    """The image or text backbone of an .onnx file, by its sidecar's `modality`."""
    opts = opts or LoadOptions()
    path = Path(path).expanduser()
    if path.is_file() and isinstance(read_sidecar(sidecar_of(path)), OnnxTextSidecar):
        return OnnxTextBackbone(path, max_length=opts.max_length, pooling=opts.pooling, source=source)
    return OnnxBackbone(path, image_size=opts.image_size, source=source)


def _from_export(folder: Path, spec: dict, meta: dict) -> OnnxBackbone | OnnxTextBackbone:
    if spec.get("modality") == "text":
        return OnnxTextBackbone(folder / EXPORTED, max_length=spec["max_length"], pooling=spec["pooling"], source=f"package:{folder}")
    return OnnxBackbone(folder / EXPORTED, image_size=spec["image_size"], source=f"package:{folder}")


@register_backbone("onnx", "onnx:<...>", from_export=_from_export)
def _load(rest: str, opts: LoadOptions) -> OnnxBackbone | OnnxTextBackbone:
    return onnx_backbone(Path(rest), opts)
