"""Audio through the same contract, validation and flow (real speech_embedding weights)."""

from __future__ import annotations

import numpy as np
import torch

from tests.helpers import SR
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.data.audio import load_clip


def test_torch_cnn_matches_onnx_runtime_within_1e4(audio_dataset):
    import onnxruntime as ort

    from tlops.backbones.speech_embedding import packaged_onnx

    b = load_backbone("packaged:speech-embedding")
    real = np.stack([load_clip(p, SR, SR) for p in load_dataset(audio_dataset).inputs("train")[:3]])
    noise = np.random.default_rng(0).normal(0, 0.1, (2, SR)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    full = ort.InferenceSession(str(packaged_onnx()), opts)
    for x in (real, noise):
        ref = full.run(None, {"samples:0": x})[0][:, :, 0, :]  # (B, steps, 96) from the whole ONNX graph
        with torch.inference_mode():
            ours = b.model(b.front(x)).numpy()
        assert ours.shape == ref.shape == (len(x), 3, 96)
        assert np.abs(ours - ref).max() < 1e-4
    assert all(p.requires_grad for p in b.model.parameters()) and len(b.parameter_groups()) == 20
