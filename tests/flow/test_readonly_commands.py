"""`tlops models` and `tlops history` read a SQLite store directly (flows/commands/_registry_read.py: no MLflow,
Prefect or torch import; issue 27 item 7). Here the direct reader and MLflow's client answer the same on registered
stores, including a deleted version, a promote with a markup-looking reason and an unknown model; and the commands'
process imports none of those libraries. Their time is measured in bench/readonly_commands.py, not asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flows.commands._registry_read import MlflowReader, SqliteReader, read
from tests.cli import cli
from tests.helpers import REPO
from tlops.errors import RegistryError


def _both(uri: str, what: str, *args):
    """(direct SQLite reader, MLflow reader) answers, moves as their JSON rows."""
    from tlops.aliases import as_row

    sq = SqliteReader(uri)
    try:
        fast = getattr(sq, what)(*args)
    finally:
        sq.db.close()
    slow = getattr(MlflowReader(uri), what)(*args)
    if what == "history":
        return [as_row(m) for m in fast], [as_row(m) for m in slow]
    return fast, slow


def test_the_direct_reader_answers_as_mlflow_does(zoo, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = zoo.text.copy_store(tmp_path)
    assert cli("promote", "tiny-text", "3", "--reason", "see [/ops] ticket", "--tracking-uri", uri).returncode == 0
    MlflowClient(uri).delete_model_version("tiny-text", "1")  # MLflow keeps it as stage Deleted_Internal: gone for both
    models = _both(uri, "models")
    assert models[0] == models[1] and models[0][0]["name"] == "tiny-text" and models[0][0]["versions"] == 2, models
    versions = _both(uri, "versions", "tiny-text")
    assert versions[0] == versions[1] and [v["version"] for v in versions[0]] == ["2", "3"], versions
    assert versions[0][1]["aliases"] == ["challenger", "champion"] and versions[0][1]["test_metric"] is not None
    history = _both(uri, "history", "tiny-text")
    assert history[0] == history[1] and history[0][-1]["reason"] == "see [/ops] ticket", history
    for reader in (SqliteReader(uri), MlflowReader(uri)):
        with pytest.raises(RegistryError) as e:
            reader.history("nope")
        assert str(e.value) == "unknown model 'nope'; registered models: tiny-text (see `tlops models`)"


def test_the_direct_reader_leaves_other_stores_and_refused_names_to_mlflow(zoo, tmp_path):
    uri = zoo.text.copy_store(tmp_path)
    with pytest.raises(RegistryError, match=r"'a/b' is not a model name MLflow accepts"):  # MLflow's own words
        read(uri, "history", "a/b")
    missing = tmp_path / "elsewhere" / "mlruns" / "mlflow.db"
    missing.parent.mkdir(parents=True)
    with pytest.raises(RegistryError, match=f"no MLflow store at {missing}: that SQLite file does not exist"):
        read(f"sqlite:///{missing}", "models")  # refused, not created empty (tests/unit/test_missing_store.py)
    assert not missing.exists()


IMPORTS = """
import sys
from flows.cli import app
code = 0
try:
    app(sys.argv[1:])
except SystemExit as e:
    code = e.code or 0
print(json.dumps({"code": code, "loaded": sorted(m for m in ("mlflow", "prefect", "torch", "transformers", "sqlalchemy", "pandas")
                                                   if m in sys.modules)}))
"""


def test_models_and_history_import_no_mlflow_prefect_or_torch(zoo, tmp_path):
    """Nor do predict, serve and audit to say that a model is unknown (they check the name before their imports)."""
    uri = zoo.text.copy_store(tmp_path)
    for args in (["models"], ["models", "tiny-text"], ["history", "tiny-text"], ["history", "nope"],
                 ["predict", "models:/nope@champion", "hi"], ["serve", "models:/nope/1", "--port", "0"], ["audit", "models:/nope@champion"]):
        out = subprocess.run([sys.executable, "-c", "import json" + IMPORTS, *args, "--tracking-uri", uri], capture_output=True,
                             text=True, cwd=REPO, timeout=120, env={**os.environ, "COLUMNS": "200"})
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result == {"code": 1 if any("nope" in a for a in args) else 0, "loaded": []}, (args, result, out.stderr[-2000:])
        assert ("unknown model 'nope'" in out.stderr) == any("nope" in a for a in args), out.stderr


def test_the_direct_readers_public_lookups_answer_as_mlflow(zoo, tmp_path):
    """What `tlops compare`'s fast check asks the reader (aliases, versions, a run id prefix) through its public methods."""
    from mlflow.tracking import MlflowClient

    uri = zoo.text.copy_store(tmp_path)
    client = MlflowClient(uri)
    versions = client.search_model_versions("name='tiny-text'")
    reader = SqliteReader(uri)
    try:
        assert reader.alias_names("tiny-text") == sorted(client.get_registered_model("tiny-text").aliases)
        assert reader.version_numbers("tiny-text") == sorted((str(v.version) for v in versions), key=int)
        run_id = versions[0].run_id
        assert reader.has_run(run_id) and reader.has_run(run_id[:8]) and not reader.has_run("0" * 32)
        assert not reader.has_run("%") and not reader.has_run("_")  # compared as text, not as LIKE patterns
        assert reader.alias_names("nope") == [] and reader.version_numbers("nope") == []
    finally:
        reader.close()
