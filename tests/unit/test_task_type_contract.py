"""The task-type contract (tlops/task_types/base.py), checked the same way for every registered task type and every
strategy whose registry entry declares it (`StrategyEntry.tasks`), as tests/unit/test_backbone_contract.py does for
backbones: the core run's steps (features, train, evaluate, package; the data validation is not the task type's yet)
on a tiny dataset of the task with the tiny random-weights BERT, then what the task type promises: its gate metrics
among the test metrics, the model's val_metrics named as the task type names them with the selection metric first,
its report and plots written, and a package whose predictions are what the task predicts. A new task type fails
`test_every_task_type_has_a_dataset` until it gets a dataset builder here; a new strategy fails
`test_every_strategy_has_a_small_config`. Seconds per case (the tiny BERT is built once per session).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from tests.helpers import (
    make_asr_dataset,
    make_da_text_dataset,
    make_detection_dataset,
    make_segmentation_dataset,
    make_few_shot_text,
    make_ner_dataset,
    make_qa_dataset,
    make_regression_dataset,
    make_task_dataset,
    tiny_config,
)
from tlops.config import config_from_dict
from tlops.strategies import all_strategies
from tlops.task_types import all_task_types, task_type


def _regression_with_target_rows(root: Path) -> Path:
    data = make_regression_dataset(root, n=(40, 12, 12))
    with open(data / "unlabeled.csv", "w", newline="") as f:  # domain adaptation's target rows; the others ignore them
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([[f"target phrasing {i}: a much shorter text"] for i in range(24)])
    return data


# (task type, few-shot layout) -> a tiny dataset folder of that task
DATASETS = {
    ("classification", False): lambda root: make_da_text_dataset(root),
    ("classification", True): lambda root: make_few_shot_text(root, per_class=12),
    ("regression", False): _regression_with_target_rows,
    ("regression", True): lambda root: make_task_dataset(root),
    ("token_classification", False): lambda root: make_ner_dataset(root, repeat=(2, 1, 1)),
    ("extractive_qa", False): lambda root: make_qa_dataset(root, contexts=(6, 2, 3), impossible=True),  # SQuAD v2.0: can abstain
    ("speech_recognition", False): lambda root: make_asr_dataset(root),
    ("object_detection", False): lambda root: make_detection_dataset(root),
    ("semantic_segmentation", False): lambda root: make_segmentation_dataset(root),
}
# task type -> the backbone its tiny dataset needs instead of the tiny BERT (tiny_config overrides)
BACKBONES = {"speech_recognition": {"backbone__name": "packaged:speech-embedding", "backbone__clip_seconds": 1.5},
             "object_detection": {"backbone__name": "packaged:efficientnet-lite0", "backbone__image_size": 64,
                                  "strategy__epochs": 1, "strategy__batch_size": 4},  # one epoch of 8 tiny images
             "semantic_segmentation": {"backbone__name": "packaged:efficientnet-lite0", "backbone__image_size": 64,
                                       "strategy__epochs": 1, "strategy__batch_size": 4}}

EPISODIC = {"shots": 2, "queries": 3, "projection": "linear", "embedding_dim": 8, "meta_epochs": 1, "episodes_per_epoch": 4,
            "meta_batch": 2, "val_episodes": 4, "eval_shots": [1], "support_shots": 2, "baselines": []}
MAML = {**EPISODIC, "inner_steps": 1}
# strategy -> its smallest config for a task type (a function of the TaskType: the probe's head is the task's)
SMALL = {
    "linear_probe": lambda t: {"name": "linear_probe", "head": t.heads[0]},
    "finetune": lambda t: {"name": "finetune", "epochs": 1, "batch_size": 8, "warmup_ratio": 0.0},
    "domain_adapt": lambda t: {"name": "domain_adapt", "method": "dann", "epochs": 1, "batch_size": 8, "selection_rows": 16,
                               "baseline": False},  # the source_only candidate: tests/unit/test_domain_adapt_selection.py
    "protonet": lambda t: {"name": "protonet", **EPISODIC},
    "maml": lambda t: {"name": "maml", **MAML},
    "fomaml": lambda t: {"name": "fomaml", **MAML},
    "meta_sgd": lambda t: {"name": "meta_sgd", **MAML},
}

CASES = [(t, s) for t in all_task_types() for s, entry in all_strategies().items() if t in entry.tasks]


def test_every_task_type_has_a_dataset():
    for name in all_task_types():
        few_shot = {e.few_shot for e in all_strategies().values() if name in e.tasks}
        missing = [fs for fs in few_shot if (name, fs) not in DATASETS]
        assert not missing, f"task type {name!r} has no tiny dataset here for few_shot={missing}: add a builder to DATASETS"


def test_every_strategy_has_a_small_config():
    assert set(all_strategies()) <= set(SMALL), f"no small config for {set(all_strategies()) - set(SMALL)}: add one to SMALL"


@pytest.mark.parametrize(("task", "strategy"), CASES, ids=[f"{t}-{s}" for t, s in CASES])
def test_the_task_type_contract(tmp_path, tiny_bert, task, strategy):
    from tlops.package import Predictor
    from tlops.pipeline import evaluate_step, features_step, package_step, train_step
    from tlops.resolve import open_dataset

    kind, entry = task_type(task), all_strategies()[strategy]
    data = DATASETS[(task, entry.few_shot)](tmp_path / "data")
    cfg = config_from_dict(tiny_config(tmp_path, data, tiny_bert, registry__metric=kind.default_gate_metric,
                                       strategy=SMALL[strategy](kind), **BACKBONES.get(task, {})))
    features = features_step(cfg, tmp_path / "features")  # run_core without the data validation (not the task type's yet)
    result = train_step(cfg, features, tmp_path / "train")
    evaluation = evaluate_step(cfg, features, result, tmp_path / "eval")
    package = package_step(cfg, features, result, tmp_path / "package")

    assert features.task == task
    assert set(kind.gate_metrics) <= set(evaluation.metrics), evaluation.metrics  # the promotion gate can read any of them
    assert list(result.val_metrics) == list(kind.val_metric_names), result.val_metrics  # the selection metric first
    assert list(result.val_metrics)[0] == kind.selection_metric and not math.isnan(result.val_metrics[kind.selection_metric])
    report = Path(evaluation.report_path)
    assert report.is_file() and isinstance(json.loads(report.read_text()), dict)
    assert evaluation.plots and all(Path(p).is_file() for p in evaluation.plots)
    if result.loop is not None and not entry.few_shot:  # a loop strategy logs the selection metric per epoch, under its MLflow name
        assert all(kind.selection_key in row for row in result.history), result.history[0]

    if not entry.few_shot:  # the promotion gate scores a registered package on the test split as evaluate scored the model
        from tlops.scoring import score_package

        champion = score_package("1", lambda rel: Path(package) / rel, features, open_dataset(cfg), kind.default_gate_metric)
        assert champion.value == pytest.approx(evaluation.metrics[kind.default_gate_metric]), (champion, evaluation.metrics)

    inputs = open_dataset(cfg).inputs("test")[:3]
    predicted = Predictor(package).predict(inputs)
    assert len(predicted) == len(inputs)
    labels = getattr(result, "labels", None) or features.labels
    if kind.class_probabilities:
        assert all(p in labels for p in predicted), (predicted, labels)  # classes it knows
    elif kind.feature_level == "word":  # entity spans with character offsets into each input, types it knows
        types = {t[2:] for t in labels if t != "O"}
        assert all(isinstance(p, list) for p in predicted), predicted
        for text, spans in zip(inputs, predicted):
            for e in spans:
                assert text[e["start"]:e["end"]] == e["text"] and e["type"] in types and 0 < e["score"] <= 1, (text, e)
        json.dumps(predicted)  # JSON-able, as a server returns it
    elif kind.input_columns:  # rows of named fields (extractive QA: question, context) -> an answer span of each context
        assert all(set(p) == {"answer", "start", "end", "score"} for p in predicted), predicted
        for row, p in zip(inputs, predicted):  # an abstention is "" at -1, -1
            assert row["context"][p["start"]:p["end"]] == p["answer"] and 0 <= p["score"] <= 1, (row, p)
        json.dumps(predicted)
    elif kind.feature_level == "frame":  # audio paths -> transcripts in train's alphabet
        alphabet = set(open_dataset(cfg).alphabet)
        assert all(isinstance(p, str) and set(p) <= alphabet for p in predicted), predicted
    elif kind.feature_level == "image":  # image paths -> boxes [x, y, w, h] with a known class and a score each
        for p in predicted:
            assert set(p) == {"boxes", "labels", "scores"} and len(p["boxes"]) == len(p["labels"]) == len(p["scores"]), p
            assert all(len(b) == 4 and b[2] >= 0 and b[3] >= 0 for b in p["boxes"]) and set(p["labels"]) <= set(labels), p
            assert all(0 <= s <= 1 for s in p["scores"]) and p["scores"] == sorted(p["scores"], reverse=True), p
        json.dumps(predicted)
    elif kind.feature_level == "pixel":  # image paths -> a run-length encoded class mask of each image's own size
        from tlops.task_types.semantic_segmentation import decode_runs

        for p in predicted:
            mask = decode_runs(p["runs"], p["size"])
            assert p["size"] == [64, 64] and p["labels"] == labels and int(mask.max()) < len(labels), p["size"]
            assert sum(p["pixels"].values()) == 64 * 64 and set(p["pixels"]) <= set(labels), p["pixels"]
        json.dumps(predicted)
    else:
        assert all(isinstance(p, float) and math.isfinite(p) for p in predicted), predicted  # numbers in the target's unit


def test_token_classification_refuses_finetune_settings_its_trainer_does_not_apply():
    from tlops.errors import ConfigError
    from tlops.strategies.finetune import FinetuneConfig
    from tlops.task_types.token_classification import check_finetune_settings

    check_finetune_settings(FinetuneConfig())  # the defaults are what it does
    check_finetune_settings(FinetuneConfig(trainable=2, layer_decay=0.9, l2sp=0.1))  # the shared loop applies these
    with pytest.raises(ConfigError, match=r"strategy.lp_ft: True"):
        check_finetune_settings(FinetuneConfig(lp_ft=True, trainable=2))
