"""Seconds of the read-only commands on the default SQLite store (issue 27 item 7: `tlops models`, `tlops history NAME`
and an unknown-model error, each <= 2 s), against named baselines: Python starting (`python -c pass`) and importing
MLflow (`python -c "import mlflow"`), the floor of any command that goes through MLflow's client.

    .venv/bin/python bench/readonly_commands.py [--runs 5] [--code DIR] [--store PATH/mlruns/mlflow.db]

Each command runs as a fresh process (`python -m flows.cli ...`, what the `tlops` script runs) from a project folder
holding mlruns/mlflow.db, with no --tracking-uri and no MLFLOW_TRACKING_URI: the default store. The median of --runs
is reported. The store is a copy of --store, or else one made here with MLflow's client: 3 models of 3 versions, each
version's run with the params, tags and metrics a `tlops run` records, champion and challenger aliases, and 4 alias
moves per model in the history experiment (no training: the commands read the registry only). --code DIR runs another
checkout's flows/tlops/tasks (PYTHONPATH=DIR), e.g. a `git worktree` of an earlier commit, for a before/after."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
TARGET_S = 2.0
MODELS = ("bench-text", "bench-image", "bench-audio")


def make_store(root: Path) -> None:
    """A registry like a few `tlops run`s leave, made directly with MLflow's client (seconds, no training)."""
    import logging

    import mlflow
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    sys.path.insert(0, str(REPO))
    from tlops.aliases import AliasMove

    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    (root / "mlruns").mkdir(parents=True)
    client = MlflowClient(uri)
    history = client.create_experiment("tlops-alias-history", artifact_location=(root / "mlruns" / "artifacts").as_uri())
    for m, name in enumerate(MODELS):
        exp = client.create_experiment(name, artifact_location=(root / "mlruns" / "artifacts").as_uri())
        client.create_registered_model(name)
        for v in range(1, 4):
            run = client.create_run(exp, tags={"tlops.strategy": "linear_probe", "data.dvc_md5": f"{m}{v}" * 8, "git.commit": "ab" * 20,
                                               "git.dirty": "False"})
            rid = run.info.run_id
            for k, val in {"backbone.name": "hf:sentence-transformers/all-MiniLM-L6-v2", "registry.metric": "macro_f1",
                           "data.path": f"/data/{name}", "seed": "0", "registry.margin": "0.01"}.items():
                client.log_param(rid, k, val)
            client.log_metric(rid, "test_macro_f1", 0.7 + 0.05 * v)
            client.log_metric(rid, "test_accuracy", 0.75 + 0.05 * v)
            client.set_terminated(rid, "FINISHED")
            client.create_model_version(name, f"runs:/{rid}/model", run_id=rid,
                                        tags={"tlops.package_sha256": "0" * 64, "tlops.code_sha256": "1" * 64})
        client.set_registered_model_alias(name, "champion", "3")
        client.set_registered_model_alias(name, "challenger", "3")
        for i, (to, kind) in enumerate([("1", "gate"), ("2", "gate"), ("3", "gate"), ("3", "promote")]):
            move = AliasMove(model=name, alias="champion", from_version=str(max(1, i)) if i else None, to_version=to, expected=None,
                             applied=True, kind=kind, reason=f"bench move {i}", actor="bench@host", command="tlops promote")
            r = client.create_run(history, tags={"tlops.move": move.model_dump_json(), "tlops.move.model": name,
                                                 "tlops.move.alias": "champion", "tlops.move.applied": "true", "tlops.move.kind": kind})
            client.set_terminated(r.info.run_id, "FINISHED")
    mlflow.set_tracking_uri(None)


def median_s(cmd: list[str], cwd: Path, env: dict, runs: int) -> tuple[float, list[float], int]:
    times, rc = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - t)
        rc = p.returncode
    return statistics.median(times), [round(x, 3) for x in times], rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--code", type=Path, default=REPO, help="the checkout whose flows/, tasks/ and tlops/ run (default: this one)")
    ap.add_argument("--store", type=Path, help="an mlflow.db to copy (default: make one)")
    ap.add_argument("--name", help="the model whose history to read (default: the first registered)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tlops-bench-readonly-"))
    try:
        if args.store:
            (root / "mlruns").mkdir()
            shutil.copy(args.store, root / "mlruns" / "mlflow.db")
        else:
            make_store(root)
        import sqlite3

        names = sorted(r[0] for r in sqlite3.connect(root / "mlruns" / "mlflow.db").execute("SELECT name FROM registered_models"))
        name = args.name or names[0]
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        env["PYTHONPATH"] = str(args.code.resolve())
        py = [sys.executable]
        cases = {
            "python -c pass": py + ["-c", "pass"],
            "python -c 'import mlflow'": py + ["-c", "import mlflow"],
            "tlops models": py + ["-m", "flows.cli", "models"],
            f"tlops models {name}": py + ["-m", "flows.cli", "models", name],
            f"tlops history {name}": py + ["-m", "flows.cli", "history", name],
            "tlops history no-such-model (error)": py + ["-m", "flows.cli", "history", "no-such-model"],
        }
        rows = {}
        for label, cmd in cases.items():
            med, all_s, rc = median_s(cmd, root, env, args.runs)
            rows[label] = {"median_s": round(med, 3), "runs_s": all_s, "exit": rc}
        base, floor = rows["python -c pass"]["median_s"], rows["python -c 'import mlflow'"]["median_s"]
        print(f"code: {args.code.resolve()}   store: {len(names)} models   runs: {args.runs} (median)   target: <= {TARGET_S:.1f} s")
        print(f"{'command':<40}{'median s':>10}{'x python':>10}{'x import mlflow':>17}{'target':>9}{'exit':>6}")
        for label, r in rows.items():
            is_command = label.startswith("tlops")
            verdict = ("ok" if r["median_s"] <= TARGET_S else "OVER") if is_command else ""
            print(f"{label:<40}{r['median_s']:>10.2f}{r['median_s'] / base:>10.1f}{r['median_s'] / floor:>17.2f}{verdict:>9}{r['exit']:>6}")
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "readonly_commands.json").write_text(json.dumps({"benchmark": "readonly_commands", "code": str(args.code.resolve()),
                                                                "cores": os.cpu_count(), "runs": args.runs, "target_s": TARGET_S,
                                                                "results": rows}, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
