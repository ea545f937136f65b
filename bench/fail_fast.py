"""Time to the first error of `tlops run` on a dataset with one bad row (target <= 5 s; 22-45 s before the
data was checked ahead of Prefect). No Prefect server configured, as for a new user. Baseline in the same run:
the floor, `python -c "import tlops.pipeline"` (torch, scikit-learn) plus Great Expectations' import, which
any check of the data needs today.
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


def _first_error(env: dict, args: list[str]) -> tuple[float, float, int]:
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True)
    first, lines = None, 0
    for line in p.stderr:
        lines += 1
        if first is None and line.startswith("error:"):
            first = time.perf_counter() - t
    p.wait()
    return first, time.perf_counter() - t, lines


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
        runs = [_first_error(env, args) for _ in range(REPEATS)]
        floor = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import tlops.pipeline, great_expectations"], cwd=REPO, env=env, check=True)
            floor.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first = statistics.median(r[0] for r in runs)
    return save("fail_fast", {
        "first_error_s": round(first, 2), "exit_s": round(statistics.median(r[1] for r in runs), 2),
        "stderr_lines": runs[0][2], "import_floor_s": round(statistics.median(floor), 2),
        "first_error_over_floor": round(first / statistics.median(floor), 2), "runs": runs, "target": "first_error_s <= 5"})


if __name__ == "__main__":
    main()
