"""The `onnx:` backbone on a real model (issue 31): the packaged EfficientNet-Lite0 exported with torch.onnx.export
(its pooled features, ImageNet weights) runs through ONNX Runtime with a sidecar declaring the weights' normalisation;
its features are compared with the torch backbone's on the image demo's test images, and the whole pipeline
(validate -> features -> train -> evaluate -> package, `tlops.pipeline.run_core`: no Prefect or MLflow) runs on it with
the demo configs' strategies: the linear probe on Fashion-MNIST; with --fewshot, ProtoNet on the few-shot characters (1 meta-epoch of 50 episodes,
600 test episodes at 5 shots: the machine is shared); with --domain-adapt, the demo's domain adaptation (DANN on the
frozen features, fonts -> handwritten digits; --adabn: with method adabn); with --maml, MAML on the few-shot characters (cut as ProtoNet's); with
--text, all-MiniLM-L6-v2 exported by tlops.backbones.onnx_model.export_hf_text (token ids + attention mask in, the
last hidden states out; the sidecar names its tokenizer folder): features vs the `hf:` backbone's on 256 test texts of
the text demo and the text demo's linear probe both ways; with --only, those asked for without the image probe. The torch backbone's run of the same config is the reference. The export
goes to bench/out/onnx/ and is kept (the same file, so the feature cache serves a second bench run).

  python -m bench.onnx_backbone [--fewshot] [--domain-adapt] [--adabn] [--maml] [--text] [--only] [--onnx-only] [--name NAME]

(--name: the JSON under bench/out/, default onnx_backbone; two runs at once need two names)

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

    path = folder / "efficientnet_lite0.onnx"
    if path.is_file() and path.with_suffix(".yaml").is_file():
        return path, 0.0
    folder.mkdir(parents=True, exist_ok=True)
    net = load_backbone("packaged:efficientnet-lite0", image_size=SIZE).model
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


TEXT_MODEL = "hf:sentence-transformers/all-MiniLM-L6-v2"


def text_check(folder: Path) -> dict:
    """MiniLM exported (once: kept in `folder`) and its onnx: features vs the hf: backbone's on 256 test texts."""
    from tlops.backbones import load_backbone
    from tlops.backbones.hf import resolve_folder
    from tlops.backbones.onnx_model import export_hf_text
    from tlops.data import load_dataset
    from tlops.features import embed_all

    path, t0 = folder / "model.onnx", time.perf_counter()
    if not path.is_file():
        export_hf_text(resolve_folder(TEXT_MODEL.split(":", 1)[1])[0], folder)
    export_s = time.perf_counter() - t0
    texts = load_dataset(REPO / "data" / "text_wordnet").inputs("test")[:256]
    ref = embed_all(load_backbone(TEXT_MODEL, max_length=128), texts)
    got = embed_all(load_backbone(f"onnx:{path}", max_length=128), texts)
    return {"path": str(path), "export_seconds": export_s, "texts_compared": len(texts), "max_abs_diff": float(np.abs(got - ref).max()),
            "feature_scale": float(np.abs(ref).max())}


def run(config: str, backbone: str, work: Path, label: str, **strategy) -> dict:
    from tlops.config import load_config
    from tlops.pipeline import run_core

    cfg = load_config(REPO / "configs" / config, [f"backbone.name={backbone}", *(f"strategy.{k}={v}" for k, v in strategy.items())])
    cfg.features.cache_dir = str(REPO / ".tlops" / "cache")
    cfg.execution.work_dir = str(work / "runs")
    t0 = time.perf_counter()
    core = run_core(cfg, work / backbone.split(":")[0] / label)
    return {"test": core.evaluation.metrics, "val": core.train.val_metrics, "seconds": time.perf_counter() - t0,
            "cache_misses": core.features.cache.misses}


def main(argv: list[str]) -> None:
    from tlops.backbones import load_backbone
    from tlops.data import load_dataset
    from tlops.features import embed_all

    work = Path(tempfile.mkdtemp(prefix="tlops-bench-onnx-"))
    path, export_s = export(OUT / "onnx")
    items = load_dataset(REPO / "data" / "image_fashion_mnist").inputs("test")[:128]
    ref = embed_all(load_backbone("packaged:efficientnet-lite0", image_size=SIZE), items)
    got = embed_all(load_backbone(f"onnx:{path}"), items)
    diff = float(np.abs(got - ref).max())
    res = {"export_seconds": export_s, "images_compared": len(items), "max_abs_diff": diff, "feature_scale": float(np.abs(ref).max()),
           "runs": {}}
    out = argv[argv.index("--name") + 1] if "--name" in argv else "onnx_backbone"
    if (OUT / f"{out}.json").is_file():  # earlier runs of other configs stay in the file (a run here replaces its own)
        res["runs"] = json.loads((OUT / f"{out}.json").read_text()).get("runs", {})
    small = {"meta_epochs": 1, "episodes_per_epoch": 50, "val_episodes": 50, "eval_shots": "[5]"}
    jobs = [] if "--only" in argv else [("image_linear_probe.yaml", {})]
    if "--fewshot" in argv:  # small: 2 meta-epochs and 600 test episodes at 1, 2, 5 and 10 shots took over 15 min here at load ~16
        jobs.append(("image_fewshot.yaml", small))
    if "--domain-adapt" in argv:  # the demo config as shipped: DANN on the frozen features, trade_off 0.3 and 1.0, 20 epochs
        jobs.append(("image_domain_adapt.yaml", {"method": "dann"}))  # the shipped config now says adabn (lead, session 12)
    if "--adabn" in argv:  # the shipped config's method now: per-domain standardisation of the frozen features, no adversary
        jobs.append(("image_domain_adapt.yaml", {"method": "adabn"}))
    if "--maml" in argv:  # MAML (second order, 1 inner step) on the characters, cut as ProtoNet's run
        jobs.append(("image_fewshot.yaml", {"name": "maml", **small}))
    if "--text" in argv:
        res["text"] = text_check(OUT / "onnx" / "minilm")
        save(out, res)
        jobs.append(("text_linear_probe.yaml", {}))
    for config, strategy in jobs:
        pair = (TEXT_MODEL, f"onnx:{res['text']['path']}") if config.startswith("text_") else ("packaged:efficientnet-lite0", f"onnx:{path}")
        for name in pair[1:] if "--onnx-only" in argv else pair:  # --onnx-only: the torch backbone's run is in the JSON already
            label = config + "".join(f"[{strategy[k]}]" for k in ("name", "method") if k in strategy)
            res["runs"][f"{label} {name.split(':')[0]}"] = run(config, name, work, label, **strategy)
            save(out, res)  # after each run: a long one stopped still leaves the earlier ones
    report(res)


def report(r: dict) -> None:
    print(f"EfficientNet-Lite0 exported by torch.onnx.export in {r['export_seconds']:.1f} s; on {r['images_compared']} test images "
          f"the onnx: backbone's features differ from the torch backbone's by at most {r['max_abs_diff']:.2e} "
          f"(features up to {r['feature_scale']:.1f})\n")
    if "text" in r:
        t = r["text"]
        print(f"all-MiniLM-L6-v2 exported by export_hf_text in {t['export_seconds']:.1f} s; on {t['texts_compared']} test texts its "
              f"onnx: features differ from the hf: backbone's by at most {t['max_abs_diff']:.2e} (features up to {t['feature_scale']:.2f})\n")
    print("| config | backbone | val | test | seconds (rows embedded) |")
    print("|---|---|---|---|---|")
    for key, v in r["runs"].items():
        config, kind = key.split()
        val = ", ".join(f"{k} {x:.4f}" for k, x in v["val"].items())
        test = ", ".join(f"{k} {x:.4f}" for k, x in list(v["test"].items())[:4])
        print(f"| {config} | {kind} | {val} | {test} | {v['seconds']:.0f} ({v['cache_misses']}) |")


if __name__ == "__main__":
    if "--report" in sys.argv:
        name = sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else "onnx_backbone"
        report(json.loads((OUT / f"{name}.json").read_text()))
    else:
        main(sys.argv[1:])
