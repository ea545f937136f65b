"""A speech-recognition model registered by `tlops run` transcribes audio files in a fresh Python process through
`mlflow.pyfunc.load_model` alone (the model's own copy of tlops, as a user's service loads it): one string per clip, in the
training alphabet. (tests/flow/test_asr.py checks the run, the pyfunc in-process, predict and evaluate.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from tests.cli import cli
from tests.helpers import make_asr_dataset, tiny_config

SCRIPT = textwrap.dedent("""
    import json, sys
    import mlflow
    job = json.loads(sys.stdin.read())
    mlflow.set_tracking_uri(job["uri"])
    model = mlflow.pyfunc.load_model(job["model"])
    print(json.dumps({"tlops": __import__("tlops").__file__, "transcripts": list(model.predict(job["paths"]))}))
""")


def test_a_registered_asr_model_transcribes_in_a_fresh_process(tmp_path, prefect_api):
    data = make_asr_dataset(tmp_path / "data")
    cfg = tiny_config(tmp_path, data, Path("unused"), backbone__name="packaged:speech-embedding", backbone__clip_seconds=1.5,
                      registry__metric="wer", registry__model_name="tiny-asr-fresh",
                      strategy={"name": "linear_probe", "head": "mlp", "hidden": 8, "epochs": 2, "batch_size": 4})
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(cfg))
    out = cli("run", str(tmp_path / "asr.yaml"), "--json", env={**os.environ, "PREFECT_API_URL": prefect_api})
    assert out.returncode == 0, out.stderr[-3000:]
    paths = [str(data / "wav/test0.wav"), str(data / "wav/test1.wav"), str(data / "wav/val0.wav")]
    job = {"uri": cfg["tracking"]["uri"], "model": "models:/tiny-asr-fresh@champion", "paths": paths}
    fresh = subprocess.run([sys.executable, "-c", SCRIPT], input=json.dumps(job), capture_output=True, text=True, timeout=600,
                           cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    got = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert "artifacts/code/tlops" in got["tlops"].replace(os.sep, "/"), got["tlops"]  # the model's shipped code, not this checkout
    assert len(got["transcripts"]) == 3 and all(isinstance(t, str) and set(t) <= set("ab ") for t in got["transcripts"]), got
