"""Shared helpers for the benchmarks: same data, same threads, results as JSON under bench/out/."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
CONFIG = REPO / "configs" / "text_linear_probe.yaml"


def demo_texts() -> list[str]:
    from tlops.data import load_dataset

    ds = load_dataset(REPO / "data" / "text_wordnet")
    return [t for s in ("train", "val", "test") for t in ds.inputs(s)]


def machine() -> dict:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def save(name: str, result: dict) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine(), **result}
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


def throughput_vs_bare(ours, bare, n_items: int, repeat: int = 3) -> dict:
    """Best-of-`repeat` items/s of tlops vs a bare loop over the same backbone (both already warmed up)."""
    import numpy as np

    t_ours, a = timed(ours, repeat)
    t_bare, b = timed(bare, repeat)
    return {"items": n_items, "tlops_items_per_s": n_items / t_ours, "bare_loop_items_per_s": n_items / t_bare,
            "ratio": t_bare / t_ours, "max_abs_diff": float(np.abs(a - b).max()), "target": ">= 0.9"}


def pretrained_beats_all(results: dict) -> bool:
    best = next(r["macro_f1"] for k, r in results.items() if k.startswith("pretrained"))
    return all(best > r["macro_f1"] for k, r in results.items() if not k.startswith("pretrained"))
