"""Orchestration + tracking overhead: `tlops run` (Prefect flow, MLflow run, registration) vs the bare
core functions (`tlops.pipeline.run_core`) on the same config, each a fresh process, timed end to end.

Four set-ups: no server configured (SQLite MLflow store), either with the kept local Prefect server `tlops run`
starts once and reuses (`kept`, the default) or with a temporary one per run (`temporary`,
TLOPS_LOCAL_SERVER=temporary; called `ephemeral` before the kept server existed); a running Prefect server
(PREFECT_API_URL set) with the SQLite store; and the team stack (docker/stack.sh: long-lived Prefect and MLflow
servers on PostgreSQL, as in production). Cold = empty feature cache;
warm = the same data again. Target: overhead <= 20% with a running server; a warm run with no server configured
<= 1.5x the bare core.

`--setups kept,temporary,server` measures a subset (the team stack needs PostgreSQL and takes longest). Besides wall
seconds, each side's CPU seconds (its process and the children it waited for: the temporary server included, the
kept server not, as it is no child of the run) are recorded: on a shared machine they move less with other
people's load than wall time does. The kept set-up's cold run starts the server; its warm runs reuse it.
"""

from __future__ import annotations

import argparse
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


def _time(args: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds of one process (CPU: user + system of it and the children it waited for)."""
    t, before = time.perf_counter(), os.times()
    p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-3000:])
    after = os.times()
    return time.perf_counter() - t, (after.children_user - before.children_user) + (after.children_system - before.children_system)


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
    for phase, ((core, core_cpu), (flow, flow_cpu)) in (
            ("cold", pairs[0]), ("warm", sorted(pairs[1:], key=lambda p: p[1][0] - p[0][0])[len(pairs[1:]) // 2])):
        out[phase] = {"core_s": round(core, 2), "tlops_run_s": round(flow, 2), "overhead_s": round(flow - core, 2),
                      "overhead_pct": round(100 * (flow - core) / core, 1), "ratio": round(flow / core, 2),
                      "core_cpu_s": round(core_cpu, 2), "tlops_run_cpu_s": round(flow_cpu, 2),
                      "cpu_ratio": round(flow_cpu / core_cpu, 2)}
    out["warm_overheads_s"] = [round(f[0] - c[0], 2) for c, f in pairs[1:]]
    out["warm_ratios"] = [round(f[0] / c[0], 2) for c, f in pairs[1:]]
    out["load_average_after"] = os.getloadavg()
    return out


SETUPS = ("kept", "temporary", "server", "stack")
ALIASES = {"ephemeral": "temporary"}


def main(setups: tuple[str, ...] = SETUPS, warm_repeats: int = 3) -> dict:
    from tests.servers import NativeStack, Services, start_prefect_server

    tmp = Path(tempfile.mkdtemp(prefix="tlops-bench-overhead-"))
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    base.update(HF_HUB_OFFLINE="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    kept = {**base, "PREFECT_HOME": str(tmp / "prefect-kept"), "TLOPS_LOCAL_SERVER": "keep"}
    svc = Services(tmp)
    out = {}
    try:
        if "kept" in setups:
            try:
                out["prefect_kept_local_server"] = measure(tmp, kept, "kept", warm_repeats)
            finally:
                subprocess.run([sys.executable, "-m", "flows.cli", "local-server", "stop", "--force"], cwd=REPO, env=kept,
                               capture_output=True, timeout=60)
        if "temporary" in setups:
            env = {**base, "PREFECT_HOME": str(tmp / "prefect-temporary"), "TLOPS_LOCAL_SERVER": "temporary"}
            out["prefect_temporary_server"] = measure(tmp, env, "temporary", warm_repeats)
        if "server" in setups:
            _, env = start_prefect_server(svc)
            out["prefect_server_running"] = measure(tmp, {**env, "HF_HUB_OFFLINE": "1"}, "server", warm_repeats)
            svc.stop()
        if "stack" in setups:
            stack = NativeStack()  # the team set-up: long-lived Prefect and MLflow servers on PostgreSQL
            try:
                out["team_stack"] = measure(tmp, {**stack.env, "HF_HUB_OFFLINE": "1"}, "stack", warm_repeats, tracking=stack.mlflow)
            finally:
                stack.stop()
    finally:
        svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return save("overhead", {**out, "target": "overhead_pct <= 20 with a running server; no server configured: warm ratio <= 1.5"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset of " + ", ".join(SETUPS))
    ap.add_argument("--warm-repeats", type=int, default=3)
    a = ap.parse_args()
    chosen = tuple(ALIASES.get(x, x) for x in a.setups.split(",") if x)
    if unknown := set(chosen) - set(SETUPS):
        ap.error(f"unknown setups {sorted(unknown)}; choose from {', '.join(SETUPS)}")
    main(chosen, a.warm_repeats)
