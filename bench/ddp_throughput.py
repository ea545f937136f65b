"""DDP on the CPU: the fine-tuning train step in 1 process vs N gloo processes under torchrun, same config.

Same data (the WordNet demo train split), same pretrained MiniLM, same global batch and batch order (DDP in
tlops keeps `strategy.batch_size` as the global batch: each rank takes every N-th row). Reported: training
samples/s (examples over the loop's training seconds, validation excluded; under DDP all ranks' examples over
rank 0's seconds) and the step's wall time (for DDP this includes torchrun, each rank's imports and model load).
The single process uses torch's default threads; each DDP rank gets cores / N threads (tlops.training.ddp_launch).
Run: `python -m bench.ddp_throughput [--epochs 1] [--nproc 2] [--rows N]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.common import REPO, save
from tlops.config import load_config
from tlops.pipeline import features_step, train_step
from tlops.training.ddp_launch import train_step_distributed


def subset(src: Path, dst: Path, rows: int) -> Path:
    """The dataset at `src` with only its first `rows` training rows (val and test whole)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix in (".csv", ".yaml"):
            lines = f.read_text().splitlines(keepends=True)
            (dst / f.name).write_text("".join(lines[: rows + 1]) if f.name == "train.csv" else "".join(lines))
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--rows", type=int, default=0, help="train on the first N training rows only (0: all)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = REPO / "data" / "text_wordnet"
        if args.rows:
            data = subset(data, Path(tmp) / "data", args.rows)

        def cfg(name: str, nproc: int):
            return load_config(REPO / "configs" / "text_finetune.yaml", [
                f"strategy.epochs={args.epochs}", "strategy.device=cpu", f"strategy.patience={args.epochs + 1}",
                f"execution.work_dir={tmp}/{name}", f"execution.nproc_per_node={nproc}", f"data.path={data}"])

        feats = features_step(cfg("features", 1), Path(tmp) / "features")  # the repository's feature cache
        default_threads = torch.get_num_threads()
        # (label, processes, torch threads per process): one process with torch's default threads and with one
        # thread (what each DDP rank gets on a 2-core machine), then the DDP run
        setups = [(f"1 process x {default_threads} threads", 1, default_threads), ("1 process x 1 thread", 1, 1),
                  (f"{args.nproc} gloo processes", args.nproc, max(1, (os.cpu_count() or 1) // args.nproc))]
        rows = {}
        for name, nproc, threads in setups:
            c = cfg(f"run{len(rows)}", nproc)
            torch.set_num_threads(threads)
            t = time.perf_counter()
            out = Path(tmp) / f"out{len(rows)}"
            r = train_step(c, feats, out) if nproc == 1 else train_step_distributed(c, feats, out)
            wall = time.perf_counter() - t
            rows[name] = {"processes": nproc, "threads_per_process": threads, "train_samples_per_s": r.loop.train_samples_per_s,
                          "step_wall_s": wall, "val_macro_f1": r.val_metrics["macro_f1"], "train_loss": r.history[-1]["train_loss"],
                          "load_avg_1min_after": os.getloadavg()[0]}
        torch.set_num_threads(default_threads)
        base = rows[setups[0][0]]
        save("ddp_throughput", {
            "model": "sentence-transformers/all-MiniLM-L6-v2 (pretrained)", "data": f"text_wordnet train ({args.rows or 'all 1800'} rows)",
            "epochs": args.epochs, "batch_size": 32, "runs": rows,
            "samples_per_s_vs_first": {k: v["train_samples_per_s"] / base["train_samples_per_s"] for k, v in rows.items()},
            "wall_vs_first": {k: base["step_wall_s"] / v["step_wall_s"] for k, v in rows.items()}})


if __name__ == "__main__":
    main()
