"""Orchestration + tracking overhead: `tlops run` (Prefect flow, MLflow run, registration) vs the bare
core functions (`tlops.pipeline.run_core`) on the same config, each a fresh process, timed end to end.

Three set-ups: ephemeral (no server configured: Prefect starts a temporary one per run, SQLite MLflow store),
a running Prefect server (PREFECT_API_URL set) with the SQLite store, and the team stack (docker/stack.sh:
long-lived Prefect and MLflow servers on PostgreSQL, as in production). Cold = empty feature cache;
warm = the same data again. Target: overhead <= 20%.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CONFIG, REPO, save

CORE = ("import sys; from pathlib import Path; from tlops.config import load_config; from tlops.pipeline import run_core;"
        "cfg = load_config(sys.argv[1], sys.argv[3:]); run_core(cfg, Path(sys.argv[2]))")


def _time(args: list[str], env: dict) -> float:
    t = time.perf_counter()
    p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-3000:])
    return time.perf_counter() - t


def measure(tmp: Path, env: dict, tag: str, warm_repeats: int = 3, tracking: str | None = None) -> dict:
    """Cold once, then warm `warm_repeats` times, core and `tlops run` alternating (so a busy spell on the
    machine falls on both sides); the median warm pair is reported."""
    out = {}
    core_sets = [f"features.cache_dir={tmp / f'cache-core-{tag}'}"]
    run_sets = [f"features.cache_dir={tmp / f'cache-run-{tag}'}", f"tracking.uri={tracking or f'sqlite:///{tmp}/mlruns-{tag}/mlflow.db'}",
                f"execution.work_dir={tmp / 'runs'}"]
    pairs = []
    for i in range(1 + warm_repeats):
        core = _time([sys.executable, "-c", CORE, str(CONFIG), str(tmp / f"work-{tag}-{i}"), *core_sets], env)
        flow = _time([sys.executable, "-m", "flows.cli", "run", str(CONFIG), "--json", *sum((["--set", s] for s in run_sets), [])], env)
        pairs.append((core, flow))
    for phase, (core, flow) in (("cold", pairs[0]), ("warm", sorted(pairs[1:], key=lambda p: p[1] - p[0])[len(pairs[1:]) // 2])):
        out[phase] = {"core_s": round(core, 2), "tlops_run_s": round(flow, 2), "overhead_s": round(flow - core, 2),
                      "overhead_pct": round(100 * (flow - core) / core, 1)}
    out["warm_overheads_s"] = [round(f - c, 2) for c, f in pairs[1:]]
    return out


def main() -> dict:
    from tests.servers import NativeStack, Services, start_prefect_server

    tmp = Path(tempfile.mkdtemp(prefix="tlops-bench-overhead-"))
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    base.update(HF_HUB_OFFLINE="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(tmp / "prefect-ephemeral"))
    svc = Services(tmp)
    try:
        ephemeral = measure(tmp, base, "ephemeral")
        _, env = start_prefect_server(svc)
        server = measure(tmp, {**env, "HF_HUB_OFFLINE": "1"}, "server")
        svc.stop()
        stack = NativeStack()  # the team set-up: long-lived Prefect and MLflow servers on PostgreSQL
        try:
            team = measure(tmp, {**stack.env, "HF_HUB_OFFLINE": "1"}, "stack", tracking=stack.mlflow)
        finally:
            stack.stop()
    finally:
        svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return save("overhead", {"prefect_ephemeral": ephemeral, "prefect_server_running": server, "team_stack": team,
                             "target": "overhead_pct <= 20"})


if __name__ == "__main__":
    main()
