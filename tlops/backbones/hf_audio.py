"""Hugging Face audio backbones (wav2vec2, HuBERT, AST, ...) through AutoModel + AutoFeatureExtractor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from tlops.backbones.base import AudioFiles
from tlops.backbones.hf import AUDIO_FILE, SAFE, HFBackbone


def is_audio_folder(folder: Path) -> bool:
    f = folder / "preprocessor_config.json"
    return f.is_file() and "sampling_rate" in json.loads(f.read_text())


class HFAudioBackbone(AudioFiles, HFBackbone):
    def __init__(self, name: str, folder: Path | None = None, found_via: str = "", clip_seconds: float = 1.0):
        super().__init__(name, folder, found_via)
        from transformers import AutoFeatureExtractor

        self.processor = AutoFeatureExtractor.from_pretrained(self.folder, **SAFE)
        self.sample_rate = int(self.processor.sampling_rate)
        self.clip_seconds = clip_seconds
        self.layers, self.pooling, self.max_length = [-1], "mean", None
        self.time_axis = 1  # input_features (B, frames, bins); raw input_values always shift along the last axis (augment)
        self.num_features = int(self.config.hidden_size)

    def identity(self) -> dict[str, Any]:
        return {"source": f"hf:{self.name}", "architecture": type(self.config).__name__,
                "weights_sha256": self.weights_sha256(), "layers": self.layers, "pooling": self.pooling,
                "preprocessing": {**json.loads((self.folder / "preprocessor_config.json").read_text()),
                                  "mono": "mean of channels", "clip_seconds": self.clip_seconds},
                **self.compute_identity()}

    def collate(self, paths: Sequence[str]) -> dict[str, torch.Tensor]:
        """Decode (mono, resampled, fit to clip_seconds), then the model's feature extractor."""
        from tlops.data.audio import load_clip

        n = int(round(self.clip_seconds * self.sample_rate))
        clips = [load_clip(p, self.sample_rate, n) for p in paths]
        return dict(self.processor(clips, sampling_rate=self.sample_rate, return_tensors="pt"))

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        return self.model(**batch).last_hidden_state.mean(dim=1).float()  # mean over time frames

    @property
    def frame_hop(self) -> float:
        """Seconds between frames: the product of the convolutional feature encoder's strides (wav2vec2/HuBERT: 20 ms)."""
        return self._conv_frames()[0]

    @property
    def frame_window(self) -> float:
        """Seconds of audio one frame of the convolutional encoder sees (wav2vec2/HuBERT: 400 samples, 25 ms)."""
        return self._conv_frames()[1]

    def _conv_frames(self) -> tuple[float, float]:
        from tlops.errors import BackboneError

        strides, kernels = getattr(self.config, "conv_stride", None), getattr(self.config, "conv_kernel", None)
        if not strides or not kernels or "input_values" not in getattr(self.processor, "model_input_names", ["input_values"]):
            raise BackboneError(f"hf:{self.name} ({type(self.config).__name__}) has no convolutional frame encoder on raw audio, "
                                "so it gives no per-frame features; use a wav2vec2/HuBERT-class folder or packaged:speech-embedding")
        hop, window = 1, 1
        for s, k in zip(strides, kernels):
            window += (k - 1) * hop
            hop *= s
        return hop / self.sample_rate, window / self.sample_rate

    def frame_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, frames, hidden): the last hidden state before the mean over time (one frame per `frame_hop` seconds)."""
        self._conv_frames()  # refuses a model without a frame encoder (AST, Whisper's encoder), naming it
        self.calls += 1
        return self.model(**batch).last_hidden_state.float()

    def export_preprocessing(self, out_dir: Path) -> None:
        shutil.copy2(self.folder / "preprocessor_config.json", out_dir / "preprocessor_config.json")
        (out_dir / AUDIO_FILE).write_text(json.dumps({"clip_seconds": self.clip_seconds}))

    def export_spec(self) -> dict[str, Any]:
        return {**super().export_spec(), "clip_seconds": self.clip_seconds}
