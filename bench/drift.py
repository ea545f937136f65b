"""Drift detection on the three shift demos (no labels used): false alarms and detections of `tlops.drift.check_drift`
in each demo's own backbone feature space (the configs/*_domain_adapt.yaml backbones, features through the cache).

Reference: the source domain's train split. Unshifted samples: `--size` rows drawn from the source domain's val split
(same domain, rows the reference does not hold); shifted samples: `--size` rows drawn from the target domain's
unlabeled + test rows. Each drawn `--draws` times (seeded); the table gives the share of draws called `drift`,
`possible drift` and `no drift`, and the median p-value and AUC. A false alarm is an unshifted draw called `drift`.

    .venv/bin/python -m bench.drift [--size 50] [--draws 20] [--permutations 200]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from bench.common import REPO, save

SETS = {"text": ("text_wordnet_shift", "text_domain_adapt"), "image": ("image_digit_shift", "image_domain_adapt"),
        "audio": ("audio_voice_shift", "audio_domain_adapt")}


def features(modality: str) -> dict[str, np.ndarray]:
    from tlops.cache import FeatureCache
    from tlops.config import load_config
    from tlops.data import load_dataset
    from tlops.features import cached_features
    from tlops.resolve import backbone_of

    folder, config = SETS[modality]
    cfg = load_config(REPO / "configs" / f"{config}.yaml")
    ds = load_dataset(REPO / "data" / folder)
    backbone = backbone_of(cfg)
    cache, identity = FeatureCache(REPO / ".tlops" / "cache"), backbone.identity()
    out = {}
    for split in ("train", "val", "test", "unlabeled"):
        out[split], _ = cached_features(backbone, ds.inputs(split), cache, identity=identity)
    return out


def draws(modality: str, size: int, n: int, permutations: int) -> dict:
    from tlops.drift import check_drift

    t0 = time.perf_counter()
    f = features(modality)
    print(f"{modality}: features in {time.perf_counter() - t0:.0f} s", flush=True)
    target = np.concatenate([f["unlabeled"], f["test"]])
    rng = np.random.default_rng(0)
    rows = {}
    for kind, pool in (("unshifted", f["val"]), ("shifted", target)):
        verdicts, ps, aucs, t0 = Counter(), [], [], time.perf_counter()
        for i in range(n):
            sample = pool[rng.choice(len(pool), min(size, len(pool)), replace=False)]
            r = check_drift(f["train"], sample, permutations=permutations, seed=i)
            verdicts[r.verdict] += 1
            ps.append(r.mmd_p_value)
            aucs.append(r.domain_auc)
        print(f"{modality} {kind}: {dict(verdicts)}", flush=True)
        rows[kind] = {"drift": verdicts["drift"] / n, "possible drift": verdicts["possible drift"] / n,
                      "no drift": verdicts["no drift"] / n, "median_p": float(np.median(ps)), "median_auc": float(np.median(aucs)),
                      "seconds_per_check": (time.perf_counter() - t0) / n}
    return {"reference_rows": len(f["train"]), "sample_rows": size, **rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=50)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--modalities", nargs="*", default=list(SETS))
    a = ap.parse_args()
    save("drift", {"size": a.size, "draws": a.draws, "permutations": a.permutations,
                   "results": {m: draws(m, a.size, a.draws, a.permutations) for m in a.modalities}})


if __name__ == "__main__":
    main()
