"""The trivial baseline every probe and fine-tune is scored beside (tlops.classic_baseline, issue 30): hand-made features
of each modality, C/alpha chosen on val, test scored with the task's own metrics, and the verdict against the model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_audio_dataset, make_image_dataset, make_text_dataset
from tlops.classic_baseline import featurize, fit_classic, verdict
from tlops.data.dataset import load_dataset
from tlops.task_types import task_type


def test_tfidf_logreg_separates_classes_named_by_their_words_and_reports_the_tasks_metrics(tmp_path):
    ds = load_dataset(make_text_dataset(tmp_path / "t"))
    base = task_type(ds.task).classic_baseline(ds, seed=0)
    assert base.name == "tfidf_logreg" and set(base.metrics) == {"accuracy", "macro_f1"}
    assert base.kept in (0.01, 0.1, 1.0, 10.0) and 0.0 <= base.metrics["macro_f1"] <= 1.0
    # the same numbers by hand: the test split's predictions of the kept model, scored as the task scores them
    truth = ds.splits["test"]["label"].tolist()
    again = fit_classic("text", {s: ds.inputs(s) for s in ("train", "val", "test")},
                        {s: ds.splits[s]["label"].tolist() for s in ("train", "val", "test")}, numeric=False,
                        metrics=lambda t, p: task_type("classification").metrics(t, p, ds.labels), selection="macro_f1",
                        higher_is_better=True)
    assert again.metrics == base.metrics and len(truth) == len(ds.inputs("test"))


def test_raw_pixels_and_mfcc_statistics_have_fixed_widths_whatever_the_input_sizes(tmp_path):
    img = load_dataset(make_image_dataset(tmp_path / "i"))
    tr, (te,) = featurize("image", img.inputs("train"), [img.inputs("test")])
    assert tr.shape == (len(img.inputs("train")), 32 * 32) and te.shape[1] == 32 * 32
    assert np.allclose(tr.mean(0), 0, atol=1e-5)  # standardised on train
    aud = load_dataset(make_audio_dataset(tmp_path / "a"))
    tr, (te,) = featurize("audio", aud.inputs("train"), [aud.inputs("test")])
    assert tr.shape == (len(aud.inputs("train")), 80) and np.isfinite(te).all()


def test_ridge_on_a_target_the_words_decide_beats_the_train_mean(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    root = tmp_path / "r"
    root.mkdir()
    (root / "dataset.yaml").write_text("modality: text\ntask: regression\n")
    for split, n in (("train", 8), ("val", 3), ("test", 3)):
        lines = [f"{w} thing number {split} {i},{3 * k}" for i in range(n) for k, w in enumerate(words)]
        (root / f"{split}.csv").write_text("text,label\n" + "\n".join(lines) + "\n")
    ds = load_dataset(root)
    base = task_type("regression").classic_baseline(ds, seed=0)
    assert base.name == "tfidf_ridge" and base.kept in (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
    y = ds.targets("test")
    assert base.metrics["mae"] < np.abs(y - ds.targets("train").mean()).mean() / 2, base.metrics


@pytest.mark.parametrize("model,baseline,higher,wins", [(0.8, 0.7, True, False), (0.6, 0.7, True, True), (0.7, 0.7, True, False),
                                                        (2.0, 1.5, False, True), (1.0, 1.5, False, False)])
def test_the_baseline_wins_only_when_strictly_better_in_the_metrics_direction(model, baseline, higher, wins):
    assert verdict(model, baseline, higher) is wins


def test_token_and_span_tasks_have_no_classic_baseline_here():
    for name in ("token_classification", "extractive_qa", "object_detection", "semantic_segmentation", "speech_recognition"):
        assert task_type(name).classic_baseline(None) is None  # they score their own baselines (gazetteer, sliding window, ...)
