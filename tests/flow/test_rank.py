"""`tlops rank`: candidates embedded once through the feature cache and listed best LogME first and logged as an MLflow
run (table artifact, scores as metrics), the second ranking from the cache alone and not logged (--no-log), and one `error:` line for a name no kind accepts and for a task rank cannot score. Which candidate wins
on 42 templated sentences says nothing (both fit them exactly); bench/rank.py measures the ranking on the demo sets."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from tests.cli import cli
from tasks.rank import metric_key
from tests.helpers import make_ner_dataset, minilm_folder, tiny_config


def test_rank_orders_candidates_caches_features_and_refuses_bad_input(tmp_path, text_dataset, tiny_bert):
    config = tmp_path / "rank.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, text_dataset, tiny_bert)))
    pretrained, random_ = f"hf:{minilm_folder()}", f"hf:{tiny_bert}"

    first = cli("rank", str(config), "--backbones", random_, pretrained, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    rows = report["candidates"]
    assert sorted(c["name"] for c in rows) == sorted([pretrained, random_])
    assert rows[0]["logme"] > rows[1]["logme"] and report["recommendation"] == rows[0]["name"], rows  # best first
    assert all(0 < c["h_score"] <= 2 for c in rows)  # three classes: at most 2
    width = {c["name"]: (c["num_features"], c["parameters"]) for c in rows}
    assert width[pretrained][0] == 384 and width[random_][0] == 32 and width[pretrained][1] > 2e7 > width[random_][1] > 1e6
    assert report["task"] == "classification" and report["rows"] == report["train_rows"] == 42
    assert all(c["cache_misses"] == 42 and c["cache_hits"] == 0 for c in rows)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")  # the ranking's MLflow run: table, scores, recommendation
    run = client.get_run(report["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["tlops.kind"] == "rank"
    assert run.data.tags["tlops.rank.recommendation"] == rows[0]["name"]
    assert run.data.metrics[f"logme/{metric_key(pretrained)}"] == next(c["logme"] for c in rows if c["name"] == pretrained)
    table = Path(client.download_artifacts(run.info.run_id, "rank/ranking.md", str(tmp_path)))
    assert table.read_text().count("| `hf:") == 2 and "Recommended:" in table.read_text()

    again = cli("rank", str(config), "--backbones", f"{random_},{pretrained}", "--max-rows", "30", "--no-log")  # a table; a sample
    assert again.returncode == 0, again.stderr
    assert "recommended:" in again.stdout and "30 of 42 training rows" in again.stdout
    assert again.stdout.count("30/0") == 2, again.stdout  # every sampled row from the cache, none embedded
    assert len(client.search_runs([run.info.experiment_id])) == 1  # --no-log: printed only

    unknown = cli("rank", str(config), "--backbones", pretrained, "nope:[bold]x[/bold]")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.count("error:") == 1 and "nope:[bold]x[/bold]" in unknown.stderr, unknown.stderr  # escaped, not markup

    ner = tmp_path / "ner.yaml"
    ner_data = make_ner_dataset(tmp_path / "ner")  # tiny CoNLL files: the tier runs without the demo data
    ner.write_text(yaml.safe_dump(tiny_config(tmp_path, ner_data, tiny_bert, registry__metric="f1")))
    refused = cli("rank", str(ner), "--backbones", pretrained, random_)
    assert refused.returncode == 2 and refused.stderr.count("error:") == 1, refused.stderr
    assert "token_classification" in refused.stderr and "tlops rank scores one pooled feature vector" in refused.stderr
