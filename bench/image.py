"""Images (Fashion-MNIST demo, same splits): pretrained EfficientNet-Lite0 probe vs the same architecture
with random weights vs raw pixels + logistic regression; and the speed of tlops `embed_all` vs a bare loop
(issue 33), each change measured alone, interleaved over repeats, against this CPU's `torch.mm` peak.

    .venv/bin/python -m bench.image [--skip-quality] [--items 256] [--repeat 3] [--threads N] [--finetune-items 128]

The bare loop is what a user writes: the weights loaded into a fresh EfficientNet (default NCHW weights), PIL
decode, `np.stack` + permute (which, by accident, hands the CNN a channels-last input), forward, pool.
Speed variants, all on the same images, batch size and threads: tlops as before issue 33 (contiguous NCHW, the
module as loaded), channels-last alone, the folded inference copy alone (BatchNorm and padding inside the
convolutions), both (the default), the default + one DataLoader worker decoding ahead, the default + bf16
autocast. Target: tlops (default) >= 1.2x the bare loop."""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
from PIL import Image

from bench.common import REPO, machine, pretrained_beats_all, save
from bench.matmul_peak import bf16_support, flops, mm_gflops
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.evaluate import classification_metrics
from tlops.features import embed_all
from tlops.strategies.linear_probe import LinearProbeConfig
from tlops.task_types import train_probe

CS = (0.03, 0.1, 0.3, 1.0)
SIZE = 64
BATCH = 64


def probe(x: dict, y: dict, labels: list[str]) -> dict:
    best = max((train_probe(x["train"], y["train"], x["val"], y["val"], len(labels), LinearProbeConfig(C=c)) for c in CS),
               key=lambda r: r.val_metrics["macro_f1"])
    with torch.inference_mode():
        pred = best.head(torch.from_numpy(x["test"])).argmax(1).numpy()
    return classification_metrics([labels[i] for i in y["test"]], [labels[i] for i in pred], labels)


def bare_model(backbone) -> torch.nn.Module:
    """The weights loaded into a fresh EfficientNet, as a user would: default (NCHW) parameter memory."""
    from efficientnet_lite_pytorch import EfficientNet

    m = EfficientNet.from_name("efficientnet-lite0", image_size=SIZE)
    m.load_state_dict({k: v.contiguous() for k, v in backbone.model.state_dict().items()})
    return m.eval()


def bare_loop(model: torch.nn.Module, paths: list[str], bs: int) -> np.ndarray:
    """The plain way: PIL decode, stack, normalise, forward, pool — no tlops machinery."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(paths), bs):
            arrs = [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) for p in paths[s : s + bs]]
            x = (torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2) - 127.0) / 128.0
            out.append(model.extract_features(x).mean(dim=(2, 3)).numpy())
    return np.concatenate(out)


def bf16_embed(backbone, paths: list[str], **kw) -> np.ndarray:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return embed_all(backbone, paths, **kw)


def quality(ds, pre) -> dict:
    labels = ds.labels
    y = {s: ds.label_ids(s) for s in ("train", "val", "test")}
    feats = {s: embed_all(pre, ds.inputs(s)) for s in y}
    bf = {s: bf16_embed(pre, ds.inputs(s)) for s in y}
    rand = load_backbone("packaged:efficientnet-lite0", image_size=SIZE)
    torch.manual_seed(0)
    from efficientnet_lite_pytorch import EfficientNet

    rand._model = EfficientNet.from_name("efficientnet-lite0", image_size=SIZE).to(memory_format=rand.memory_format).eval()  # random init
    rfeats = {s: embed_all(rand, ds.inputs(s)) for s in y}
    pixels = {s: np.stack([np.asarray(Image.open(p), dtype=np.float32).ravel() / 255.0 for p in ds.inputs(s)]) for s in y}
    results = {"pretrained_efficientnet_lite0_probe": probe(feats, y, labels),
               "random_weights_efficientnet_lite0_probe": probe(rfeats, y, labels),
               "raw_pixels_logreg": probe(pixels, y, labels)}
    a, b = np.concatenate(list(feats.values())), np.concatenate(list(bf.values()))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    bf16_check = {"probe_on_bf16_features": probe(bf, y, labels), "cosine_to_fp32_min": float(cos.min()),
                  "cosine_to_fp32_mean": float(cos.mean()), "max_abs_diff": float(np.abs(a - b).max()),
                  "max_abs_fp32_feature": float(np.abs(a).max())}
    return {"rows": {s: len(v) for s, v in y.items()}, "results": results, "pretrained_beats_both": pretrained_beats_all(results),
            "bf16_accuracy_check": bf16_check}


def interleaved(variants: dict, repeat: int) -> dict[str, list[float]]:
    """Seconds per run of each variant, round-robin over `repeat` rounds (each already warmed up), and its output."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    outs = {}
    for _ in range(repeat):
        for name, fn in variants.items():
            t = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
    return times, outs


def speed(ds, pre, n_items: int, repeat: int, ft_items: int) -> dict:
    paths = [p for s in ("train", "val", "test") for p in ds.inputs(s)][:n_items]
    def variant(channels_last: bool, fold: bool):
        b = load_backbone("packaged:efficientnet-lite0", image_size=SIZE)
        b.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        b.fold_for_inference = fold
        return b

    before, cl_only, fold_only = variant(False, False), variant(True, False), variant(False, True)  # each change alone
    bare = bare_model(pre)
    variants = {
        "bare_loop": lambda: bare_loop(bare, paths, BATCH),
        "tlops_before": lambda: embed_all(before, paths, batch_size=BATCH),
        "tlops_channels_last_only": lambda: embed_all(cl_only, paths, batch_size=BATCH),
        "tlops_folded_only": lambda: embed_all(fold_only, paths, batch_size=BATCH),
        "tlops_default": lambda: embed_all(pre, paths, batch_size=BATCH),
        "tlops_default_1_worker": lambda: embed_all(pre, paths, batch_size=BATCH, workers=1),
        "tlops_default_bf16": lambda: bf16_embed(pre, paths, batch_size=BATCH),
    }
    for fn in variants.values():  # warm-up: oneDNN kernels per layer shape and layout, the folded copies
        fn()
    peak_before = {"fp32": mm_gflops(), "bf16": mm_gflops(dtype=torch.bfloat16)}
    times, outs = interleaved(variants, repeat)
    peak_after = {"fp32": mm_gflops(), "bf16": mm_gflops(dtype=torch.bfloat16)}
    peak = {k: max(peak_before[k], peak_after[k]) for k in peak_before}
    x = pre.collate(paths[:BATCH])
    with torch.inference_mode():
        fwd_flops = flops(lambda: pre.embed(x)) / BATCH
    rows = {}
    for name, ts in times.items():
        ratios = [tb / t for tb, t in zip(times["bare_loop"], ts)]  # per round: the bare loop's time over this one's
        best_ips = n_items / min(ts)
        peak_dtype = "bf16" if name.endswith("bf16") else "fp32"
        rows[name] = {"items_per_s_runs": [round(n_items / t, 1) for t in ts], "items_per_s_best": round(best_ips, 1),
                      "ratio_vs_bare_per_round": [round(r, 3) for r in ratios], "ratio_vs_bare_median": round(statistics.median(ratios), 3),
                      "max_abs_diff_vs_bare": float(np.abs(outs[name] - outs["bare_loop"]).max()),
                      "pct_of_mm_peak": round(100 * fwd_flops * best_ips / 1e9 / peak[peak_dtype], 1), "peak_dtype": peak_dtype}
    return {"items": n_items, "batch": BATCH, "repeat": repeat, "forward_gflop_per_image": fwd_flops / 1e9,
            "mm_peak_gflops": {"before": peak_before, "after": peak_after}, "variants": rows,
            "finetune_epoch": finetune_epoch(ds, ft_items, repeat, peak["fp32"]), "target": "tlops_default >= 1.2x bare_loop"}


def finetune_epoch(ds, n: int, repeat: int, peak_fp32: float) -> dict:
    """One fine-tuning epoch (tlops `finetune`, augmentation on, batch 32) on `n` train images: channels-last vs the old
    NCHW layout, interleaved; samples/s and % of the fp32 mm peak (FLOPs of forward + backward per sample)."""
    from tlops.modules.heads import ProbeHead
    from tlops.strategies.finetune import FinetuneConfig, finetune

    items, y = ds.inputs("train")[:n], ds.label_ids("train")[:n]
    cfg = FinetuneConfig(epochs=1, batch_size=32, patience=2)
    base = load_backbone("packaged:efficientnet-lite0", image_size=SIZE)
    base.model  # load once; each run trains a fresh copy

    def run(fmt):
        b = copy.deepcopy(base)
        b.memory_format = fmt
        b._model = b.model.to(memory_format=fmt)
        torch.manual_seed(0)
        r = finetune(b, items, y, ds.inputs("val")[:8], ds.label_ids("val")[:8], ProbeHead(b.num_features, len(ds.labels)), cfg, seed=0)
        return r.train_samples / r.train_seconds

    b = copy.deepcopy(base)
    head = ProbeHead(b.num_features, len(ds.labels))
    x, t = b.collate(items[:32]), torch.as_tensor(y[:32]).long()
    b.model.train()
    # forward FLOPs x 3 (backward ~ 2x forward): torch 2.14's FlopCounterMode counts a grouped (depthwise) convolution's
    # backward ~groups times over (64-channel depthwise 3x3: 613 MFLOP counted vs 19 expected), which gave "296% of peak"
    step_flops = 3 * flops(lambda: torch.nn.functional.cross_entropy(head(b.embed(x)), t)) / 32
    runs = {"channels_last": [], "nchw_before": []}
    run(torch.channels_last)  # warm-up
    for _ in range(repeat):
        runs["channels_last"].append(run(torch.channels_last))
        runs["nchw_before"].append(run(torch.contiguous_format))
    best = max(runs["channels_last"])
    return {"train_items": n, "samples_per_s_runs": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
            "ratio_channels_last_vs_nchw_per_round": [round(a / b, 3) for a, b in zip(runs["channels_last"], runs["nchw_before"])],
            "train_gflop_per_sample": step_flops / 1e9, "pct_of_mm_peak_fp32": round(100 * step_flops * best / 1e9 / peak_fp32, 1)}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-quality", action="store_true", help="only the speed part")
    ap.add_argument("--items", type=int, default=256, help="images per speed run (the demo has 1,050)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default, the cores)")
    ap.add_argument("--finetune-items", type=int, default=128)
    ap.add_argument("--out", default="image")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(REPO / "data" / "image_fashion_mnist")
    pre = load_backbone("packaged:efficientnet-lite0", image_size=SIZE)
    result = {"dataset": "fashion-mnist demo (10 classes)", "image_size": SIZE, "bf16_support": bf16_support(), "machine": machine()}
    if not args.skip_quality:
        result.update(quality(ds, pre))
    result["speed"] = speed(ds, pre, args.items, args.repeat, args.finetune_items)
    with open("/proc/loadavg") as f:
        result["load_after"] = f.read().split()[:3]
    return save(args.out, result)


if __name__ == "__main__":
    main()
