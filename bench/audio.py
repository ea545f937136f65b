"""Audio (spoken-keyword demo, split by voice): pretrained speech_embedding probe vs the same CNN with
random weights vs MFCC statistics + logistic regression; and feature throughput of tlops `embed_all`
vs a bare loop (same decoding, front end, batch size, threads; the bare loop builds its own CNN from the ONNX file,
default NCHW memory, as a user would), interleaved over repeats, each change alone: tlops as before issue 33
(NCHW), channels-last (the default), + one DataLoader worker. Target throughput >= 0.9x (issue 33: channels-last).

    .venv/bin/python -m bench.audio [--skip-quality] [--items 256] [--repeat 3] [--threads N]"""

from __future__ import annotations

import argparse
import copy
import statistics

import numpy as np
import soundfile as sf
import torch

from bench.common import REPO, pretrained_beats_all, save
from bench.image import interleaved, probe
from bench.matmul_peak import flops, mm_gflops
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.data.audio import fit_length, resample
from tlops.features import embed_all

SR = 16000


def mfcc_stats(path: str) -> np.ndarray:
    import librosa

    y, sr = sf.read(path, dtype="float32", always_2d=True)
    y = fit_length(resample(y.mean(axis=1), sr, SR), SR)
    m = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20)
    d = librosa.feature.delta(m)
    return np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1)]).astype(np.float32)


def bare_loop(b, model, paths: list[str], bs: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for s in range(0, len(paths), bs):
            clips = []
            for p in paths[s : s + bs]:
                y, sr = sf.read(p, dtype="float32", always_2d=True)
                clips.append(fit_length(resample(y.mean(axis=1), sr, SR), SR))
            out.append(model(b.front(np.stack(clips))).mean(dim=1).numpy())
    return np.concatenate(out)


def quality(ds, pre) -> dict:
    labels = ds.labels
    y = {s: ds.label_ids(s) for s in ("train", "val", "test")}
    feats = {s: embed_all(pre, ds.inputs(s), batch_size=32) for s in y}
    rand = load_backbone("packaged:speech-embedding")
    torch.manual_seed(0)
    for m in rand.model.modules():  # same architecture, random init (BN statistics reset too)
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "weight") and isinstance(m.weight, torch.nn.Parameter) and m.weight.dim() == 4:
            torch.nn.init.kaiming_uniform_(m.weight, a=0.2)
    rfeats = {s: embed_all(rand, ds.inputs(s), batch_size=32) for s in y}
    mfcc = {s: np.stack([mfcc_stats(p) for p in ds.inputs(s)]) for s in y}
    results = {"pretrained_speech_embedding_probe": probe(feats, y, labels),
               "random_weights_speech_embedding_probe": probe(rfeats, y, labels),
               "mfcc_stats_logreg": probe(mfcc, y, labels)}
    return {"rows": {s: len(v) for s, v in y.items()}, "results": results, "pretrained_beats_both": pretrained_beats_all(results)}


def speed(ds, pre, n_items: int, repeat: int, bs: int = 32) -> dict:
    from tlops.backbones.speech_embedding import SpeechEmbeddingCNN, packaged_onnx

    paths = [p for s in ("train", "val", "test") for p in ds.inputs(s)][:n_items]
    bare = SpeechEmbeddingCNN.from_onnx(packaged_onnx()).eval()  # the user's own CNN: default NCHW memory
    before = copy.copy(pre)  # shares the ONNX front end
    before._model = copy.deepcopy(pre.model).to(memory_format=torch.contiguous_format)
    before.embed = lambda batch: before.model(batch).mean(dim=1).float()  # embed as before issue 33: the batch as collated
    variants = {"bare_loop": lambda: bare_loop(pre, bare, paths, bs),
                "tlops_before": lambda: embed_all(before, paths, batch_size=bs),
                "tlops_default": lambda: embed_all(pre, paths, batch_size=bs),
                "tlops_default_1_worker": lambda: embed_all(pre, paths, batch_size=bs, workers=1)}
    for fn in variants.values():
        fn()  # warm-up
    peak_before = mm_gflops()
    times, outs = interleaved(variants, repeat)
    peak = max(peak_before, mm_gflops())
    x = pre.collate(paths[:bs])
    with torch.inference_mode():
        cnn_flops = flops(lambda: pre.embed(x)) / bs  # the CNN only: the ONNX front end runs outside torch
    rows = {}
    for name, ts in times.items():
        ratios = [tb / t for tb, t in zip(times["bare_loop"], ts)]
        rows[name] = {"items_per_s_runs": [round(n_items / t, 1) for t in ts], "items_per_s_best": round(n_items / min(ts), 1),
                      "ratio_vs_bare_per_round": [round(r, 3) for r in ratios], "ratio_vs_bare_median": round(statistics.median(ratios), 3),
                      "max_abs_diff_vs_bare": float(np.abs(outs[name] - outs["bare_loop"]).max()),
                      "pct_of_mm_peak_cnn_flops": round(100 * cnn_flops * n_items / min(ts) / 1e9 / peak, 2)}
    return {"items": n_items, "batch": bs, "repeat": repeat, "cnn_gflop_per_clip": cnn_flops / 1e9, "mm_peak_fp32_gflops": peak,
            "variants": rows, "target": "tlops_default >= 0.9x bare_loop"}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--items", type=int, default=256, help="clips per speed run (the demo has 840)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="audio")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(REPO / "data" / "audio_keywords")
    pre = load_backbone("packaged:speech-embedding")
    result = {"dataset": "spoken keywords demo (10 words; test voices unseen in train)"}
    if not args.skip_quality:
        result.update(quality(ds, pre))
    result["speed"] = speed(ds, pre, args.items, args.repeat)
    with open("/proc/loadavg") as f:
        result["load_after"] = f.read().split()[:3]
    return save(args.out, result)


if __name__ == "__main__":
    main()
