"""Time to the first error of `tlops run` on a dataset with one bad row (target <= 5 s; 22-45 s before the
data was checked ahead of Prefect). No Prefect server configured, as for a new user. Baselines in the same run:
the floor, `python -c "import great_expectations"` (any check of the data needs GX), and the floor of the path
before torch and scikit-learn were taken off it (`import torch, sklearn, transformers, great_expectations`).

Wall seconds on a shared 2-core machine move with the other users' load, so the process's own CPU seconds at the
moment the `error:` line appears (utime + stime from /proc) are recorded too: they are what the user would wait on
an idle machine, give or take I/O.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CONFIG, REPO, save

REPEATS = 3


FLOORS = {"import_floor": "import great_expectations",
          "import_floor_before": "import torch, sklearn, transformers, great_expectations"}


def _cpu_s(pid: int) -> float:
    """utime + stime of a running process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _first_error(env: dict, args: list[str]) -> tuple[float, float, int, float]:
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True)
    first, lines, cpu = None, 0, None
    for line in p.stderr:
        lines += 1
        if first is None and line.startswith("error:"):
            first = time.perf_counter() - t
            cpu = _cpu_s(p.pid)
    p.wait()
    return first, time.perf_counter() - t, lines, cpu


def _timed(env: dict, code: str) -> tuple[float, float]:
    """Wall and CPU seconds of `python -c code`."""
    t, before = time.perf_counter(), os.times()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
    after = os.times()
    return time.perf_counter() - t, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="tlops-bench-failfast-"))
    try:
        data = tmp / "data"
        shutil.copytree(REPO / "data" / "text_wordnet", data)
        rows = (data / "train.csv").read_text().splitlines()
        rows[4] = ",noun.animal"  # an empty text on line 5
        (data / "train.csv").write_text("\n".join(rows) + "\n")
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(PREFECT_HOME=str(tmp / "prefect-home"), HF_HUB_OFFLINE="1")
        args = ["run", str(CONFIG), "--set", f"data.path={data}", "--set", f"tracking.uri=sqlite:///{tmp}/mlflow.db"]
        runs, floors = [], {k: [] for k in FLOORS}
        for _ in range(REPEATS):  # interleaved, so a busy spell on the machine falls on all of them
            runs.append(_first_error(env, args))
            for k, code in FLOORS.items():
                floors[k].append(_timed(env, code))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    first, first_cpu = med(r[0] for r in runs), med(r[3] for r in runs)
    out = {"first_error_s": round(first, 2), "first_error_cpu_s": round(first_cpu, 2),
           "exit_s": round(med(r[1] for r in runs), 2), "stderr_lines": runs[0][2]}
    for k, v in floors.items():
        out[f"{k}_s"], out[f"{k}_cpu_s"] = round(med(w for w, _ in v), 2), round(med(c for _, c in v), 2)
    out["first_error_over_floor"] = round(first / out["import_floor_s"], 2)
    out["first_error_cpu_over_floor_cpu"] = round(first_cpu / out["import_floor_cpu_s"], 2)
    out["load_average"] = os.getloadavg()
    return save("fail_fast", {**out, "runs": runs, "floors": floors, "target": "first_error_s <= 5"})


if __name__ == "__main__":
    main()
