"""Drift detection on the three shift demos (no labels used): false alarms and detections of `tlops.drift.check_drift`
in each demo's own backbone feature space (the configs/*_domain_adapt.yaml backbones, features through the cache), and
the same test on raw-input features as the baseline (text: TF-IDF fitted on the reference texts; images: grey pixels
at 32x32; audio: MFCC statistics, as bench/audio.py's baseline).

Reference: the source domain's train split. Each draw is `--size` rows:
- `unshifted`: rows of the source domain's val split (same domain, rows the reference does not hold);
- `mix 10%`, `mix 25%`, `mix 50%` (`--mixes`): that share of target-domain rows (unlabeled + test) among source val
  rows: a partial shift, as when part of the traffic comes from a new source;
- `shifted`: target-domain rows only;
- `label shift`: source val rows of a third of the classes only (same inputs' domain, another class mix: what a
  model's predicted-class mix sees; at most as many rows as those classes hold in val, each once).
Each drawn `--draws` times (seeded); the table gives the share of draws called `drift`, `possible drift` and
`no drift`, and the median p-value and AUC. A false alarm is an unshifted draw called `drift`.

    .venv/bin/python -m bench.drift [--size 50] [--draws 20] [--permutations 200] [--mixes 0.1 0.25 0.5] [--kinds backbone raw]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from bench.common import REPO, save

SETS = {"text": ("text_wordnet_shift", "text_domain_adapt"), "image": ("image_digit_shift", "image_domain_adapt"),
        "audio": ("audio_voice_shift", "audio_domain_adapt")}
SPLITS = ("train", "val", "test", "unlabeled")
RAW = {"text": "TF-IDF (fitted on the reference)", "image": "grey pixels 32x32", "audio": "MFCC statistics (80)"}


def _dataset(modality: str):
    from tlops.data import load_dataset

    return load_dataset(REPO / "data" / SETS[modality][0])


def features(modality: str) -> dict[str, np.ndarray]:
    """The demo's backbone features of each split (through the feature cache)."""
    from tlops.cache import FeatureCache
    from tlops.config import load_config
    from tlops.features import cached_features
    from tlops.resolve import backbone_of

    cfg = load_config(REPO / "configs" / f"{SETS[modality][1]}.yaml")
    ds = _dataset(modality)
    backbone = backbone_of(cfg)
    cache, identity = FeatureCache(REPO / ".tlops" / "cache"), backbone.identity()
    return {split: cached_features(backbone, ds.inputs(split), cache, identity=identity)[0] for split in SPLITS}


def raw_features(modality: str) -> dict[str, np.ndarray]:
    """The baseline's features of each split, from the raw inputs (no pretrained model)."""
    ds = _dataset(modality)
    inputs = {split: list(ds.inputs(split)) for split in SPLITS}
    if modality == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(sublinear_tf=True).fit(inputs["train"])  # the reference's vocabulary: what a monitor fitted at training time knows
        return {s: vec.transform(v).toarray() for s, v in inputs.items()}
    if modality == "image":
        from PIL import Image

        return {s: np.stack([np.asarray(Image.open(p).convert("L").resize((32, 32)), np.float32).ravel() / 255.0 for p in v])
                for s, v in inputs.items()}
    from bench.audio import mfcc_stats

    return {s: np.stack([mfcc_stats(p) for p in v]) for s, v in inputs.items()}


def classes(modality: str) -> dict[str, np.ndarray]:
    ds = _dataset(modality)
    return {split: np.asarray(ds.splits[split][ds.target_column]) for split in ("val",)}


def draws(f: dict[str, np.ndarray], val_labels: np.ndarray, size: int, n: int, permutations: int, mixes: list[float],
          label_shift: bool, tag: str) -> dict:
    from tlops.drift import check_drift

    target = np.concatenate([f["unlabeled"], f["test"]])
    kept = sorted(set(val_labels))[: max(1, -(-len(set(val_labels)) // 3))]  # a third of the classes (rounded up)
    few_classes = f["val"][np.isin(val_labels, kept)]
    plan = [("unshifted", 0.0), *((f"mix {round(q * 100)}%", q) for q in mixes), ("shifted", 1.0)]
    rng = np.random.default_rng(0)
    rows = {}
    for kind, share in plan + ([("label shift", None)] if label_shift else []):
        verdicts, ps, aucs, t0 = Counter(), [], [], time.perf_counter()
        for i in range(n):
            if share is None:
                # no row twice (a repeated row inflates both tests): fewer rows when the kept classes hold fewer
                sample = few_classes[rng.choice(len(few_classes), min(size, len(few_classes)), replace=False)]
            else:
                k = round(share * size)
                sample = np.concatenate([f["val"][rng.choice(len(f["val"]), size - k, replace=False)],
                                         target[rng.choice(len(target), k, replace=False)]])
            r = check_drift(f["train"], sample, permutations=permutations, seed=i)
            verdicts[r.verdict] += 1
            ps.append(r.mmd_p_value)
            aucs.append(r.domain_auc)
        print(f"{tag} {kind}: {dict(verdicts)}", flush=True)
        rows[kind] = {"drift": verdicts["drift"] / n, "possible drift": verdicts["possible drift"] / n,
                      "no drift": verdicts["no drift"] / n, "median_p": float(np.median(ps)), "median_auc": float(np.median(aucs)),
                      "seconds_per_check": (time.perf_counter() - t0) / n}
    return {"reference_rows": len(f["train"]), "sample_rows": size, "width": int(f["train"].shape[1]), **rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=50)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--mixes", type=float, nargs="*", default=[0.1, 0.25, 0.5])
    ap.add_argument("--kinds", nargs="*", default=["backbone", "raw"], choices=["backbone", "raw"])
    ap.add_argument("--no-label-shift", dest="label_shift", action="store_false")
    ap.add_argument("--modalities", nargs="*", default=list(SETS))
    ap.add_argument("--out", default="drift", help="bench/out/<name>.json")
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread: on a shared 2-core machine its spin-waits made a check ~10x slower
    results = {}
    for m in a.modalities:
        val_labels = classes(m)["val"]
        for kind in a.kinds:
            t0 = time.perf_counter()
            f = features(m) if kind == "backbone" else raw_features(m)
            print(f"{m} {kind}: features in {time.perf_counter() - t0:.0f} s", flush=True)
            results[f"{m} {kind}"] = {"features": RAW[m] if kind == "raw" else SETS[m][1] + " backbone",
                                      **draws(f, val_labels, a.size, a.draws, a.permutations, a.mixes, a.label_shift, f"{m} {kind}")}
    save(a.out, {"size": a.size, "draws": a.draws, "permutations": a.permutations, "results": results})


if __name__ == "__main__":
    main()
