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
