"""The MLflow run of `tlops rank`: one run in the config's experiment (tag `tlops.kind=rank`) holding the ranking as
artifacts (`rank/ranking.json`, the table as `rank/ranking.md`), each candidate's scores and seconds as metrics
(`logme/<candidate>`, `h_score/<candidate>`, `seconds/<candidate>`) and the recommendation as a tag."""

from __future__ import annotations

import json
import re
import time

from mlflow.entities import Metric, Param, RunTag

from tasks.tracking import OUTCOME_TAG, log_json, owner_tag, setup
from tlops.config import RunConfig, default_run_name
from tlops.transferability.rank import Ranking


def metric_key(name: str) -> str:
    """A candidate's name as MLflow allows it in a metric key (letters, digits, `_ - . /` and spaces)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)[:200]


def markdown_table(r: Ranking) -> str:
    regression = all(c.h_score is None for c in r.candidates)
    lines = ["| # | candidate | LogME | H-score | seconds | features | parameters |", "|---|---|---|---|---|---|---|"]
    for i, c in enumerate(r.candidates, 1):
        name = c.name.replace("|", "\\|")
        hs = "-" if regression or c.h_score is None else f"{c.h_score:.2f}"
        lines.append(f"| {i} | `{name}` | {c.logme:.3f} | {hs} | {c.seconds:.1f} | {c.num_features} | {c.parameters if c.parameters is not None else '-'} |")
    best = f"\n\nRecommended: `{r.best.name}` (LogME, higher is better)" if r.best else ""
    return (f"Ranking on `{r.data}` ({r.task}, {r.rows} of {r.train_rows} training rows, {r.seconds:.1f} s)\n\n"
            + "\n".join(lines) + best + "\n")


def log_ranking(cfg: RunConfig, ranking: Ranking, source: str) -> tuple[str, str]:
    """Log the ranking as a FINISHED run; returns (run id, experiment id)."""
    client, experiment_id = setup(cfg)
    tags = {"mlflow.runName": default_run_name(f"{cfg.registry.model_name}-rank"), "tlops.kind": "rank",
            "tlops.config_source": source, "tlops.owner": owner_tag(), OUTCOME_TAG: "finished",
            "tlops.rank.recommendation": ranking.best.name if ranking.best else "none"}
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    params = {"rank.task": ranking.task, "rank.rows": str(ranking.rows), "rank.train_rows": str(ranking.train_rows),
              "rank.ranked_by": "logme", "rank.candidates": json.dumps([c.name for c in ranking.candidates])[:6000],
              "data.path": ranking.data, **{f"backbone.{k}": json.dumps(v) if isinstance(v, list) else str(v)
                                            for k, v in cfg.backbone.model_dump().items() if k != "name"}}
    now = int(time.time() * 1000)
    metrics = [Metric("seconds", ranking.seconds, now, 0)]
    for c in ranking.candidates:
        key = metric_key(c.name)
        metrics += [Metric(f"logme/{key}", c.logme, now, 0), Metric(f"seconds/{key}", c.seconds, now, 0)]
        if c.h_score is not None:
            metrics.append(Metric(f"h_score/{key}", c.h_score, now, 0))
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()], tags=[RunTag("tlops.strategy", "none")])
    log_json(client, run_id, ranking.as_dict(), "rank/ranking.json")
    client.log_text(run_id, markdown_table(ranking), "rank/ranking.md")
    client.set_terminated(run_id, "FINISHED")
    return run_id, experiment_id
