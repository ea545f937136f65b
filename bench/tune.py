"""`tlops tune` on the text demo (issue 31's done-means): 20 trials over the linear probe's settings on WordNet glosses
(MiniLM features from the demo's feature cache), SIGKILLed mid-search and resumed by the same command; compared with
the demo config's own validation macro-F1 (configs/text_linear_probe.yaml: logreg, C = 0.1, trained here the same way).

  python -m bench.tune [--trials 20] [--kill-after 6] [--mlp]

Everything but the feature cache lives in a temporary folder (its own MLflow store and study). Writes bench/out/tune.json
and prints the Markdown of bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import CONFIG, OUT, REPO, save

# the logistic-regression probe's C only: on the shared 2-core machine (load ~20) one MLP-head trial took 7 min (val 0.840,
# a logreg trial 0.808 in seconds), so a 20-trial space with the MLP head did not fit a session; `--mlp` searches it too
SPACE = {"strategy.C": "loguniform(1e-3, 10)"}
MLP_SPACE = {**SPACE, "strategy.head": ["logreg", "mlp"], "strategy.dropout": "uniform(0, 0.5)", "strategy.lr": "loguniform(1e-4, 1e-2)"}


def _config(work: Path, space: dict) -> Path:
    tree = yaml.safe_load(CONFIG.read_text())
    tree["data"]["path"] = str((CONFIG.parent / tree["data"]["path"]).resolve())
    tree["features"]["cache_dir"] = str(REPO / ".tlops" / "cache")
    tree["execution"] = {"work_dir": str(work / "runs")}
    tree["tracking"] = {"uri": f"sqlite:///{work}/mlruns/mlflow.db"}
    tree["search"] = space
    path = work / "text_tune.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _finished(folder: Path) -> int:
    import optuna

    db = next(folder.glob("tune/*/study.db"), None)
    if db is None:
        return 0
    try:
        study = optuna.load_study(study_name="tlops", storage=f"sqlite:///{db}")
    except Exception:  # not created yet
        return 0
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))


def demo_val(config: Path, work: Path) -> float:
    """The demo config's validation macro-F1, trained in-process as a trial is (features from the cache)."""
    from tlops.config import load_config
    from tlops.pipeline import features_step, train_step

    cfg = load_config(config)
    cfg.search = None
    feats = features_step(cfg, work / "demo" / "features")
    return train_step(cfg, feats, work / "demo" / "train").val_metrics["macro_f1"]


def main(argv: list[str]) -> None:
    trials = int(argv[argv.index("--trials") + 1]) if "--trials" in argv else 20
    kill_after = int(argv[argv.index("--kill-after") + 1]) if "--kill-after" in argv else 6
    work = Path(tempfile.mkdtemp(prefix="tlops-bench-tune-"))
    space = MLP_SPACE if "--mlp" in argv else SPACE
    config = _config(work, space)
    env = {**os.environ, "TLOPS_LOCAL_SERVER": "temporary", "HF_HUB_OFFLINE": "1"}
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "flows.cli", "tune", str(config), "--trials", str(trials), "--json"]
    t0 = time.perf_counter()
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    while _finished(work / "runs") < kill_after and first.poll() is None:
        time.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)  # the search and its temporary Prefect server, mid-trial
    first.wait()
    killed_at = _finished(work / "runs")
    t1 = time.perf_counter()
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    t2 = time.perf_counter()
    if second.returncode != 0:
        raise SystemExit(second.stderr[-3000:])
    s = json.loads(second.stdout.splitlines()[-1])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("wordnet-supersense").experiment_id
    runs = client.search_runs([exp], "tags.`tlops.kind` = 'tune_trial'", max_results=1000)
    base = demo_val(config, work)
    res = {"trials": trials, "killed_after_finished": killed_at, "first_seconds": t1 - t0, "resume_seconds": t2 - t1,
           "resumed_before": s["before"], "retried": s["retried"], "ran_after_resume": s["ran"],
           "states": [t["state"] for t in s["trials"]], "trial_runs_logged": len(runs),
           "trial_run_status": sorted(r.info.status for r in runs), "best": s["best"], "test_metrics": s["test_metrics"],
           "demo_val_macro_f1": base, "space": space}
    save("tune", res)
    report(res)


def report(r: dict) -> None:
    b = r["best"]
    print("| trials | killed after | resumed: retried / ran | trial runs logged | best val macro-F1 | demo config val macro-F1 | "
          "winner's test macro-F1 | best settings |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {r['trials']} ({r['states'].count('pruned')} pruned, {r['states'].count('fail')} failed) | {r['killed_after_finished']} finished "
          f"| {r['retried']} / {r['ran_after_resume']} | {r['trial_runs_logged']} | {b['value']:.4f} | {r['demo_val_macro_f1']:.4f} | "
          f"{r['test_metrics'].get('macro_f1', float('nan')):.4f} | {json.dumps(b['params'])} |")
    print(f"\nwall: {r['first_seconds']:.0f} s until the kill, {r['resume_seconds']:.0f} s to resume and finish")


if __name__ == "__main__":
    if "--report" in sys.argv:
        report(json.loads((OUT / "tune.json").read_text()))
    else:
        main(sys.argv[1:])
