"""The train step on several processes or machines: launch `torchrun` (torch.distributed.run, PyTorch's own
launcher) on `tlops.training.ddp_main` and read back rank 0's result.

Used when `execution.nproc_per_node * execution.nnodes > 1`. The step's inputs cross into the ranks as one
JSON file (config, features record, output folder), the result comes back as rank 0's JSON file, every
rank's stdout/stderr is kept in its own log file, and a failed rank becomes one `DistributedTrainingFailed`
naming torchrun's exit code, the rank and that rank's last lines. No torch import here: the flow imports
this module on its way to the train step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import tlops
from tlops.config import ExecutionConfig, RunConfig
from tlops.errors import ConfigError, TlopsError
from tlops.records import TRAIN_RESULT, FeatureSet, TrainResult
from tlops.strategies.registry import check_ddp

log = logging.getLogger(__name__)
TAIL_LINES = 15


class DistributedTrainingFailed(TlopsError):
    """torchrun ended with a non-zero exit code: a rank raised, was killed, or could not start."""


def world_size(execution: ExecutionConfig) -> int:
    return execution.nproc_per_node * execution.nnodes


def check_supported(cfg: RunConfig, devices: bool = True) -> None:
    """ConfigError unless the strategy trains under DDP (and, with `devices`, this machine has a GPU per process)."""
    check_ddp(cfg.strategy.name, cfg.execution)  # the strategy's registry entry says whether its loop shards over ranks
    if devices and cfg.strategy.device != "cpu":
        import torch  # only here: a GPU run needs one GPU per local process

        gpus = torch.cuda.device_count()
        if gpus and gpus < cfg.execution.nproc_per_node:
            raise ConfigError(f"execution.nproc_per_node={cfg.execution.nproc_per_node} but this machine has {gpus} GPU(s); "
                              f"use at most {gpus}, or strategy.device: cpu to train with gloo on the CPU")


def torchrun_command(execution: ExecutionConfig, step_input: Path, log_dir: Path) -> list[str]:
    """The torchrun command line. One machine: --standalone (a local rendezvous on a free port). Several: a c10d
    rendezvous at `rdzv_endpoint`, with an id every machine derives from the same step input file."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(execution.nproc_per_node)]
    if execution.nnodes == 1:
        cmd.append("--standalone")
    else:
        rdzv_id = "tlops-" + hashlib.sha256(str(step_input).encode()).hexdigest()[:12]
        cmd += ["--nnodes", str(execution.nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", execution.rdzv_endpoint,
                "--rdzv-id", rdzv_id]
    # each rank's stdout and stderr into its own file under log_dir (read back when a rank fails)
    cmd += ["--log-dir", str(log_dir), "--redirects", "3", "-m", "tlops.training.ddp_main", str(step_input)]
    return cmd


def _environment(execution: ExecutionConfig) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(tlops.__file__).resolve().parents[1])  # the ranks import the same tlops as this process
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # torchrun's default is 1 thread per process; share this machine's cores instead (CPU/gloo training)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // execution.nproc_per_node)))
    return env


def _die_with_parent() -> None:
    """In torchrun's process, before exec: SIGTERM when this process dies, even by SIGKILL; torchrun then
    stops its ranks, so no training outlives the step that launched it."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, which torchrun passes on to its ranks; SIGKILL (subprocess.run's way) would leave them running."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _tail(path: Path, n: int = TAIL_LINES) -> str:
    """The last `n` lines that say something (not Python's ^^^^ markers under a traceback line)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join([ln for ln in lines if re.sub(r"^\[rank\d+\]:", "", ln).strip(" ^~")][-n:])


def _rank_log(log_dir: Path, local_rank: int) -> Path | None:
    """The newest attempt's stderr file of a local rank (torchrun: <log_dir>/<run id>/attempt_<k>/<local rank>/)."""
    found = sorted(log_dir.glob(f"*/attempt_*/{local_rank}/stderr.log"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def failure_message(rc: int, torchrun_log: Path, log_dir: Path, nproc: int) -> str:
    """torchrun's exit code, the rank it names as the root cause (its exit code) and that rank's last lines."""
    out = torchrun_log.read_text(errors="replace") if torchrun_log.is_file() else ""
    cause = out.split("Root Cause", 1)[1] if "Root Cause" in out else ""
    m = re.search(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)", cause)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
    head = f"distributed training failed: torchrun exited with code {rc}"
    if m:
        rank, local = int(m.group(1)), int(m.group(2))
        head += f"; first failure: rank {rank}" + (f" (exit code {code.group(1)}" + (", killed by a signal)" if int(code.group(1)) < 0 else ")")
                                                   if code else "")
        ranks = [local]
    else:
        ranks = list(range(nproc))
    parts = [head]
    for local in ranks:
        path = _rank_log(log_dir, local)
        tail = _tail(path) if path else ""
        parts.append(f"last lines of local rank {local} ({path}):\n{tail}" if tail else f"local rank {local} wrote nothing to stderr")
    if not m:
        parts.append(f"torchrun's own output ({torchrun_log}):\n{_tail(torchrun_log)}")
    parts.append("a rerun of the same command resumes from the last complete checkpoint")
    return "\n".join(parts)


def train_step_distributed(cfg: RunConfig, features: FeatureSet, out_dir: Path) -> TrainResult:
    """Run the train step under torchrun with `execution.nproc_per_node` processes on this machine (and
    `nnodes` machines in all); return rank 0's result. Raises DistributedTrainingFailed if any rank fails."""
    check_supported(cfg)
    ex = cfg.execution
    out_dir = Path(out_dir).resolve()
    ddp_dir = out_dir / "ddp"
    ddp_dir.mkdir(parents=True, exist_ok=True)
    step_input, result_file, log_dir = ddp_dir / "step_input.json", ddp_dir / "result.json", ddp_dir / "logs"
    result_file.unlink(missing_ok=True)
    step_input.write_text(json.dumps({"config": cfg.model_dump(mode="json"), "features": features.model_dump(mode="json"),
                                      "out_dir": str(out_dir), "result": str(result_file)}))
    cmd = torchrun_command(ex, step_input, log_dir)
    if ex.nnodes > 1:
        log.warning("training on %d machines: on each other machine (same repository, %s on a shared filesystem) run:\n  %s",
                    ex.nnodes, ex.work_dir, shlex.join(cmd))
    log.info("torchrun: %s", shlex.join(cmd))
    torchrun_log = ddp_dir / "torchrun.log"
    with open(torchrun_log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=_environment(ex), preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        try:
            rc = proc.wait()
        except BaseException:  # interrupted (Ctrl-C, SIGTERM turned into an exception): stop the ranks too
            _stop(proc)
            raise
    if rc != 0 or not result_file.is_file():
        raise DistributedTrainingFailed(failure_message(rc, torchrun_log, log_dir, ex.nproc_per_node))
    return TRAIN_RESULT.validate_json(result_file.read_text())
