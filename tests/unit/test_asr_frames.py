"""Frame-level (unpooled) features as the speech-recognition trainer reads them: speech_embedding's 80 ms steps cut to
the frames that start inside each clip, 4 CTC slots a frame, a CTC head trained on them through `train_head` (on the shared loop, masks on, resumed from its
checkpoint), and centred by a lead of silence. (Every audio
kind's `frame_states` against its pooled `embed`, the tiny random-weights wav2vec2 folder included, is in
tests/unit/test_backbone_contract.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from tlops.asr.model import (
    HeadSettings,
    clip_frames,
    log_probs_of,
    slots_per_frame,
    train_head,
)
from tlops.backbones import load_backbone
from tlops.errors import BackboneError


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr-frames")
    rng = np.random.default_rng(0)
    paths, seconds = [], [0.4, 0.9, 0.6]
    for i, s in enumerate(seconds):
        p = root / f"c{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32), 16000)
        paths.append(str(p))
    return root, paths, seconds


def test_speech_embedding_frames_are_its_80ms_steps(clips, tmp_path):
    _, paths, seconds = clips
    b = load_backbone("packaged:speech-embedding", clip_seconds=1.8)
    with torch.inference_mode():
        batch = b.preprocess(paths)
        frames, pooled = b.frame_states(batch), b.embed(batch)
    assert frames.shape == (3, 13, 96)  # (1.8 s - 0.775 s) / 0.08 s + 1 steps
    assert torch.allclose(frames.mean(1), pooled, atol=1e-6)
    assert slots_per_frame(b) == 4  # 50 CTC symbols a second
    cut = clip_frames(b, paths, seconds)
    assert [len(f) for f in cut] == [5, 12, 8]
    settings = HeadSettings(adapter="bigru", hidden=8, epochs=2, batch_size=2, time_masks=1, feature_masks=1)
    adapter_head = train_head(cut, ["ab", "ba ab", "a"], cut[:1], ["ab"], [" ", "a", "b"], 4, settings, checkpoint_dir=tmp_path)
    lp = log_probs_of(adapter_head.adapter, adapter_head.head, cut, 4, 4)
    assert [p.shape for p in lp] == [(20, 4), (48, 4), (32, 4)]
    assert np.allclose(np.exp(lp[1]).sum(1), 1.0, atol=1e-5) and len(adapter_head.history) == 2
    assert adapter_head.best_epoch in (0, 1) and {"val_wer", "val_cer", "train_loss"} <= set(adapter_head.history[0])
    # on the shared loop: a rerun on the same checkpoint folder resumes after the last epoch and keeps the same best head
    again = train_head(cut, ["ab", "ba ab", "a"], cut[:1], ["ab"], [" ", "a", "b"], 4, settings, checkpoint_dir=tmp_path)
    assert again.loop.resumed_from is not None and again.best_epoch == adapter_head.best_epoch
    assert all(np.array_equal(a, b) for a, b in zip(lp, log_probs_of(again.adapter, again.head, cut, 4, 4)))

    # centred frames: whole frames of silence before each clip (speech recognition sets them); a package keeps them
    from tlops.asr.model import centre_frames
    from tlops.backbones import backbone_from_export

    root = clips[0]
    x, _ = sf.read(paths[0], dtype="float32")
    sf.write(root / "led.wav", np.concatenate([np.zeros(6400, np.float32), x]), 16000)
    led = b.collate([str(root / "led.wav")])
    assert centre_frames(b) == pytest.approx(0.4)  # ceil((0.775 - 0.08) / 2 / 0.08) = 5 frames of 80 ms
    assert torch.equal(b.collate(paths[:1]), led)  # the same samples reach the front end
    assert [len(f) for f in clip_frames(b, paths, seconds)] == [10, 13, 13]  # ceil((s + 0.4) / 0.08), at most the 13 steps
    b.export(tmp_path / "bb")
    assert backbone_from_export(tmp_path / "bb", {}).lead_seconds == pytest.approx(0.4)


def test_a_backbone_without_frames_refuses_by_name():
    b = load_backbone("packaged:crepe-tiny", clip_seconds=0.3)
    with pytest.raises(BackboneError, match="no per-frame features.*speech recognition"):
        b.frame_states(torch.zeros(1, 2, 1024))

