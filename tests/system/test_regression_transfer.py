"""Regression targets beyond the text probe (issue 15, part 2): the fine-tuning objective for a number (loss on
the standardised target, its direction, Huber), early stopping and best-epoch selection on the lowest val MAE,
LP-FT from a ridge head, strategies that still refuse regression; and one Prefect flow run per other modality
(image: tilt of turned items, audio: speaking rate; tiny sets made by the demo builders' own code) whose
registered pyfunc returns floats in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import tiny_config


def _tiny_image_regression(root: Path, monkeypatch) -> Path:
    from tlops.data import build_regression_image

    monkeypatch.setattr(build_regression_image, "PER_CLASS", {"train": 3, "val": 1, "test": 1})
    build_regression_image.build(root)
    return root


def _tiny_audio_regression(root: Path, monkeypatch) -> Path:
    from tlops.data import build_regression_audio

    monkeypatch.setattr(build_regression_audio, "VOICES", {"train": 3, "val": 1, "test": 1})
    build_regression_audio.build(root)
    return root


def _tiny_pitch(root: Path, monkeypatch) -> Path:
    from tlops.data import build_pitch_audio

    monkeypatch.setattr(build_pitch_audio, "VOICES", {"train": 4, "val": 2, "test": 2})
    build_pitch_audio.build(root)
    return root


@pytest.mark.usefixtures("prefect_api")
def test_image_and_audio_regression_flows_register_models_whose_pyfunc_returns_floats(tmp_path, monkeypatch):
    """Tiny sets from the demo builders (image: tilt in degrees, audio: words per minute and voice pitch in Hz)
    through the real flow; the registered pyfuncs, loaded in one fresh process, return floats within the targets'
    bounds."""
    from flows.train import train_flow

    image = _tiny_image_regression(tmp_path / "image", monkeypatch)
    audio = _tiny_audio_regression(tmp_path / "audio", monkeypatch)
    pitch = _tiny_pitch(tmp_path / "pitch", monkeypatch)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    runs = {"tilt": (image, {"backbone__name": "packaged:efficientnet-lite0", "backbone__image_size": 32}),
            "rate": (audio, {"backbone__name": "packaged:speech-embedding", "backbone__clip_seconds": 1.0}),
            "pitch": (pitch, {"backbone__name": "packaged:crepe-tiny", "backbone__clip_seconds": 0.6})}
    inputs = {}
    for name, (data, over) in runs.items():
        cfg = tiny_config(tmp_path / name, data, tmp_path, strategy={"name": "linear_probe", "head": "ridge"},
                          registry={"model_name": f"tiny-{name}", "metric": "mae", "margin": 0.0}, tracking__uri=uri, **over)
        r = train_flow(cfg, progress=False)
        assert r.version == "1" and "champion" in r.aliases and r.promotion.metric == "mae", r
        assert set(r.test_metrics) == {"mae", "rmse", "r2", "spearman"}
        inputs[name] = [str(data / line.split(",")[0]) for line in (data / "test.csv").read_text().splitlines()[1:3]]
    code = ("import json, sys, mlflow\nmlflow.set_tracking_uri(sys.argv[1])\nout = {}\n"
            "for name, items in json.loads(sys.argv[2]).items():\n"
            "    pred = mlflow.pyfunc.load_model(f'models:/tiny-{name}@champion').predict(items)\n"
            "    out[name] = [[type(v).__name__ for v in pred], [float(v) for v in pred]]\n"
            "print(json.dumps(out))")
    out = subprocess.run([sys.executable, "-c", code, uri, json.dumps(inputs)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for name, lo, hi in [("tilt", 0, 45), ("rate", 100, 300), ("pitch", 50, 500)]:
        types, values = got[name]
        assert types == ["float", "float"], got
        assert all(lo - 50 < v < hi + 50 for v in values), (name, values)  # in the target's units, not standardised
