"""A semantic-segmentation model registered by `tlops run` (frozen packaged EfficientNet-Lite0 + LR-ASPP head, two epochs
on the tiny shapes set, gated on mIoU) segments image paths in a fresh Python process through `mlflow.pyfunc.load_model`
alone (the model's own copy of tlops): per image a run-length encoded mask of the image's size over the dataset's
labels. The numbers are a two-epoch model's: the test checks the shape of what comes back, bench/RESULTS.md the
quality. (tests/flow/test_detection.py runs the detection counterpart in-process.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import yaml

from tests.cli import cli
from tests.helpers import make_segmentation_dataset, tiny_config

SCRIPT = textwrap.dedent("""
    import json, sys
    import mlflow
    job = json.loads(sys.stdin.read())
    mlflow.set_tracking_uri(job["uri"])
    model = mlflow.pyfunc.load_model(job["model"])
    print(json.dumps({"tlops": __import__("tlops").__file__, "masks": model.predict(job["paths"])}))
""")


def test_a_registered_segmentation_model_segments_in_a_fresh_process(tmp_path, tiny_bert, prefect_api):
    data = make_segmentation_dataset(tmp_path / "data")
    cfg = tiny_config(tmp_path, data, tiny_bert, registry__metric="miou", registry__model_name="tiny-segment",
                      backbone__name="packaged:efficientnet-lite0", backbone__image_size=64, backbone__batch_size=8,
                      strategy={"name": "linear_probe", "head": "mlp", "epochs": 2, "batch_size": 4, "lr": 0.003})
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump(cfg))
    out = cli("run", str(tmp_path / "seg.yaml"), "--json", env={**os.environ, "PREFECT_API_URL": prefect_api})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["promotion"]["metric"] == "miou" and set(result["test_metrics"]) == {"miou", "pixel_accuracy"}, result
    assert 0 <= result["test_metrics"]["miou"] <= 1 and list(result["val_metrics"]) == ["miou", "pixel_accuracy"], result

    paths = [str(data / "images" / f"test-{i}.png") for i in range(2)]
    job = {"uri": cfg["tracking"]["uri"], "model": "models:/tiny-segment@champion", "paths": paths}
    fresh = subprocess.run([sys.executable, "-c", SCRIPT], input=json.dumps(job), capture_output=True, text=True, timeout=600,
                           cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    got = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert "artifacts/code/tlops" in got["tlops"].replace(os.sep, "/"), got["tlops"]  # the model's shipped code
    from tlops.task_types.semantic_segmentation import decode_runs

    assert len(got["masks"]) == 2
    for m in got["masks"]:
        assert m["size"] == [64, 64] and m["labels"] == ["background", "square", "disc"], m["size"]
        mask = decode_runs(m["runs"], m["size"])
        assert sum(n for _, n in m["runs"]) == 64 * 64 and int(mask.max()) <= 2
        assert {m["labels"][v]: int((mask == v).sum()) for v in set(mask.reshape(-1).tolist())} == m["pixels"]
