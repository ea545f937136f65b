"""Speech recognition end to end through `tlops run` (in-process CLI) on a tiny generated set (noise clips with made-up
transcripts: a code-path check, nothing is learnt) with the packaged speech_embedding: a CTC model is registered and
gated on WER (lower is better), its run logging the best epoch of the shared loop; its pyfunc takes audio paths and
returns transcripts (with the param `timings`, each word's start/end); `tlops predict` prints them (`--timings`); a
row whose transcript has characters train never shows fails validation with its file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tests.helpers import make_asr_dataset, tiny_config

WIDE = {**os.environ, "COLUMNS": "250"}
def _config(tmp_path, data) -> tuple[str, str]:
    cfg = tiny_config(tmp_path, data, Path("unused"), backbone__name="packaged:speech-embedding", backbone__clip_seconds=1.5,
                      registry__metric="wer", registry__model_name="tiny-asr",
                      strategy={"name": "linear_probe", "head": "mlp", "hidden": 8, "epochs": 2, "batch_size": 4})
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / "asr.yaml"), cfg["tracking"]["uri"]


def test_asr_run_registers_a_transcriber_gated_on_wer(tmp_path, prefect_api):
    data = make_asr_dataset(tmp_path / "data")
    path, uri = _config(tmp_path, data)
    on_harness = {**WIDE, "PREFECT_API_URL": prefect_api}
    out = cli("run", path, "--json", env=on_harness)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["promotion"]["metric"] == "wer", result["promotion"]
    assert {"wer", "cer"} <= set(result["test_metrics"]) and next(iter(result["val_metrics"])) == "wer", result
    assert result["test_metrics"]["wer"] >= 0 and result["test_metrics"]["cer"] >= 0
    assert result["best_epoch"] in (0, 1), result  # the shared loop's kept epoch (of 2)

    client = MlflowClient(uri)
    version = max(client.search_model_versions("name='tiny-asr'"), key=lambda v: int(v.version))
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/tiny-asr/{version.version}")
    clips = [str(data / "wav/test0.wav"), str(data / "wav/test1.wav")]
    said = model.predict(clips)
    assert len(said) == 2 and all(isinstance(t, str) and set(t) <= set("ab ") for t in said), said  # train's alphabet only
    timed = model.predict(clips, params={"timings": True})  # per clip its words with start/end seconds (CTC alignment)
    assert [" ".join(w["word"] for w in ws) for ws in timed] == said, (timed, said)
    assert all(0 <= w["start"] <= w["end"] <= 1.5 for ws in timed for w in ws), timed

    predicted = cli("predict", f"models:/tiny-asr/{version.version}", clips[0], "--json", "--tracking-uri", uri, env=WIDE)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (row,) = json.loads(predicted.stdout)["predictions"]
    assert row["transcript"] == said[0], row
    predicted = cli("predict", f"models:/tiny-asr/{version.version}", clips[1], "--timings", "--json", "--tracking-uri", uri, env=WIDE)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (row,) = json.loads(predicted.stdout)["predictions"]
    assert row["transcript"] == said[1] and row["words"] == timed[1], row
    evaluated = cli("evaluate", f"models:/tiny-asr/{version.version}", "--data", str(data), "--json", "--tracking-uri", uri, env=WIDE)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scored = json.loads(evaluated.stdout)
    assert scored["metrics"]["wer"] == result["test_metrics"]["wer"], scored  # the registered model on the test split, as the run scored it

    # a transcript with characters train never shows fails validation, naming its file and line
    lines = (data / "test.csv").read_text().splitlines()
    lines[2] = "wav/test1.wav,a-c"
    (data / "test.csv").write_text("\n".join(lines) + "\n")
    out = cli("validate", path, env=WIDE)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "test.csv" in text and "line 3" in text and "characters train never shows" in text, text[-3000:]
