"""`tlops drift` on the zoo's tiny text classifier (a random-weights tiny BERT: a code path, not a pretrained model):
a sample of its training inputs is no drift (its test texts, other fill words in the same templates, already move
in this random feature space), strings of another kind are drift, with the rows that look most out of
distribution named; the check is logged as an MLflow run tagged with the model version (on a copy of the zoo's store);
a model URI that names no registered version, and a CSV without an input column, are one error line each."""

from __future__ import annotations

import csv
import json

from mlflow.tracking import MlflowClient

from tests.cli import cli


def _csv(path, texts):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([t] for t in texts)
    return path


def test_drift_tells_new_kinds_of_input_from_the_training_kind(zoo, tmp_path):
    text = zoo.text
    uri = text.copy_store(tmp_path)
    with open(text.data / "train.csv") as f:  # half of the training inputs: the same distribution
        like_training = [row["text"] for row in csv.DictReader(f)][::2]
    same = cli("drift", text.model_uri(), "--data", str(_csv(tmp_path / "same.csv", like_training)), "--json", "--no-log",
               "--permutations", "200", "--tracking-uri", uri, cwd=tmp_path)
    assert same.returncode == 0, same.stderr[-2000:]
    got = json.loads(same.stdout)
    assert got["verdict"] == "no drift" and got["mmd_p_value"] > 0.01, got
    assert got["reference_rows"] == 42 and got["new_rows"] == len(like_training) and got["cache"]["hits"] > 0, got

    other = [f"{i:05d} {'#' * (i % 7 + 1)} {'zq' * (i % 5 + 2)} [/b] 0x{i * 7919:08x}" for i in range(40)]
    shifted = cli("drift", text.model_uri(), "--data", str(_csv(tmp_path / "shifted.csv", other)), "--permutations", "200",
                  "--tracking-uri", uri, cwd=tmp_path)
    assert shifted.returncode == 0, shifted.stderr[-2000:]
    assert shifted.stdout.startswith("drift ") and "MMD p-value" in shifted.stdout and "[/b]" in shifted.stdout, shifted.stdout
    run_id = shifted.stdout.split("logged as MLflow run ")[1].split()[0]
    run = MlflowClient(uri, registry_uri=uri).get_run(run_id)
    assert run.data.tags["tlops.drift.verdict"] == "drift" and run.data.tags["tlops.drift.model"] == "tiny-text/2", run.data.tags
    assert run.data.metrics["domain_auc"] >= 0.75 and run.data.metrics["mmd_p_value"] < 0.01, run.data.metrics

    unknown = cli("drift", "models:/no-such-model@champion", "--data", str(tmp_path / "same.csv"), "--tracking-uri", uri, cwd=tmp_path)
    assert unknown.returncode != 0 and unknown.stderr.count("error:") == 1 and "no-such-model" in unknown.stderr, unknown.stderr
    (tmp_path / "bad.csv").write_text("words\nhello\n")
    bad = cli("drift", text.model_uri(), "--data", str(tmp_path / "bad.csv"), "--tracking-uri", uri, cwd=tmp_path)
    assert bad.returncode != 0 and "needs a 'text' (texts) or 'path'" in bad.stderr, bad.stderr
