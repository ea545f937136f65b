"""Object detection and semantic segmentation end to end: the session zoo's `tiny-detect` and `tiny-segment` (tests/zoo.py:
the training flow on tiny sets of squares and discs on noise, 64 px, frozen packaged EfficientNet-Lite0, two epochs)
are registered and gated on mAP / mIoU; the detector's pyfunc takes image paths and returns boxes [x, y, w, h] with
labels and scores; `tlops predict` prints them; `tlops evaluate` scores the COCO folder as the run scored its test split.
The numbers are those of two-epoch models on 8 images: the tests check what is returned, not how good it is
(bench/RESULTS.md has that). The same models answer in a fresh process in tests/system/test_fresh_process.py."""

from __future__ import annotations

import json
import os

import mlflow
import pytest

from tests.cli import cli

WIDE = {**os.environ, "COLUMNS": "250"}


def test_detection_run_registers_a_box_predicting_model_gated_on_map(zoo):
    reg = zoo.detection
    result, data, uri = reg.results[0], reg.data, reg.uri
    assert result.promotion.metric == "map", result.promotion
    assert {"map", "map_50", "map_75", "mar_100"} <= set(result.test_metrics), result.test_metrics
    assert all(0 <= result.test_metrics[k] <= 1 for k in ("map", "map_50")), result.test_metrics
    assert list(result.val_metrics) == ["map", "map_50"]

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(reg.model_uri("1"))
    paths = [str(data / "images" / f"test-{i}.png") for i in range(3)]
    found = model.predict(paths)
    assert len(found) == 3
    for p in found:
        assert set(p) == {"boxes", "labels", "scores"} and len(p["boxes"]) == len(p["labels"]) == len(p["scores"])
        assert all(len(b) == 4 for b in p["boxes"]) and set(p["labels"]) <= {"square", "disc"}
        assert all(0.3 <= s <= 1 for s in p["scores"])  # the package's threshold
    json.dumps(found)

    predicted = cli("predict", reg.model_uri("1"), paths[0], "--json", "--tracking-uri", uri, env=WIDE)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (row,) = json.loads(predicted.stdout)["predictions"]
    assert row["input"] == paths[0] and row["prediction"] == found[0], row
    ev = cli("evaluate", reg.model_uri("1"), "--data", str(data), "--json", "--tracking-uri", uri, env=WIDE)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout)["metrics"]["map"] == pytest.approx(result.test_metrics["map"]), ev.stdout


def test_a_detector_takes_a_score_threshold_and_draws_its_boxes(zoo, tmp_path):
    """The pyfunc's `score_threshold` param (0: every candidate the detector keeps; out of 0..1: refused by name), `tlops
    predict --score-threshold` and `--out DIR` (each image with its boxes drawn, in input order), and the run's best epoch
    and picture of predicted boxes."""
    from PIL import Image

    from tlops.errors import DataError

    reg = zoo.detection
    mlflow.set_tracking_uri(reg.uri)
    model = mlflow.pyfunc.load_model(reg.model_uri("1"))
    paths = [str(reg.data / "images" / f"test-{i}.png") for i in range(2)]
    every = model.predict(paths, params={"score_threshold": 0.0})
    default = model.predict(paths)
    assert all(len(e["scores"]) >= len(d["scores"]) for e, d in zip(every, default)) and sum(len(e["scores"]) for e in every) > 0, every
    assert [[s for s in e["scores"] if s >= 0.3] for e in every] == [d["scores"] for d in default]  # the default is the package's 0.3
    with pytest.raises(DataError, match=r"score_threshold param is 1.5; give a number from 0 to 1"):
        model.predict(paths, params={"score_threshold": 1.5})

    out = cli("predict", reg.model_uri("1"), *paths, "--score-threshold", "0", "--out", str(tmp_path / "drawn"), "--json",
              "--tracking-uri", reg.uri, env=WIDE)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [r["prediction"] for r in json.loads(out.stdout)["predictions"]] == every
    drawn = sorted((tmp_path / "drawn").iterdir())
    assert [p.name for p in drawn] == ["001-test-0.png", "002-test-1.png"], drawn
    for p, src in zip(drawn, paths):
        with Image.open(p) as im, Image.open(src) as orig:
            assert im.size == orig.size and im.convert("RGB").tobytes() != orig.convert("RGB").tobytes()  # boxes drawn on it

    result = reg.results[0]
    assert result.best_epoch is not None and 0 <= result.best_epoch < 2, result.best_epoch  # the shared loop's best epoch
    from mlflow.tracking import MlflowClient

    plots = [a.path for a in MlflowClient(reg.uri).list_artifacts(result.run_id, "plots")]
    assert any(p.endswith("test_predictions.png") for p in plots), plots


def test_segmentation_run_registers_a_mask_predicting_model_gated_on_miou(zoo, tmp_path):
    """The run (gated on mIoU, its best epoch from the shared loop, a picture of test masks among its plots) and `tlops
    predict --out DIR`: each image with its predicted mask blended in where the mask is not background, as it was."""
    import numpy as np
    from mlflow.tracking import MlflowClient
    from PIL import Image

    from tlops.task_types.semantic_segmentation import decode_runs

    reg = zoo.segmentation
    result = reg.results[0]
    assert result.promotion.metric == "miou" and set(result.test_metrics) == {"miou", "pixel_accuracy"}, result
    assert 0 <= result.test_metrics["miou"] <= 1 and list(result.val_metrics) == ["miou", "pixel_accuracy"], result
    assert result.best_epoch is not None and 0 <= result.best_epoch < 2, result.best_epoch
    plots = [a.path for a in MlflowClient(reg.uri).list_artifacts(result.run_id, "plots")]
    assert any(p.endswith("test_predictions.png") for p in plots), plots

    paths = [str(reg.data / "images" / f"test-{i}.png") for i in range(2)]
    out = cli("predict", reg.model_uri("1"), *paths, "--out", str(tmp_path / "drawn"), "--json", "--tracking-uri", reg.uri, env=WIDE)
    assert out.returncode == 0, out.stderr[-2000:]
    for i, (row, src) in enumerate(zip(json.loads(out.stdout)["predictions"], paths)):
        m = row["prediction"]
        mask = decode_runs(m["runs"], m["size"])
        with Image.open(tmp_path / "drawn" / f"{i + 1:03d}-test-{i}.png") as im, Image.open(src) as orig:
            changed = np.any(np.asarray(im.convert("RGB")) != np.asarray(orig.convert("RGB")), axis=-1)
        assert np.array_equal(changed, mask != 0), i  # blended in exactly where the mask is not background
    wrong = cli("predict", zoo.detection.model_uri("1"), paths[0], "--out", str(tmp_path / "x"), "--score-threshold", "2",
                "--tracking-uri", zoo.detection.uri, env=WIDE)
    assert wrong.returncode != 0 and "score_threshold param is 2.0; give a number from 0 to 1" in wrong.stderr, wrong.stderr[-2000:]
