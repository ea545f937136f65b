"""The `onnx:` backbone on a real model (issue 31): the packaged EfficientNet-Lite0 exported with torch.onnx.export
(its pooled features, ImageNet weights) runs through ONNX Runtime with a sidecar declaring the weights' normalisation;
its features are compared with the torch backbone's on the image demo's test images, and the whole pipeline
(validate -> features -> train -> evaluate -> package, `tlops.pipeline.run_core`: no Prefect or MLflow) runs on it with
the demo configs' strategies: the linear probe on Fashion-MNIST and, with --fewshot, ProtoNet on the few-shot characters
(1 meta-epoch of 50 episodes, 600 test episodes at 5 shots: the machine is shared). The torch backbone's run of the same config is the reference.

  python -m bench.onnx_backbone [--fewshot]

writes bench/out/onnx_backbone.json and prints the Markdown of bench/RESULTS.md."""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.common import OUT, REPO, save

SIZE = 64  # the image demo configs' image_size


class _Pooled(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def export(folder: Path) -> tuple[Path, float]:
    from tlops.backbones import load_backbone

    net = load_backbone("packaged:efficientnet-lite0", image_size=SIZE).model
    path = folder / "efficientnet_lite0.onnx"
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Pooled(net).eval(), (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=["images"],
                          output_names=["features"], dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, dynamo=False)
    # the weights' own normalisation, (x*255 - 127) / 128, as mean/std on pixels in [0, 1]
    (folder / "efficientnet_lite0.yaml").write_text(f"modality: image\nlayout: NCHW\nimage_size: {SIZE}\n"
                                                    f"mean: [{127 / 255!r}, {127 / 255!r}, {127 / 255!r}]\n"
                                                    f"std: [{128 / 255!r}, {128 / 255!r}, {128 / 255!r}]\n")
    return path, time.perf_counter() - t0


def run(config: str, backbone: str, work: Path, **strategy) -> dict:
    from tlops.config import load_config
    from tlops.pipeline import run_core

    cfg = load_config(REPO / "configs" / config, [f"backbone.name={backbone}", *(f"strategy.{k}={v}" for k, v in strategy.items())])
    cfg.features.cache_dir = str(REPO / ".tlops" / "cache")
    cfg.execution.work_dir = str(work / "runs")
    t0 = time.perf_counter()
    core = run_core(cfg, work / backbone.split(":")[0] / config)
    return {"test": core.evaluation.metrics, "val": core.train.val_metrics, "seconds": time.perf_counter() - t0,
            "cache_misses": core.features.cache.misses}


def main(argv: list[str]) -> None:
    from tlops.backbones import load_backbone
    from tlops.data import load_dataset
    from tlops.features import embed_all

    work = Path(tempfile.mkdtemp(prefix="tlops-bench-onnx-"))
    path, export_s = export(work)
    items = load_dataset(REPO / "data" / "image_fashion_mnist").inputs("test")[:128]
    ref = embed_all(load_backbone("packaged:efficientnet-lite0", image_size=SIZE), items)
    got = embed_all(load_backbone(f"onnx:{path}"), items)
    diff = float(np.abs(got - ref).max())
    res = {"export_seconds": export_s, "images_compared": len(items), "max_abs_diff": diff, "feature_scale": float(np.abs(ref).max()),
           "runs": {}}
    jobs = [("image_linear_probe.yaml", {})]
    if "--fewshot" in argv:  # small: 2 meta-epochs and 600 test episodes at 1, 2, 5 and 10 shots took over 15 min here at load ~16
        jobs.append(("image_fewshot.yaml", {"meta_epochs": 1, "episodes_per_epoch": 50, "val_episodes": 50,
                                            "eval_shots": "[5]"}))
    for config, strategy in jobs:
        for name in ("packaged:efficientnet-lite0", f"onnx:{path}"):
            res["runs"][f"{config} {name.split(':')[0]}"] = run(config, name, work, **strategy)
            save("onnx_backbone", res)  # after each run: a long one stopped still leaves the earlier ones
    report(res)


def report(r: dict) -> None:
    print(f"EfficientNet-Lite0 exported by torch.onnx.export in {r['export_seconds']:.1f} s; on {r['images_compared']} test images "
          f"the onnx: backbone's features differ from the torch backbone's by at most {r['max_abs_diff']:.2e} "
          f"(features up to {r['feature_scale']:.1f})\n")
    print("| config | backbone | val | test | seconds (rows embedded) |")
    print("|---|---|---|---|---|")
    for key, v in r["runs"].items():
        config, kind = key.split()
        val = ", ".join(f"{k} {x:.4f}" for k, x in v["val"].items())
        test = ", ".join(f"{k} {x:.4f}" for k, x in list(v["test"].items())[:3])
        print(f"| {config} | {kind} | {val} | {test} | {v['seconds']:.0f} ({v['cache_misses']}) |")


if __name__ == "__main__":
    if "--report" in sys.argv:
        report(json.loads((OUT / "onnx_backbone.json").read_text()))
    else:
        main(sys.argv[1:])
