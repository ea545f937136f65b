"""The program `torchrun` starts in every training process: `python -m tlops.training.ddp_main STEP_INPUT`.

STEP_INPUT is the JSON file `tlops.training.ddp_launch` wrote: the run config, the features step's record,
the step's output folder and where rank 0 writes the result. Each rank joins the process group (nccl on
GPUs, gloo on the CPU), then runs the ordinary train step; the loop sees the group and trains with DDP
(`tlops.training.distributed`). Rank 0 writes the checkpoints, the model package and the result; the other
ranks write their (identical) package into a scratch folder that is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from torch import distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from tlops.config import config_from_dict
from tlops.pipeline import train_step
from tlops.records import FeatureSet, dump_json


def backend_for(device: str) -> str:
    """nccl when the strategy trains on a GPU (device auto or cuda, with one visible), else gloo."""
    return "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"


def die_with_torchrun() -> None:
    """torchrun starts ranks in their own session and never sets a parent-death signal: without this, a
    torchrun killed by SIGKILL would leave its ranks training on. Linux only (prctl); elsewhere a no-op."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # torchrun already gone before the line above
        os.kill(os.getpid(), signal.SIGTERM)


@record  # a rank's uncaught exception goes into torchrun's error file, so torchrun names the rank and the error
def main(argv: list[str]) -> None:
    die_with_torchrun()
    spec = json.loads(Path(argv[0]).read_text())
    cfg = config_from_dict(spec["config"])
    features = FeatureSet.model_validate(spec["features"])
    backend = backend_for(cfg.strategy.device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # "cuda" in the loop then means this rank's GPU
    dist.init_process_group(backend)
    rank = dist.get_rank()
    out_dir = Path(spec["out_dir"]) if rank == 0 else Path(spec["out_dir"]) / f".rank{rank}"
    try:
        result = train_step(cfg, features, out_dir)
        if rank == 0:
            tmp = Path(spec["result"]).with_suffix(".tmp")
            dump_json(result, tmp)
            tmp.replace(spec["result"])  # whole or absent: the parent never reads half a result
        dist.barrier()
    finally:
        dist.destroy_process_group()
        if rank != 0:
            shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
