"""Registered models load and predict in a fresh Python process, through `mlflow.pyfunc.load_model` alone (what a
user's own service does): one process loads every model of the session's zoo (text probe and MLP head, few-shot
text with support sets, meta-trained backbone groups, few-shot regression, image and audio regression, extractive QA,
speech recognition, object detection, semantic segmentation) and the checks below read its answers. One process, not
one per model: each start costs ~10 s of imports. The process starts outside this checkout with no PYTHONPATH, so
`tlops` can only come from the code the models ship (each job records which `tlops` it ran). The flow-tier tests
check the same models in this process (tests/flow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.flow.test_fewshot_serving import NEW, QUERIES, _support_rows
from tests.helpers import TEXTS, TOPICS
from tests.unit.test_meta_backbone import SUPPORT as INNER_SUPPORT
from tests.unit.test_meta_backbone import TEXTS as INNER_TEXTS

SCRIPT = textwrap.dedent("""
    import json, sys
    import mlflow
    out, code = {}, {}
    for name, job in json.loads(sys.stdin.read()).items():
        mlflow.set_tracking_uri(job["uri"])
        mlflow.set_registry_uri(job["uri"])
        model = mlflow.pyfunc.load_model(job["model"])
        code[name] = sys.modules["tlops"].__file__
        answers = []
        for inputs, params in job["calls"]:
            try:
                pred = model.predict(inputs, params=params)
            except Exception as e:
                answers.append({"error": f"{type(e).__name__}: {e}"})
                continue
            if hasattr(pred, "columns"):
                answers.append({"columns": list(pred.columns), "values": pred.to_numpy().tolist()})
            else:
                answers.append({"types": [type(v).__name__ for v in pred],
                                "values": [v if isinstance(v, (str, dict)) else float(v) for v in pred]})
        out[name] = answers
    out["_tlops"] = code
    print(json.dumps(out))
""")


def _bad_support_cases() -> dict:
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


TEXT_INPUTS = ["a small dog that barks at the moon", "a red car parked by the sea"]
REGRESSION_TEXTS = TEXTS[:4]
REGRESSION_SUPPORT = [{"text": t, "label": 3.0 * len(t) + 7} for t in TEXTS[150:153]]  # a new task's few labelled rows


def _media_inputs(reg) -> list[str]:
    return [str(reg.data / line.split(",")[0]) for line in (reg.data / "test.csv").read_text().splitlines()[1:3]]


QA_ROWS = [{"question": "Who built the bridge?", "context": "Zora built the bridge in the year 1900. Then Ada wrote the letter."},
           {"question": "Who wrote the letter?", "context": "Kurt wrote the letter."}]


def _files(reg, *names: str) -> list[str]:
    return [str(reg.data / n) for n in names]


@pytest.fixture(scope="module")
def fresh(zoo, tmp_path_factory) -> dict:
    """Every zoo model's answers from one fresh process: {job name: [one answer per call]}."""
    queries = [q for q, _ in QUERIES]
    support = json.dumps(_support_rows())
    bad = _bad_support_cases()
    jobs = {
        "text-mlp": {"uri": zoo.text.uri, "model": zoo.text.model_uri("3"), "calls": [(TEXT_INPUTS, None)]},
        "text-champion": {"uri": zoo.text.uri, "model": zoo.text.model_uri(), "calls": [(TEXT_INPUTS, None)]},
        "fewshot": {"uri": zoo.fewshot.uri, "model": zoo.fewshot.model_uri(), "calls": [
            (queries, None), (queries, {"support": support}), (queries, {"support": support, "proba": True}), *bad.values()]},
        "inner-groups": {"uri": zoo.inner_groups.uri, "model": zoo.inner_groups.model_uri(), "calls": [
            (INNER_TEXTS, None), (INNER_TEXTS, {"support": json.dumps(INNER_SUPPORT), "proba": True})]},
        "task-regression": {"uri": zoo.task_regression.uri, "model": zoo.task_regression.model_uri(), "calls": [
            (REGRESSION_TEXTS, None), (REGRESSION_TEXTS, {"support": json.dumps(REGRESSION_SUPPORT)})]},
        **{f"media-{name}": {"uri": reg.uri, "model": reg.model_uri(), "calls": [(_media_inputs(reg), None)]}
           for name, reg in zoo.media_regression.items()},
        "qa": {"uri": zoo.qa.uri, "model": zoo.qa.model_uri(), "calls": [(QA_ROWS, None)]},
        "asr": {"uri": zoo.asr.uri, "model": zoo.asr.model_uri(), "calls": [(_files(zoo.asr, "wav/test0.wav", "wav/test1.wav", "wav/val0.wav"), None)]},
        "detect": {"uri": zoo.detection.uri, "model": zoo.detection.model_uri(), "calls": [
            (_files(zoo.detection, "images/test-0.png", "images/test-1.png"), None)]},
        "segment": {"uri": zoo.segmentation.uri, "model": zoo.segmentation.model_uri(), "calls": [
            (_files(zoo.segmentation, "images/test-0.png", "images/test-1.png"), None)]},
    }
    # each job names its store; no PYTHONPATH and a folder outside the checkout: `tlops` only from the models' shipped code
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PYTHONPATH")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], input=json.dumps(jobs), capture_output=True, text=True,
                          cwd=tmp_path_factory.mktemp("fresh"), env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["_bad_names"] = list(bad)
    return out


def test_champion_and_an_mlp_head_load_and_predict_in_a_fresh_process(fresh):
    for job in ("text-mlp", "text-champion"):
        (answer,) = fresh[job]
        assert len(answer["values"]) == 2 and set(answer["values"]) <= {"animal", "food", "vehicle"}, (job, answer)


def test_a_fresh_process_adapts_the_registered_model_to_new_classes_and_refuses_bad_support_sets(fresh, zoo):
    registered, adapted, proba, *bad = fresh["fewshot"]
    core = zoo.fewshot.results[0]
    # without a support set: the registered (support) classes, as before
    assert set(registered["values"]) <= set(core.train.labels), registered
    # with one: classes the model never saw, right on this easy case (the topic word decides, as in meta-training)
    assert adapted["values"] == [label for _, label in QUERIES], adapted
    assert proba["columns"] == sorted(NEW) and np.round(np.sum(proba["values"], axis=1), 5).tolist() == [1.0] * len(QUERIES)
    err = dict(zip(fresh["_bad_names"], (b.get("error") for b in bad)))
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


def test_a_model_with_inner_backbone_groups_adapts_in_a_fresh_process_as_its_package_does(fresh, zoo, tmp_path):
    """`mlflow.pyfunc.load_model` in a fresh process predicts the registered classes and adapts to a support set given at
    predict time exactly as the package's `Predictor` does in this process."""
    import mlflow

    from tlops.package import Predictor

    registered, proba = fresh["inner-groups"]
    assert set(registered["values"]) <= set(TOPICS[15:20]) and proba["columns"] == ["car", "cat", "dog"]
    mlflow.set_tracking_uri(zoo.inner_groups.uri)
    mlflow.set_registry_uri(zoo.inner_groups.uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=zoo.inner_groups.model_uri(), dst_path=str(tmp_path / "download")))
    pred = Predictor(next(local.rglob("tlops_model.json")).parent)
    assert pred.meta["few_shot"]["backbone_params"], "the registered package adapts backbone groups"
    assert np.allclose(proba["values"], pred.predict_proba(INNER_TEXTS, pred.support(INNER_SUPPORT)), atol=1e-5)
    assert registered["values"] == pred.predict(INNER_TEXTS)


def test_a_few_shot_regressor_predicts_floats_and_adapts_to_a_support_task_in_a_fresh_process(fresh):
    values, adapted = (a["values"] for a in fresh["task-regression"])
    assert len(values) == 4 and len(set(values)) > 1 and len(adapted) == 4 and not np.allclose(values, adapted)


def test_image_and_audio_regressors_return_floats_in_the_targets_units_in_a_fresh_process(fresh):
    for name, lo, hi in [("tilt", 0, 45), ("rate", 100, 300), ("pitch", 50, 500)]:
        (answer,) = fresh[f"media-{name}"]
        assert answer["types"] == ["float", "float"], (name, answer)
        assert all(lo - 50 < v < hi + 50 for v in answer["values"]), (name, answer)  # in the target's units, not standardised


def test_every_model_runs_the_tlops_it_ships_in_a_fresh_process(fresh):
    assert fresh["_tlops"] and all("artifacts/code/tlops" in f.replace(os.sep, "/") for f in fresh["_tlops"].values()), fresh["_tlops"]


def test_a_qa_model_answers_with_a_span_of_each_context_in_a_fresh_process(fresh):
    (answer,) = fresh["qa"]
    assert answer.get("types") == ["dict", "dict"], answer
    for row, a in zip(QA_ROWS, answer["values"]):
        assert set(a) == {"answer", "start", "end", "score"}, a
        assert a["answer"] and row["context"][a["start"]:a["end"]] == a["answer"] and 0 < a["score"] <= 1, (row, a)


def test_an_asr_model_transcribes_in_its_training_alphabet_in_a_fresh_process(fresh):
    (answer,) = fresh["asr"]
    assert answer.get("types") == ["str"] * 3 and all(set(t) <= set("ab ") for t in answer["values"]), answer


def test_a_detector_returns_boxes_labels_and_scores_in_a_fresh_process(fresh):
    (answer,) = fresh["detect"]
    assert answer.get("types") == ["dict", "dict"], answer
    for p in answer["values"]:
        assert set(p) == {"boxes", "labels", "scores"} and len(p["boxes"]) == len(p["labels"]) == len(p["scores"]), p
        assert all(len(b) == 4 for b in p["boxes"]) and set(p["labels"]) <= {"square", "disc"}, p
        assert all(0.3 <= s <= 1 for s in p["scores"]) and p["scores"] == sorted(p["scores"], reverse=True), p  # the package's threshold, best first


def test_a_segmenter_returns_run_length_masks_of_each_image_in_a_fresh_process(fresh):
    from tlops.task_types.semantic_segmentation import decode_runs

    (answer,) = fresh["segment"]
    assert answer.get("types") == ["dict", "dict"], answer
    for m in answer["values"]:
        assert m["size"] == [64, 64] and m["labels"] == ["background", "square", "disc"], m["size"]
        mask = decode_runs(m["runs"], m["size"])
        assert sum(n for _, n in m["runs"]) == 64 * 64 and int(mask.max()) <= 2
        assert {m["labels"][v]: int((mask == v).sum()) for v in set(mask.reshape(-1).tolist())} == m["pixels"]
