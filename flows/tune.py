"""The search flow of `tlops tune`: one MLflow run for the search (its config, space, every trial's value, the best
config and the winner's test metrics), one Prefect task and one nested MLflow run per trial (`tasks/tune.py`), the
Optuna study in `<execution.work_dir>/tune/<model>-<key>/study.db` so the same command resumes a killed search."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, RunTag
from prefect import flow

from flows.prefect_heartbeats import stop_heartbeats_promptly
from flows.train import resolve_paths
from tasks.evaluate import evaluate_task
from tasks.tracking import log_json, tracked_run
from tasks.tune import trial_task
from tlops.config import config_from_dict
from tlops.records import TRAIN_RESULT, FeatureSet
from tlops.resolve import open_dataset
from tlops.secrets import mask
from tlops.task_types import task_type
from tlops.tuning import (Pruned, TrialOutcome, best_config_text, open_study, parse_pruner, parse_search, run_search, study_dir,
                          trial_config)

stop_heartbeats_promptly()

BEST_CONFIG = "best_config.yaml"


def _trial_dir(folder: Path, number: int) -> Path:
    return folder / "trials" / f"{number:04d}"


@flow(name="tlops-tune")
def tune_flow(config: dict, source: str, trials: int, timeout: float | None = None, name: str | None = None,
              best_out: str | None = None, overrides: list[str] | None = None, score_test: bool = True,
              progress: bool = True) -> dict:
    """Run (or resume) the search until the study holds `trials` finished trials; write the best trial's config to
    `best_out` (the `source` file as written, with `overrides` and the best values: `tlops.tuning.best_config_text`) and,
    with `score_test`, score the best trial once on the test split. Returns a summary dict."""
    cfg = resolve_paths(config_from_dict(config, source))
    space = parse_search(cfg.search, source)
    pruner = parse_pruner(cfg.search, source)
    tt = task_type(open_dataset(cfg).task)
    folder = study_dir(cfg, space, name).resolve()
    st = open_study(folder, tt.selection_metric, tt.selection_higher_is_better, cfg.seed, trials, pruner)
    before = len(st.finished)
    try:
        with tracked_run(cfg, source) as (client, run_id):
            experiment_id = client.get_run(run_id).info.experiment_id
            uri = mlflow.get_tracking_uri()
            client.log_batch(run_id, tags=[RunTag("tlops.kind", "tune"), RunTag("tlops.tune.folder", str(folder)),
                                           RunTag("tlops.tune.trials_before", str(before)),
                                           RunTag("tlops.tune.retried", ",".join(map(str, st.resumed)) or "none")])
            log_json(client, run_id, {"metric": f"val_{tt.selection_metric}", "direction": "maximize" if st.maximize else "minimize",
                                      "space": {p.key: p.describe() for p in space}, "pruner": pruner, "trials": trials, "timeout_s": timeout},
                     "tune/search.json")
            if st.study.user_attrs.get("parent_runs") is None:
                st.study.set_user_attr("parent_runs", [])
            st.study.set_user_attr("parent_runs", [*st.study.user_attrs["parent_runs"], run_id])
            best_dir: list[Path | None] = [_best_dir(st, folder)]

            def run_trial(trial, values: dict) -> float:
                tcfg = trial_config(cfg, values)
                tcfg.execution.work_dir = str(folder)  # checkpoints under the study: a retried trial resumes from them
                r = trial_task(tcfg, trial.number, values, trial, str(folder), run_id, experiment_id, uri)
                trial.set_user_attr("run_id", r["run_id"])
                if r["state"] == "pruned":
                    raise Pruned(r["epoch"], r["value"])
                return r["value"]

            def after(o: TrialOutcome) -> None:
                now = int(time.time() * 1000)
                best = st.best
                metrics = [Metric("trial_seconds", o.seconds, now, o.number)]
                if o.value is not None:
                    metrics.append(Metric(f"trial_val_{tt.selection_metric}", o.value, now, o.number))
                if best is not None:
                    metrics.append(Metric(f"best_val_{tt.selection_metric}", best.value, now, o.number))
                client.log_batch(run_id, metrics=metrics)
                keep = _trial_dir(folder, best.number) if best is not None else None
                if o.state != "complete" or _trial_dir(folder, o.number) != keep:  # only the best trial's model is kept
                    shutil.rmtree(_trial_dir(folder, o.number) / "train", ignore_errors=True)
                if best_dir[0] is not None and best_dir[0] != keep:
                    shutil.rmtree(best_dir[0] / "train", ignore_errors=True)
                best_dir[0] = keep
                if progress:
                    _say(o, best, trials, tt.selection_metric)

            outcomes = run_search(st, space, trials, run_trial, timeout=timeout, on_trial=after)
            best = st.best
            rows = _trial_rows(st)
            log_json(client, run_id, rows, "tune/trials.json")
            summary: dict[str, Any] = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": mask(uri), "folder": str(folder),
                                       "metric": f"val_{tt.selection_metric}", "maximize": st.maximize, "trials": rows,
                                       "ran": len(outcomes), "before": before, "retried": st.resumed, "finished": len(st.finished),
                                       "best": None, "test_metrics": None}
            if best is None:
                client.set_tag(run_id, "tlops.tune.best", "none")
                return summary
            summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                               "run_id": best.user_attrs.get("run_id")}
            client.log_batch(run_id, metrics=[Metric(f"best_val_{tt.selection_metric}", best.value, int(time.time() * 1000), 0)],
                             tags=[RunTag("tlops.tune.best_trial", str(best.number)),
                                   RunTag("tlops.tune.best_params", json.dumps(best.params)[:5000])])
            if best_out is not None:
                text = best_config_text(Path(source), overrides or [], best.params, Path(best_out))
                Path(best_out).parent.mkdir(parents=True, exist_ok=True)
                Path(best_out).write_text(text, encoding="utf-8")
                client.log_text(run_id, text, f"tune/{BEST_CONFIG}")
                summary["best_config"] = best_out
            if len(st.finished) >= trials:  # done: the trials' checkpoints are no longer needed
                shutil.rmtree(folder / "checkpoints", ignore_errors=True)
            if score_test:  # the winner only, once: the search itself read validation metrics only
                bdir = _trial_dir(folder, best.number)
                if (bdir / "result.json").is_file():
                    result = TRAIN_RESULT.validate_json((bdir / "result.json").read_text())
                    feats = FeatureSet.model_validate_json((bdir / "features.json").read_text())
                    bcfg = trial_config(cfg, best.params)
                    ev = evaluate_task(bcfg, run_id, feats, result, str(folder / "eval"))
                    summary["test_metrics"] = ev.metrics
                else:
                    summary["test_unscored"] = f"trial {best.number}'s model is gone from {bdir}"
            return summary
    finally:
        st.close()


def _say(o: TrialOutcome, best, trials: int, metric: str) -> None:
    from flows.console import esc, status

    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in o.params.items())
    what = f"val_{metric} {o.value:.4f}" if o.state == "complete" else f"{o.state}: {o.error}"
    lead = f"; best so far trial {best.number} ({best.value:.4f})" if best is not None else ""
    status(f"[dim]trial {o.number} ({esc(shown)}): {esc(what)} in {o.seconds:.1f} s{lead}[/dim]")


def _best_dir(st, folder: Path) -> Path | None:
    best = st.best
    return _trial_dir(folder, best.number) if best is not None else None


def _trial_rows(st) -> list[dict]:
    """Every trial of the study (earlier searches' too), oldest first: number, state, value, params, MLflow run."""
    return [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
             "interrupted": bool(t.system_attrs.get("tlops_interrupted")), "retry_of": t.user_attrs.get("retry_of"),
             "run_id": t.user_attrs.get("run_id"),
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None}
            for t in st.study.get_trials(deepcopy=False)]


def link_registered(cfg, search_run_id: str, outcome) -> None:
    """Tag the search's run (in `cfg`'s store) with the normal run that trained and gated its winner (`tlops tune --register`)."""
    from mlflow.tracking import MlflowClient

    from tasks.tracking import tracking_uri

    uri = tracking_uri(cfg)
    client = MlflowClient(uri, registry_uri=uri)
    client.set_tag(search_run_id, "tlops.tune.registered_run", outcome.run_id)
    client.set_tag(search_run_id, "tlops.tune.registered_version", f"{outcome.model_name}/{outcome.version}")
