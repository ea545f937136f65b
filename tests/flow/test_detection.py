"""Object detection end to end through `tlops run` (in-process CLI) on a tiny COCO set of shapes (squares and discs on
noise, 64 px) with the packaged EfficientNet-Lite0: the frozen-backbone detector (FPN + FCOS head, two epochs) is
registered, gated on mAP; its pyfunc takes image paths and returns boxes [x, y, w, h] with labels and scores; `tlops
predict` prints them; `tlops evaluate` scores the COCO folder as the run scored its test split. The numbers are those
of a two-epoch model on 8 images: the test checks what is returned, not how good it is (bench/RESULTS.md has that)."""

from __future__ import annotations

import json
import os

import mlflow
import pytest
import yaml

from tests.cli import cli
from tests.helpers import make_detection_dataset, tiny_config

WIDE = {**os.environ, "COLUMNS": "250"}


def test_detection_run_registers_a_box_predicting_model_gated_on_map(tmp_path, tiny_bert, prefect_api):
    data = make_detection_dataset(tmp_path / "data")
    cfg = tiny_config(tmp_path, data, tiny_bert, registry__metric="map", registry__model_name="tiny-detect",
                      backbone__name="packaged:efficientnet-lite0", backbone__image_size=64, backbone__batch_size=8,
                      strategy={"name": "linear_probe", "head": "mlp", "epochs": 2, "batch_size": 4, "lr": 0.003})
    (tmp_path / "detect.yaml").write_text(yaml.safe_dump(cfg))
    uri = cfg["tracking"]["uri"]
    out = cli("run", str(tmp_path / "detect.yaml"), "--json", env={**WIDE, "PREFECT_API_URL": prefect_api})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["promotion"]["metric"] == "map", result["promotion"]
    assert {"map", "map_50", "map_75", "mar_100"} <= set(result["test_metrics"]), result["test_metrics"]
    assert all(0 <= result["test_metrics"][k] <= 1 for k in ("map", "map_50")), result["test_metrics"]
    assert list(result["val_metrics"]) == ["map", "map_50"]

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/tiny-detect/1")
    paths = [str(data / "images" / f"test-{i}.png") for i in range(3)]
    found = model.predict(paths)
    assert len(found) == 3
    for p in found:
        assert set(p) == {"boxes", "labels", "scores"} and len(p["boxes"]) == len(p["labels"]) == len(p["scores"])
        assert all(len(b) == 4 for b in p["boxes"]) and set(p["labels"]) <= {"square", "disc"}
        assert all(0.3 <= s <= 1 for s in p["scores"])  # the package's threshold
    json.dumps(found)

    predicted = cli("predict", "models:/tiny-detect/1", paths[0], "--json", "--tracking-uri", uri, env=WIDE)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (row,) = json.loads(predicted.stdout)["predictions"]
    assert row["input"] == paths[0] and row["prediction"] == found[0], row
    ev = cli("evaluate", "models:/tiny-detect/1", "--data", str(data), "--json", "--tracking-uri", uri, env=WIDE)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout)["metrics"]["map"] == pytest.approx(result["test_metrics"]["map"]), ev.stdout
