"""Audio (spoken-keyword demo, split by voice): pretrained speech_embedding probe vs the same CNN with
random weights vs MFCC statistics + logistic regression; and feature throughput of tlops `embed_all`
vs a bare loop over the same backbone (same decoding, batch size, threads). Target throughput >= 0.9x."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from bench.common import REPO, pretrained_beats_all, save, throughput_vs_bare
from bench.image import probe
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


def bare_loop(b, paths: list[str], bs: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for s in range(0, len(paths), bs):
            clips = []
            for p in paths[s : s + bs]:
                y, sr = sf.read(p, dtype="float32", always_2d=True)
                clips.append(fit_length(resample(y.mean(axis=1), sr, SR), SR))
            out.append(b.model(b.front(np.stack(clips))).mean(dim=1).numpy())
    return np.concatenate(out)


def main() -> dict:
    ds = load_dataset(REPO / "data" / "audio_keywords")
    labels = ds.labels
    y = {s: ds.label_ids(s) for s in ("train", "val", "test")}
    pre = load_backbone("packaged:speech-embedding")
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
    paths = [p for s in ("train", "val", "test") for p in ds.inputs(s)]
    embed_all(pre, paths[:32], batch_size=32), bare_loop(pre, paths[:32], 32)  # warm-up
    speed = throughput_vs_bare(lambda: embed_all(pre, paths, batch_size=32), lambda: bare_loop(pre, paths, 32), len(paths))
    return save("audio", {
        "dataset": "spoken keywords demo (10 words; test voices unseen in train)", "rows": {s: len(v) for s, v in y.items()},
        "results": results,
        "pretrained_beats_both": pretrained_beats_all(results), "throughput": speed,
    })


if __name__ == "__main__":
    main()
