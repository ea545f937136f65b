"""Speech recognition end to end: the session zoo's `tiny-asr` (tests/zoo.py: `tlops run`'s flow on a tiny generated set of
noise clips with made-up transcripts over 'a', 'b' and space, packaged speech_embedding, a CTC MLP head, two epochs;
built once per `make test` and shared with the fresh-process test): a CTC model is registered and gated on WER (lower
is better), its run logging the best epoch of the shared loop; its pyfunc takes audio paths and returns transcripts
(with the param `timings`, each word's start/end); `tlops predict` prints them (`--timings`); `tlops evaluate` scores the
test split as the run did; a row whose transcript has characters train never shows fails validation with its file and
line. A code-path check: nothing is learnt (bench/RESULTS.md has the demo's numbers)."""

from __future__ import annotations

import json
import os
import shutil

import mlflow
import yaml

from tests.cli import cli

WIDE = {**os.environ, "COLUMNS": "250"}


def test_asr_run_registers_a_transcriber_gated_on_wer(zoo):
    from tests.zoo import mlflow_uris_kept

    reg = zoo.asr
    data, uri = reg.data, reg.uri
    result = reg.results[-1].model_dump(mode="json")
    assert result["promotion"]["metric"] == "wer", result["promotion"]
    assert {"wer", "cer"} <= set(result["test_metrics"]) and next(iter(result["val_metrics"])) == "wer", result
    assert result["test_metrics"]["wer"] >= 0 and result["test_metrics"]["cer"] >= 0
    assert result["best_epoch"] in (0, 1), result  # the shared loop's kept epoch (of 2)

    with mlflow_uris_kept():
        mlflow.set_tracking_uri(uri)
        model = mlflow.pyfunc.load_model(reg.model_uri("1"))
    clips = [str(data / "wav/test0.wav"), str(data / "wav/test1.wav")]
    said = model.predict(clips)
    assert len(said) == 2 and all(isinstance(t, str) and set(t) <= set("ab ") for t in said), said  # train's alphabet only
    timed = model.predict(clips, params={"timings": True})  # per clip its words with start/end seconds (CTC alignment)
    assert [" ".join(w["word"] for w in ws) for ws in timed] == said, (timed, said)
    assert all(0 <= w["start"] <= w["end"] <= 1.5 for ws in timed for w in ws), timed

    predicted = cli("predict", reg.model_uri("1"), clips[0], "--json", "--tracking-uri", uri, env=WIDE)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (row,) = json.loads(predicted.stdout)["predictions"]
    assert row["transcript"] == said[0], row
    predicted = cli("predict", reg.model_uri("1"), clips[1], "--timings", "--json", "--tracking-uri", uri, env=WIDE)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (row,) = json.loads(predicted.stdout)["predictions"]
    assert row["transcript"] == said[1] and row["words"] == timed[1], row
    evaluated = cli("evaluate", reg.model_uri("1"), "--data", str(data), "--json", "--tracking-uri", uri, env=WIDE)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scored = json.loads(evaluated.stdout)
    assert scored["metrics"]["wer"] == result["test_metrics"]["wer"], scored  # the registered model on the test split, as the run scored it


def test_a_transcript_with_characters_train_never_shows_fails_validation_by_file_and_line(zoo, tmp_path, prefect_api):
    reg = zoo.asr
    data = tmp_path / "data"
    shutil.copytree(reg.data, data)  # the zoo's folder is shared: the broken row goes into a copy
    lines = (data / "test.csv").read_text().splitlines()
    lines[2] = "wav/test1.wav,a-c"
    (data / "test.csv").write_text("\n".join(lines) + "\n")
    cfg = {**reg.configs[0], "data": {**reg.configs[0]["data"], "path": str(data), "dvc_cache": str(tmp_path / "dvc-cache")},
           "features": {"cache_dir": str(tmp_path / "cache")}, "execution": {"work_dir": str(tmp_path / "runs")},
           "tracking": {"uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db", "experiment": "tests"}}  # nothing of the zoo's touched
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(cfg))
    out = cli("validate", str(tmp_path / "asr.yaml"), env={**WIDE, "PREFECT_API_URL": prefect_api})
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "test.csv" in text and "line 3" in text and "characters train never shows" in text, text[-3000:]
