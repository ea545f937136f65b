"""This CPU's matmul peak, measured with a plain `torch.mm` in the process that runs the benchmark, so an embedding or
fine-tuning throughput can be reported as a fraction of it; and FLOPs of a model step counted by torch's own
`torch.utils.flop_counter.FlopCounterMode` (fvcore and thop are not installed here).

    .venv/bin/python -m bench.matmul_peak [--n 2048] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch


def cpu_flags() -> set[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_support() -> dict:
    """What bf16 math this CPU has: AVX-512 BF16 (dot products) or AMX (tiles); oneDNN's own verdict beside it."""
    flags = cpu_flags()
    return {"avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}


def mm_gflops(n: int = 2048, dtype: torch.dtype = torch.float32, repeat: int = 5) -> float:
    """Best-of-`repeat` GFLOP/s of one (n x n) @ (n x n) `torch.mm` (2 n^3 FLOPs) at the current torch threads."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up (packing, kernel choice)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops(fn) -> int:
    """FLOPs torch's FlopCounterMode counts while `fn()` runs (matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"threads": torch.get_num_threads(), "n": args.n, "fp32_gflops": mm_gflops(args.n),
           "bf16_gflops": mm_gflops(args.n, torch.bfloat16), **bf16_support()}
    print(out)
    return out


if __name__ == "__main__":
    main()
