"""Few-shot serving (issue 12): a registered meta-transfer model adapts to a support set given at predict time
(new classes, no retraining, no new version), through `mlflow.pyfunc.load_model` in a fresh process and
through `tlops predict --support`; bad support sets and bad inputs (issue 14: blank, NUL) give one clear line.

The model is meta-trained on the tiny random-weight BERT (a code path, NOT a pretrained model) by the core
pipeline, then logged and registered by the pipeline's own register task (`register_task.fn`, no Prefect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.flow.test_fewshot_serving import NAME, NEW, PLACES, QUERIES, _support_rows, registered  # noqa: F401 (fixtures used by name)
from tests.helpers import REPO

SCRIPT = textwrap.dedent("""
    import json, sys
    import mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    model = mlflow.pyfunc.load_model(sys.argv[2])
    case = json.loads(sys.argv[3])
    out = {"registered": [str(x) for x in model.predict(case["queries"])]}
    support = json.dumps(case["support"])
    out["adapted"] = [str(x) for x in model.predict(case["queries"], params={"support": support})]
    proba = model.predict(case["queries"], params={"support": support, "proba": True})
    out["proba_columns"], out["proba_sums"] = list(proba.columns), proba.sum(axis=1).round(5).tolist()
    out["errors"] = {}
    for name, (inputs, params) in case["bad"].items():
        try:
            model.predict(inputs, params=params)
            out["errors"][name] = None
        except Exception as e:
            out["errors"][name] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))
""")


def _bad_cases() -> dict:
    ok = ["a kettle seen near the road"]
    rows = _support_rows(2)
    return {
        "no_label_column": (ok, {"support": json.dumps([{"text": "a kettle", "category": "kettle"}] + rows)}),
        "unknown_input_key": (ok, {"support": json.dumps(rows + [{"sentence": "a lantern", "label": "lantern"}])}),
        "path_rows_for_a_text_model": (ok, {"support": json.dumps([{"path": "a.png", "label": "x"}, {"path": "b.png", "label": "y"}])}),
        "empty_support": (ok, {"support": "[]"}),
        "one_class": (ok, {"support": json.dumps([r for r in rows if r["label"] == "kettle"])}),
        "empty_class_example": (ok, {"support": json.dumps(rows + [{"text": "  ", "label": "lantern"}])}),
        "blank_label": (ok, {"support": json.dumps(rows + [{"text": "a lantern", "label": " "}])}),
        "not_json": (ok, {"support": "[{'text': 'a kettle'"}),
        "blank_input": (["a kettle seen near the road", "   "], None),
        "nul_input": (["a kettle\x00seen"], None),
    }


def test_a_fresh_process_adapts_the_registered_model_to_new_classes_and_refuses_bad_support_sets(registered):
    cfg, core, uri, _ = registered
    case = {"queries": [q for q, _ in QUERIES], "support": _support_rows(), "bad": _bad_cases()}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, uri, f"models:/{NAME}@champion", json.dumps(case)], capture_output=True,
                          text=True, cwd=REPO, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # without a support set: the registered (support) classes, as before
    assert set(out["registered"]) <= set(core.train.labels), out["registered"]
    # with one: classes the model never saw, right on this easy case (the topic word decides, as in meta-training)
    assert out["adapted"] == [label for _, label in QUERIES], out["adapted"]
    assert out["proba_columns"] == sorted(NEW) and out["proba_sums"] == [1.0] * len(QUERIES)
    err = out["errors"]
    expect = {
        "no_label_column": "support param row 1 has keys ['category', 'text']; each row needs 'label' and 'text' (unknown: ['category'])",
        "unknown_input_key": "support param row 7 has keys ['label', 'sentence']; each row needs 'label' and 'text' (unknown: ['sentence'])",
        "path_rows_for_a_text_model": "support param row 1 gives 'path' but this is a text model: its support rows need 'text' (texts)",
        "empty_support": "support param is empty; give a few labelled rows for each class",
        "one_class": "support param has one class ('kettle'); a few-shot prediction chooses among its classes: give rows of at least 2",
        "empty_class_example": "support param row 7 is empty or only whitespace ('  '); remove the row or give it text",
        "blank_label": "support param row 7 has label ' '; give every support row a non-empty label",
        "not_json": "support param is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 3)",
        "blank_input": "input row 2 is empty or only whitespace ('   '); remove the row or give it text",
        "nul_input": "input row 1 holds a NUL byte ('a kettle\\x00seen'); strip the \\x00 characters from the input",
    }
    for name, message in expect.items():
        assert err[name] is not None and err[name].startswith("DataError: ") and message in err[name], (name, err[name])
