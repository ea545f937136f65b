"""Feature extraction throughput: tlops `embed_all` vs sentence-transformers `encode`, and vs a bare loop.

Same model folder (MiniLM), same texts (the demo set), same thread count, same batch size, same max length.
tlops runs its batches as packed rows where the model allows (issue 33); `tlops_padded` is the same call with
packing off. The variants run interleaved (one pass of each per repeat, so drift in machine speed hits all alike);
best and median per variant. Targets: >= 2x sentence-transformers at the same batch size (issue 33).
Run: `python -m bench.feature_throughput [--repeat 3] [--batch-size 64] [--texts N]`.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from bench.common import demo_texts, save
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


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--texts", type=int, default=None, help="the first N demo texts (default: all)")
    args = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    texts = demo_texts()[: args.texts]
    b = load_backbone("hf:sentence-transformers/all-MiniLM-L6-v2", max_length=128)
    padded = load_backbone("hf:sentence-transformers/all-MiniLM-L6-v2", max_length=128)
    padded.packing = False
    st = SentenceTransformer(str(b.folder), device="cpu")
    st.max_seq_length = 128
    bs = args.batch_size
    runs = {"tlops": lambda: embed_all(b, texts, batch_size=bs),
            "sentence_transformers": lambda: st.encode(texts, batch_size=bs, convert_to_numpy=True),
            "tlops_padded": lambda: embed_all(padded, texts, batch_size=bs),
            "sentence_transformers_default_bs32": lambda: st.encode(texts, convert_to_numpy=True),
            "bare_loop": lambda: bare_loop(b, texts, bs)}
    # warm-up (first-call allocations; tlops's one-time packing check)
    embed_all(b, texts[:64]), embed_all(padded, texts[:64]), st.encode(texts[:64]), bare_loop(b, texts[:64], bs)
    seconds = {k: [] for k in runs}
    outs, load = {}, [os.getloadavg()[0]]
    for _ in range(args.repeat):
        for k, fn in runs.items():
            t = time.perf_counter()
            outs[k] = fn()
            seconds[k].append(time.perf_counter() - t)
        load.append(os.getloadavg()[0])
    rate = {k: len(texts) / min(v) for k, v in seconds.items()}
    med = {k: len(texts) / sorted(v)[len(v) // 2] for k, v in seconds.items()}
    ours, ref = outs["tlops"], outs["sentence_transformers"]
    ours_n = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    cos = (ours * outs["tlops_padded"]).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(outs["tlops_padded"], axis=1)
    return save("feature_throughput", {
        "texts": len(texts), "threads": torch.get_num_threads(), "batch_size": bs, "repeat": args.repeat,
        "packing": b.packing, "load_1min": load, "seconds_all": seconds,
        **{f"{k}_items_per_s": v for k, v in rate.items()}, **{f"{k}_items_per_s_median": v for k, v in med.items()},
        "ratio_vs_st_same_batch": rate["tlops"] / rate["sentence_transformers"],
        "ratio_vs_st_same_batch_median": med["tlops"] / med["sentence_transformers"],
        "ratio_vs_st_default": rate["tlops"] / rate["sentence_transformers_default_bs32"],
        "ratio_vs_bare_loop": rate["tlops"] / rate["bare_loop"],
        "ratio_packed_vs_padded": rate["tlops"] / rate["tlops_padded"],
        "min_cosine_packed_vs_padded": float(cos.min()),
        "max_abs_diff_vs_bare_loop": float(np.abs(ours - outs["bare_loop"]).max()),
        "max_abs_diff_normalised_vs_st": float(np.abs(ours_n - ref).max()), "target": ">= 2.0x sentence-transformers",
    })


if __name__ == "__main__":
    main()
