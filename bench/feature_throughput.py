"""Feature extraction throughput: tlops `embed_all` vs sentence-transformers `encode`, and vs a bare loop.

Same model folder (MiniLM), same texts (the demo set), same thread count, same batch size,
same max length; each side run `--repeat` times, best time kept. Target: ratio >= 1.0.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.common import demo_texts, save, timed
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
    args = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    texts = demo_texts()
    b = load_backbone("hf:sentence-transformers/all-MiniLM-L6-v2", max_length=128)
    st = SentenceTransformer(str(b.folder), device="cpu")
    st.max_seq_length = 128
    embed_all(b, texts[:64])  # warm-up both (first-call allocations)
    st.encode(texts[:64])
    t_ours, ours = timed(lambda: embed_all(b, texts, batch_size=args.batch_size), args.repeat)
    t_st, ref = timed(lambda: st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True), args.repeat)
    t_st32, _ = timed(lambda: st.encode(texts, convert_to_numpy=True), args.repeat)  # its default batch size (32)
    t_bare, bare = timed(lambda: bare_loop(b, texts, args.batch_size), args.repeat)
    ours_n = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    return save("feature_throughput", {
        "texts": len(texts), "threads": torch.get_num_threads(), "batch_size": args.batch_size, "repeat": args.repeat,
        "tlops_items_per_s": len(texts) / t_ours, "sentence_transformers_items_per_s": len(texts) / t_st,
        "sentence_transformers_default_bs32_items_per_s": len(texts) / t_st32,
        "bare_loop_items_per_s": len(texts) / t_bare, "ratio_vs_bare_loop": t_bare / t_ours,
        "ratio_vs_st_same_batch": t_st / t_ours, "ratio_vs_st_default": t_st32 / t_ours,
        "max_abs_diff_vs_bare_loop": float(np.abs(ours - bare).max()),
        "max_abs_diff_normalised": float(np.abs(ours_n - ref).max()), "target": ">= 1.0",
    })


if __name__ == "__main__":
    main()
