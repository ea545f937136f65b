"""Audit cost and agreement: `tlops run` of a shipped config, then `tlops audit` of the version it registered.

Reports the audit's wall time against the original run's (ratio; the audit recomputes features, like
the cold original run here) and what the audit measured: prediction agreement on the test split, test
metric difference, max weight difference. The runs train from a committed copy of this checkout's code
(a clean tree, as audits require). Run: `python -m bench.audit [--configs text_linear_probe text_finetune]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import REPO, save


def _project(root: Path) -> Path:
    for d in ("tlops", "tasks", "flows"):
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    git = lambda *a: subprocess.run(["git", "-C", str(root), "-c", "user.email=b@b", "-c", "user.name=bench", *a],  # noqa: E731
                                    check=True, capture_output=True)
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "bench code")
    return root


def one(name: str, tmp: Path, project: Path) -> dict:
    cfg = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    cfg["data"]["path"] = str((REPO / "configs" / cfg["data"]["path"]).resolve())  # relative to the config
    cfg["data"]["dvc_cache"] = str(tmp / "dvc-cache")
    cfg["features"] = {"cache_dir": str(tmp / name / "cache")}  # cold: features computed, as the audit recomputes them
    cfg["execution"] = {"work_dir": str(tmp / name / "runs")}
    cfg["tracking"] = {"uri": f"sqlite:///{tmp}/mlruns/mlflow.db", "experiment": "bench-audit"}
    cfg["registry"]["model_name"] = f"bench-{name}"
    f = tmp / f"{name}.yaml"
    f.write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(f), "--json"], capture_output=True, text=True, cwd=project,
                         env=dict(os.environ), timeout=3600)
    run_wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-3000:])
    trained = json.loads(run.stdout.strip().splitlines()[-1])
    t0 = time.perf_counter()
    audit = subprocess.run([sys.executable, "-m", "flows.cli", "audit", f"models:/bench-{name}/{trained['version']}", "--repo", str(project),
                            "--json", "--tracking-uri", cfg["tracking"]["uri"]], capture_output=True, text=True, cwd=REPO, timeout=3600)
    audit_wall = time.perf_counter() - t0
    report = json.loads(audit.stdout.strip().splitlines()[-1])
    return {"config": name, "passed": report["passed"], "exit_code": audit.returncode, "run_wall_s": round(run_wall, 1),
            "audit_wall_s": round(audit_wall, 1), "ratio_audit_vs_run": round(audit_wall / run_wall, 2),
            "run_recorded_s": round(report["original_wall_s"], 1),  # the MLflow run's own span: no Prefect start-up
            "ratio_audit_vs_recorded_run": round(audit_wall / report["original_wall_s"], 2),
            "agreement": report["agreement"], "bit_identical": report["bit_identical"],
            "recorded": report["recorded_metrics"], "reproduced": report["reproduced_metrics"],
            "max_weight_diff": report["max_weight_diff"], "tolerances": report["tolerances"],
            "checks": {c["name"]: c["passed"] for c in report["checks"]}}


def main(configs: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="tlops-bench-audit-") as tmp:
        tmp = Path(tmp)
        project = _project(tmp / "project")
        results = []
        for name in configs:
            results.append(one(name, tmp, project))
            print(json.dumps(results[-1]), flush=True)
    return save("audit", {"results": results})


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--configs", nargs="*", default=["text_linear_probe", "text_finetune", "image_finetune"])
    main(p.parse_args().configs)
