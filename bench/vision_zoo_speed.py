"""Channels-last and folded BatchNorm for the `timm:` / `torchvision:` image backbones (issue 33): tlops `embed_all`
vs a bare loop of the same model in contiguous NCHW, each change measured alone, interleaved over rounds; and one
fine-tuning epoch (tlops `finetune`) channels-last vs NCHW.

    .venv/bin/python -m bench.vision_zoo_speed [--models torchvision:resnet18,torchvision:mobilenet_v3_large]
        [--items 192] [--repeat 3] [--threads 1] [--size 64] [--finetune-items 64]

Weights are RANDOM (no timm/torchvision pretrained file is on this machine or reachable offline): each model is
built with weights=None under seed 0, its BatchNorm running statistics randomised (mean U(-0.1, 0.1), var U(0.5, 1.5),
so folding them is not a no-op), and saved as a local checkpoint loaded by `<zoo>:<model>@file`. Throughput does not
depend on the weights' values; the feature differences are measured on these weights.

The bare loop is the one torchvision's documentation shows: the same architecture and weights in a fresh model
(default NCHW memory), PIL decode, the model's eval transform per image (here tlops's own transform object, the same
resize/crop/normalise), `torch.stack` (contiguous NCHW), forward under inference_mode. Embedding variants are
interleaved batch by batch within each round (the machine is shared: load moves within seconds); the fine-tuning
epochs alternate run by run.
Variants: tlops before (contiguous NCHW, the module as loaded), channels-last weights + batches only, the folded copy
only (NCHW), both (the default). Images: the Fashion-MNIST demo (data/image_fashion_mnist), the first `--items`."""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import REPO, machine, save
from bench.matmul_peak import flops, mm_gflops
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.features import embed_all

BATCH = 64


def random_checkpoint(spec: str, folder: Path) -> str:
    """`<zoo>:<model>@<file>` for a random-weights checkpoint of the model (BatchNorm statistics randomised)."""
    zoo, name = spec.split(":", 1)
    torch.manual_seed(0)
    if zoo == "timm":
        import timm

        net = timm.create_model(name, pretrained=False)
    else:
        import torchvision

        net = torchvision.models.get_model(name, weights=None)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    from safetensors.torch import save_file

    path = folder / f"{zoo}-{name}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return f"{spec}@{path}"


def variant(spec: str, size: int, channels_last: bool, fold: bool):
    b = load_backbone(spec, image_size=size)
    b.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    b.fold_for_inference = fold
    b.model.to(memory_format=b.memory_format)
    return b


def bare_model(b) -> torch.nn.Module:
    """A fresh model of the same architecture holding the same weights, as loaded: contiguous NCHW."""
    m = copy.deepcopy(b.model).to(memory_format=torch.contiguous_format)
    assert all(p.is_contiguous() for p in m.parameters())
    return m.eval()


def bare_loop(model: torch.nn.Module, transform, paths: list[str], bs: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for s in range(0, len(paths), bs):
            x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[s : s + bs]])
            out.append(model(x).flatten(1).numpy())
    return np.concatenate(out)


def interleaved(variants: dict, chunks: list[list[str]], repeat: int) -> tuple[dict[str, list[float]], dict]:
    """Seconds per round of each variant over all chunks, interleaved batch by batch (every variant runs chunk i, in
    an order rotated per chunk, before any runs chunk i + 1), so load changes on a shared machine fall on all variants
    alike; and each variant's output of the last round."""
    names = list(variants)
    times: dict[str, list[float]] = {k: [0.0] * repeat for k in names}
    outs: dict[str, list] = {}
    for r in range(repeat):
        outs = {k: [] for k in names}
        for i, chunk in enumerate(chunks):
            for name in names[i % len(names):] + names[: i % len(names)]:
                t = time.perf_counter()
                outs[name].append(variants[name](chunk))
                times[name][r] += time.perf_counter() - t
    return times, {k: np.concatenate(v) for k, v in outs.items()}


def embedding(spec: str, paths: list[str], size: int, repeat: int) -> dict:
    default = load_backbone(spec, image_size=size)
    before, cl_only, fold_only = (variant(spec, size, c, f) for c, f in ((False, False), (True, False), (False, True)))
    bare = bare_model(default)
    variants = {
        "bare_loop": lambda chunk: bare_loop(bare, default.transform, chunk, BATCH),
        "tlops_before": lambda chunk: embed_all(before, chunk, batch_size=BATCH),
        "tlops_channels_last_only": lambda chunk: embed_all(cl_only, chunk, batch_size=BATCH),
        "tlops_folded_only": lambda chunk: embed_all(fold_only, chunk, batch_size=BATCH),
        "tlops_default": lambda chunk: embed_all(default, chunk, batch_size=BATCH),
    }
    chunks = [paths[s : s + BATCH] for s in range(0, len(paths), BATCH)]
    interleaved(variants, chunks[:1], 1)  # warm-up: oneDNN kernels per layer shape and layout, the folded copies
    times, outs = interleaved(variants, chunks, repeat)
    x = default.collate(paths[:BATCH])
    with torch.inference_mode():
        fwd_flops = flops(lambda: bare(x.contiguous())) / BATCH
    n = len(paths)
    rows = {}
    for name, ts in times.items():
        ratios = [tb / t for tb, t in zip(times["bare_loop"], ts)]
        rows[name] = {"items_per_s_runs": [round(n / t, 1) for t in ts], "ratio_vs_bare_per_round": [round(r, 3) for r in ratios],
                      "ratio_vs_bare_median": round(statistics.median(ratios), 3),
                      "max_abs_diff_vs_bare": float(np.abs(outs[name] - outs["bare_loop"]).max()),
                      "gflops_best": fwd_flops * n / min(ts) / 1e9}
    folded = default._derived[1] if default._derived else None
    return {"memory_format": str(default.memory_format), "compute_version": default.compute_version,
            "batchnorms": sum(isinstance(m, torch.nn.BatchNorm2d) for m in default.model.modules()),
            "batchnorms_left_in_folded_copy": None if folded is None else sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()),
            "max_abs_feature": float(np.abs(outs["bare_loop"]).max()), "forward_gflop_per_image": fwd_flops / 1e9, "variants": rows}


def finetune_epoch(spec: str, ds, n: int, size: int, repeat: int) -> dict:
    """One `finetune` epoch (batch 32, augmentation on, BatchNorm statistics frozen) on `n` train images: channels-last
    (the default) vs contiguous NCHW, interleaved; and the default's embedding after the epoch vs its model run directly."""
    from tlops.modules.heads import ProbeHead
    from tlops.strategies.finetune import FinetuneConfig, finetune

    items, y = ds.inputs("train")[:n], ds.label_ids("train")[:n]
    cfg = FinetuneConfig(epochs=1, batch_size=32, patience=2)
    last = {}

    def run(channels_last: bool):
        b = variant(spec, size, channels_last, channels_last)
        torch.manual_seed(0)
        r = finetune(b, items, y, ds.inputs("val")[:8], ds.label_ids("val")[:8], ProbeHead(b.num_features, len(ds.labels)), cfg, seed=0)
        last[channels_last] = b
        return r.train_samples / r.train_seconds

    runs = {"channels_last": [], "nchw_before": []}
    run(True)  # warm-up
    for _ in range(repeat):
        runs["channels_last"].append(run(True))
        runs["nchw_before"].append(run(False))
    b = last[True]
    b.model.eval()
    x = b.collate(items[:16])
    with torch.inference_mode():
        served = b.embed(x)  # through the folded copy, rebuilt from the fine-tuned weights
        direct = copy.deepcopy(b.model).to(memory_format=torch.contiguous_format)(x.contiguous()).flatten(1)
    return {"train_items": n, "samples_per_s_runs": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
            "ratio_channels_last_vs_nchw_per_round": [round(a / c, 3) for a, c in zip(runs["channels_last"], runs["nchw_before"])],
            "weights_channels_last_after": all(p.is_contiguous(memory_format=torch.channels_last) for p in b.model.parameters() if p.dim() == 4),
            "fine_tuned_embed_max_abs_diff_vs_nchw_model": float((served - direct).abs().max())}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="torchvision:resnet18,torchvision:mobilenet_v3_large")
    ap.add_argument("--items", type=int, default=192)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--finetune-items", type=int, default=64, help="0: no fine-tuning epoch")
    ap.add_argument("--out", default="vision_zoo_speed")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(REPO / "data" / "image_fashion_mnist")
    paths = [p for s in ("train", "val", "test") for p in ds.inputs(s)][: args.items]
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    peaks = [mm_gflops()]  # measured before, between and after the models; the best is the peak
    result = {"dataset": "fashion-mnist demo", "weights": "random (seed 0, BatchNorm statistics randomised)", "image_size": args.size,
              "batch": BATCH, "items": len(paths), "repeat": args.repeat, "machine": machine(), "load_before": load_before, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models.split(","):
            ck = random_checkpoint(spec, Path(tmp))
            row = embedding(ck, paths, args.size, args.repeat)
            if args.finetune_items:
                row["finetune_epoch"] = finetune_epoch(ck, ds, args.finetune_items, args.size, args.repeat)
            result["models"][spec] = row
            peaks.append(mm_gflops())
    peak = result["mm_peak_fp32_gflops"] = max(peaks)
    result["mm_gflops_measured"] = [round(p, 1) for p in peaks]
    for row in result["models"].values():
        for v in row["variants"].values():
            v["pct_of_mm_peak"] = round(100 * v["gflops_best"] / peak, 1)
    with open("/proc/loadavg") as f:
        result["load_after"] = f.read().split()[:3]
    return save(args.out, result)


if __name__ == "__main__":
    main()
