"""An extractive-QA model registered by `tlops run` answers {question, context} rows in a fresh Python process through
`mlflow.pyfunc.load_model` alone (the model's own copy of tlops, as a user's service loads it): the answer is a span
of each context at its character offsets. (tests/flow/test_qa.py checks the run and the pyfunc in-process.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import yaml

from tests.cli import cli
from tests.helpers import make_qa_dataset, tiny_config

SCRIPT = textwrap.dedent("""
    import json, sys
    import mlflow
    job = json.loads(sys.stdin.read())
    mlflow.set_tracking_uri(job["uri"])
    model = mlflow.pyfunc.load_model(job["model"])
    print(json.dumps({"tlops": __import__("tlops").__file__, "answers": model.predict(job["rows"])}))
""")


def test_a_registered_qa_model_answers_in_a_fresh_process(tmp_path, tiny_bert, prefect_api):
    data = make_qa_dataset(tmp_path / "data")
    cfg = tiny_config(tmp_path, data, tiny_bert, registry__metric="f1", registry__model_name="tiny-qa-fresh")
    (tmp_path / "qa.yaml").write_text(yaml.safe_dump(cfg))
    out = cli("run", str(tmp_path / "qa.yaml"), "--json", env={**os.environ, "PREFECT_API_URL": prefect_api})  # the harness's API
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [{"question": "Who built the bridge?", "context": "Zora built the bridge in the year 1900. Then Ada wrote the letter."},
            {"question": "Who wrote the letter?", "context": "Kurt wrote the letter."}]
    job = {"uri": cfg["tracking"]["uri"], "model": "models:/tiny-qa-fresh@champion", "rows": rows}
    fresh = subprocess.run([sys.executable, "-c", SCRIPT], input=json.dumps(job), capture_output=True, text=True, timeout=600,
                           cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    got = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert "artifacts/code/tlops" in got["tlops"].replace(os.sep, "/"), got["tlops"]  # the model's shipped code, not this checkout
    assert len(got["answers"]) == 2, got
    for row, a in zip(rows, got["answers"]):
        assert a["answer"] and row["context"][a["start"]:a["end"]] == a["answer"] and 0 < a["score"] <= 1, (row, a)
