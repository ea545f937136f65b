"""`tlops compare` (issue 27, "Build, beyond the fixes") on the session zoo's tiny-text versions: v1 (C=1e-6) and v2
(C=1, the champion) differ in one setting; v3 is an MLP head. Every value the tests expect is read back from MLflow
with its own client, not written down here."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.cli import cli


def _versions(client: MlflowClient, name: str) -> list:
    return sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))


def test_table_shows_both_versions_with_the_settings_that_differ_and_their_metrics(zoo):
    text = zoo.text
    client = MlflowClient(text.uri, registry_uri=text.uri)  # not the process-wide registry URI an earlier test set
    v1, v2 = _versions(client, text.name)[:2]
    r = cli("compare", text.model_uri("1"), text.model_uri("@champion"), "--tracking-uri", text.uri)
    assert r.returncode == 0, r.stderr
    assert "tiny-text v1" in r.stdout and "tiny-text v2 (champion)" in r.stdout, r.stdout
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in r.stdout.splitlines()
            if line.startswith("│")}
    runs = [client.get_run(v.run_id) for v in (v1, v2)]
    assert rows["run"] == [v.run_id[:12] for v in (v1, v2)]
    assert rows["strategy.C"] == [run.data.params["strategy.C"] for run in runs]  # the one setting that differs
    assert "strategy.head" not in rows and "strategy.max_iter" not in rows  # the same in both: not shown
    for key in ("test_macro_f1", "test_accuracy", "train_val_macro_f1"):
        assert rows[key] == [f"{run.data.metrics[key]:.4f}" for run in runs], (key, rows[key])
    assert rows["data version"] == [run.data.tags["data.version_md5"][:12] for run in runs]  # the DVC md5 of the folder, as `tlops models` shows it
    assert rows["strategy"] == [run.data.tags["tlops.strategy"] for run in runs]
    assert all(float(s) > 0 for s in rows["seconds (run)"])


def test_json_and_html_page_embed_every_versions_curves_and_confusion_matrix(zoo, tmp_path):
    text = zoo.text
    client = MlflowClient(text.uri, registry_uri=text.uri)  # not the process-wide registry URI an earlier test set
    versions = _versions(client, text.name)
    page = tmp_path / "out" / "compare.html"
    r = cli("compare", text.name, "--html", str(page), "--json", "--tracking-uri", text.uri)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [run["run_id"] for run in got["runs"]] == [v.run_id for v in versions]
    assert [run["version"] for run in got["runs"]] == [str(v.version) for v in versions]
    for run, v in zip(got["runs"], versions):
        logged = client.get_run(v.run_id).data
        assert run["metrics"] == logged.metrics and run["params"] == logged.params
    assert {"strategy.C", "strategy.head", "registry.margin"} <= set(got["differing"])
    assert got["html"] == str(page) and page.is_file()
    html = page.read_text(encoding="utf-8")
    for v in versions:
        assert v.run_id in html
        for plot in ("learning_curves.png", "confusion_matrix.png"):  # each run's own logged plot, embedded as logged
            dest = tmp_path / "dl" / str(v.version)
            dest.mkdir(parents=True, exist_ok=True)
            data = Path(client.download_artifacts(v.run_id, f"plots/{plot}", str(dest))).read_bytes()
            assert base64.b64encode(data).decode("ascii") in html, (v.version, plot)
    # v3 is the only one trained by epochs: its per-epoch loss is in the overlaid curves (JSON carries them too)
    epochs = client.get_metric_history(versions[2].run_id, "train_loss")
    assert got["runs"][2]["curves"]["train_loss"] == [[m.step, m.value] for m in sorted(epochs, key=lambda m: m.step)]
    assert "Learning curves, overlaid" in html and "Test metrics" in html


@pytest.mark.parametrize("reader", ["sqlite", "mlflow"])
def test_unknown_run_version_and_markup_looking_names_are_one_line_each(zoo, reader, monkeypatch):
    """The same line from the direct SQLite check (before MLflow's import) and from MLflow's path (any other store)."""
    if reader == "mlflow":
        monkeypatch.setattr("flows.commands.compare.check_fast", lambda uri, refs: None)
    text = zoo.text
    cases = {"0123456789abcdef0123456789abcdef": "unknown run or model '0123456789abcdef0123456789abcdef'",
             text.model_uri("9"): "model 'tiny-text' has no version '9'; its versions: 1, 2, 3",
             text.model_uri("@nope"): "model 'tiny-text' has no alias 'nope'; its aliases: challenger, champion",
             "models:/not-a-model@champion": "unknown model 'not-a-model'; registered models: tiny-text",
             "0000000000": "unknown run or model '0000000000'",  # a run id prefix (none of the store's random ids has it)
             "[bold]not-a-model[/bold]": "unknown run or model '[bold]not-a-model[/bold]'"}
    for ref, expected in cases.items():
        r = cli("compare", text.name, ref, "--tracking-uri", text.uri)
        assert r.returncode == 1 and r.stdout == "", (ref, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (ref, r.stderr)
    assert "tlops models" in lines[0]  # the fix: where the names are


def test_a_markup_looking_model_name_prints_as_written(zoo, tmp_path):
    text = zoo.text
    uri = text.copy_store(tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    name = "[bold red]tiny[b]"  # MLflow refuses '/' in a name: no closing tags
    run_name = "[/bold] <i>run</i> [b]"
    v1 = _versions(client, text.name)[0]
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{v1.run_id}/model", run_id=v1.run_id)
    client.set_tag(v1.run_id, "mlflow.runName", run_name)  # in the copy only
    page = tmp_path / "page.html"
    r = cli("compare", name, "--tracking-uri", uri, "--html", str(page))
    assert r.returncode == 0, r.stderr
    assert f"{name} v1" in r.stdout and run_name in r.stdout, r.stdout
    assert "one run: no settings to compare it with" in r.stdout
    html = page.read_text(encoding="utf-8")
    assert "[/bold] &lt;i&gt;run&lt;/i&gt; [b]" in html and "<i>run</i>" not in html  # escaped for HTML too
