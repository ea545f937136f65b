"""Feature extraction throughput: tlops `embed_all` vs sentence-transformers `encode`, and vs a bare loop.

Same model folder (MiniLM), same texts (the demo set), same thread count, same batch size, same max length.
tlops runs its batches as packed rows where the model allows (issue 33); `tlops_padded` is the same call with
packing off. `tlops_bf16` is tlops with `backbone.precision: bf16` (CPU bf16 autocast); `sentence_transformers_bf16`
is `encode` under the same `torch.autocast("cpu", dtype=torch.bfloat16)` (like for like). The variants run
interleaved (one pass of each per repeat, every other repeat in reverse order, so drift in machine speed hits all
alike); best and median per variant, the 1-minute load average before and after each repeat. Target: >= 2x sentence-transformers (issue 33).
Accuracy of bf16: cosine to the fp32 features on every text; `--probe`: the text demo's linear probe
(configs/text_linear_probe.yaml through `run_core`) with backbone.precision fp32 and bf16, val and test macro-F1.
Run: `python -m bench.feature_throughput [--repeat 3] [--batch-size 64] [--texts N] [--probe] [--threads N]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, demo_texts, save
from tlops.backbones import load_backbone
from tlops.features import embed_all


def bare_loop(b, texts: list[str], bs: int) -> np.ndarray:
    """The plain way: batches in input order, tokenizer pads each batch, forward, masked mean."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), bs):
            enc = b.tokenizer(texts[s : s + bs], padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = b.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out)


def cosines(a: np.ndarray, b: np.ndarray) -> dict:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"min": float(cos.min()), "mean": float(cos.mean()), "max_abs_diff": float(np.abs(a - b).max())}


def probe(precision: str) -> dict:
    """The text demo's linear probe (configs/text_linear_probe.yaml, as shipped) with backbone.precision set."""
    from tlops.config import load_config
    from tlops.pipeline import run_core

    work = Path(tempfile.mkdtemp(prefix="tlops-bench-precision-"))
    cfg = load_config(REPO / "configs" / "text_linear_probe.yaml", [f"backbone.precision={precision}"])
    cfg.features.cache_dir = str(REPO / ".tlops" / "cache")
    cfg.execution.work_dir = str(work / "runs")
    t0 = time.perf_counter()
    core = run_core(cfg, work / precision)
    return {"val": core.train.val_metrics, "test": core.evaluation.metrics, "seconds": time.perf_counter() - t0,
            "cache_misses": core.features.cache.misses}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--texts", type=int, default=None, help="the first N demo texts (default: all)")
    ap.add_argument("--probe", action="store_true", help="also the text linear probe in fp32 and bf16 (val/test macro-F1)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default); on a loaded "
                    "machine 1 thread avoids OpenMP spin-waits on oversubscribed cores")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    from tlops.backbones.base import cpu_has_bf16

    texts = demo_texts()[: args.texts]
    name = "hf:sentence-transformers/all-MiniLM-L6-v2"
    b = load_backbone(name, max_length=128)
    b16 = load_backbone(name, max_length=128, precision="bf16")  # fp32, with a warning, on a CPU without native bf16
    padded = load_backbone(name, max_length=128)
    padded.packing = False
    st = SentenceTransformer(str(b.folder), device="cpu")
    st.max_seq_length = 128
    bs = args.batch_size

    def st_bf16(batch_size: int = bs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return st.encode(texts, batch_size=batch_size, convert_to_numpy=True)

    runs = {"tlops_bf16": lambda: embed_all(b16, texts, batch_size=bs),
            "sentence_transformers": lambda: st.encode(texts, batch_size=bs, convert_to_numpy=True),
            "sentence_transformers_bf16": st_bf16,
            "tlops": lambda: embed_all(b, texts, batch_size=bs),
            "tlops_padded": lambda: embed_all(padded, texts, batch_size=bs),
            "sentence_transformers_default_bs32": lambda: st.encode(texts, convert_to_numpy=True),
            "bare_loop": lambda: bare_loop(b, texts, bs)}
    # warm-up (first-call allocations, oneDNN bf16 kernels; tlops's one-time packing check)
    embed_all(b, texts[:64]), embed_all(b16, texts[:64]), embed_all(padded, texts[:64]), st.encode(texts[:64])
    bare_loop(b, texts[:64], bs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        st.encode(texts[:64])
    seconds = {k: [] for k in runs}
    outs, load = {}, [os.getloadavg()[0]]
    for i in range(args.repeat):  # every other repeat in reverse order: a load that falls or rises through a repeat
        for k, fn in (list(runs.items())[::-1] if i % 2 else runs.items()):  # does not always favour the same variants
            t = time.perf_counter()
            outs[k] = fn()
            seconds[k].append(time.perf_counter() - t)
        load.append(os.getloadavg()[0])
    rate = {k: len(texts) / min(v) for k, v in seconds.items()}
    med = {k: len(texts) / sorted(v)[len(v) // 2] for k, v in seconds.items()}
    ours, ref = outs["tlops"], outs["sentence_transformers"]
    ours_n = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    res = {
        "texts": len(texts), "threads": torch.get_num_threads(), "batch_size": bs, "repeat": args.repeat,
        "packing": b.packing, "bf16_precision_used": b16.precision, "cpu_has_bf16": cpu_has_bf16(),
        "load_1min": load, "seconds_all": seconds,
        **{f"{k}_items_per_s": v for k, v in rate.items()}, **{f"{k}_items_per_s_median": v for k, v in med.items()},
        "ratio_bf16_vs_st_bf16_like_for_like": rate["tlops_bf16"] / rate["sentence_transformers_bf16"],
        "ratio_bf16_vs_st_bf16_like_for_like_median": med["tlops_bf16"] / med["sentence_transformers_bf16"],
        "ratio_bf16_vs_st_fp32": rate["tlops_bf16"] / rate["sentence_transformers"],
        "ratio_bf16_vs_st_fp32_median": med["tlops_bf16"] / med["sentence_transformers"],
        "ratio_vs_st_same_batch": rate["tlops"] / rate["sentence_transformers"],
        "ratio_vs_st_same_batch_median": med["tlops"] / med["sentence_transformers"],
        "ratio_vs_st_default": rate["tlops"] / rate["sentence_transformers_default_bs32"],
        "ratio_vs_bare_loop": rate["tlops"] / rate["bare_loop"],
        "ratio_packed_vs_padded": rate["tlops"] / rate["tlops_padded"],
        "ratio_tlops_bf16_vs_fp32": rate["tlops_bf16"] / rate["tlops"],
        "ratio_st_bf16_vs_fp32": rate["sentence_transformers_bf16"] / rate["sentence_transformers"],
        "cosine_packed_vs_padded": cosines(ours, outs["tlops_padded"]),
        "cosine_tlops_bf16_vs_fp32": cosines(outs["tlops_bf16"], ours),
        "cosine_st_bf16_vs_fp32": cosines(outs["sentence_transformers_bf16"], ref),
        "max_abs_diff_vs_bare_loop": float(np.abs(ours - outs["bare_loop"]).max()),
        "max_abs_diff_normalised_vs_st": float(np.abs(ours_n - ref).max()), "target": ">= 2.0x sentence-transformers",
    }
    save("feature_throughput", res)
    if args.probe:
        res["probe"] = {p: probe(p) for p in ("fp32", "bf16")}
        res["load_1min"].append(os.getloadavg()[0])
    return save("feature_throughput", res)


if __name__ == "__main__":
    main()
