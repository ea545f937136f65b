"""Audio through the same contract, validation and flow (real speech_embedding weights)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.helpers import SR, make_tiny_wav2vec2
from tlops.backbones import load_backbone
from tlops.config import ValidationConfig
from tlops.data import load_dataset
from tlops.data.audio import load_clip
from tlops.errors import DataError, ValidationFailed
from tlops.validation import raise_for_report, validate_dataset


def test_audio_preprocessing_mono_resample_and_fit(tmp_path):
    stereo = np.stack([np.ones(22050, np.float32) * 0.2, np.ones(22050, np.float32) * 0.6], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 22050)
    clip = load_clip(tmp_path / "s.wav", SR, SR // 2)  # 1 s at 22.05 kHz -> 16000 samples -> centre 8000
    assert clip.shape == (8000,) and np.allclose(clip[1000:7000], 0.4, atol=1e-3)
    short = load_clip(tmp_path / "s.wav", SR, 2 * SR)
    assert short.shape == (32000,) and np.all(short[-15000:] == 0)  # zero-padded at the end
    b = load_backbone("packaged:speech-embedding", clip_seconds=1.0)
    with torch.inference_mode():
        assert b.embed(b.preprocess([str(tmp_path / "s.wav")])).shape == (1, 96)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....nonsense")
    with pytest.raises(DataError, match="bad.wav could not be decoded"):
        load_clip(tmp_path / "bad.wav", SR, SR)


def test_valid_audio_dataset_passes(audio_dataset):
    assert validate_dataset(load_dataset(audio_dataset), ValidationConfig(min_per_class=3)).success


@pytest.mark.parametrize("case, rule", [
    ("undecodable", "audio decodes"), ("empty", "file exists and is not empty"),
    ("silent", "not silent (peak >= 0.001)"), ("channels", "mono or stereo"),
    ("long", "duration within [0.05, 60.0] s"), ("dotdot", "path inside the dataset folder"),
])
def test_bad_audio_names_file_and_rule(audio_dataset, case, rule):
    wav = audio_dataset / "wav"
    if case == "undecodable":
        (wav / "x.wav").write_bytes(b"RIFF not really a wave file")
    elif case == "empty":
        (wav / "x.wav").write_bytes(b"")
    elif case == "silent":
        sf.write(wav / "x.wav", np.zeros(SR, np.float32), SR)
    elif case == "channels":
        sf.write(wav / "x.wav", np.random.default_rng(0).normal(0, 0.1, (SR, 3)).astype(np.float32), SR)
    elif case == "long":
        sf.write(wav / "x.wav", np.random.default_rng(0).normal(0, 0.1, 61 * 8000).astype(np.float32), 8000)
    value = "../x.wav" if case == "dotdot" else "wav/x.wav"
    rows = list(csv.reader(open(audio_dataset / "test.csv")))
    rows[3][0] = value
    with open(audio_dataset / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    report = validate_dataset(load_dataset(audio_dataset), ValidationConfig(min_per_class=3))
    with pytest.raises(ValidationFailed, match="test.csv line 4"):
        raise_for_report(report)
    failed = report.failed()
    assert [c.rule for c in failed] == [rule] and failed[0].values == [value]


def test_unquoted_yes_no_labels_are_caught(audio_dataset):
    (audio_dataset / "dataset.yaml").write_text("modality: audio\nlabels: [yes, no]\n")
    with pytest.raises(DataError, match="not strings.*quote them"):
        load_dataset(audio_dataset)


def test_hf_audio_code_path_and_package_round_trip(tmp_path, audio_dataset):
    from tlops.backbones.hf_audio import HFAudioBackbone
    from tlops.features import embed_all
    from tlops.modules.heads import ProbeHead
    from tlops.package import Predictor, save_package

    b = load_backbone(f"hf:{make_tiny_wav2vec2(tmp_path / 'w2v')}", clip_seconds=0.5)
    assert isinstance(b, HFAudioBackbone) and b.modality == "audio" and b.num_features == 32
    paths = load_dataset(audio_dataset).inputs("test")[:4]
    x = embed_all(b, paths, batch_size=2)
    assert x.shape == (4, 32) and np.isfinite(x).all()
    groups = b.parameter_groups()
    assert sum(len(g) for g in groups) == len(list(b.model.parameters())) and len(groups) >= 3
    head = ProbeHead(32, 3)
    pkg = save_package(tmp_path / "pkg", b, head, ["low", "chirp", "bursts"])
    with torch.inference_mode():
        expected = [["low", "chirp", "bursts"][i] for i in head(torch.from_numpy(x)).argmax(1)]
    assert Predictor(pkg).predict(paths) == expected


def test_speech_embedding_refuses_clips_shorter_than_its_window_by_name():
    """A 0.6 s clip gives its 775 ms CNN no step: one config error with the fix, not a torch traceback from max_pool2d
    (found by `tlops rank configs/audio_pitch.yaml --backbones packaged:speech-embedding`)."""
    import pytest

    from tlops.backbones import load_backbone
    from tlops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"backbone.clip_seconds 0.6 is shorter than packaged:speech-embedding's 0.775 s window; "
                                          r"set backbone.clip_seconds to at least 0.8"):
        load_backbone("packaged:speech-embedding", clip_seconds=0.6)
    assert load_backbone("packaged:speech-embedding", clip_seconds=0.8).clip_seconds == 0.8
