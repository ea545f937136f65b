"""SQuAD EM/F1 (tlops.qa.metrics) against the official script's behaviour and hand-computed values."""

from __future__ import annotations

import pytest

from tlops.qa.metrics import best_threshold, compute_exact, compute_f1, normalize_answer, squad_scores


@pytest.mark.parametrize("raw, normal", [
    ("The Cat", "cat"),
    ("  a  cat,  an apple!  ", "cat apple"),
    ("Theatre", "theatre"),  # an article only as a whole word
    ("the U.S.A.", "usa"),
    ("", ""),
    ("Denver Broncos", "denver broncos"),
])
def test_normalisation(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_and_f1_by_hand():
    assert compute_exact("Denver Broncos", "the denver broncos.") == 1
    # gold {cat, sat, on, mat}, pred {cat, on, mat}: P = 3/3, R = 3/4, F1 = 2PR/(P+R) = 6/7
    assert compute_f1("the cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    # repeated tokens count by multiplicity: gold [a1 a1 b], pred [a1 a1 a1]: common 2, P 2/3, R 2/3
    assert compute_f1("x x y", "x x x") == pytest.approx(2 / 3)
    assert compute_f1("cat", "dog") == 0.0
    assert compute_f1("", "") == 1.0 and compute_f1("", "cat") == 0.0 and compute_f1("cat", "") == 0.0


def test_max_over_gold_answers_and_means():
    # SQuAD dev's first question: three annotators, the prediction matches one of them
    golds = {"56be4db0acb8001400a502ec": ["Denver Broncos", "Denver Broncos", "Denver Broncos"],
             "q2": ["Santa Clara, California", "Levi's Stadium", "Levi's Stadium in the San Francisco Bay Area at Santa Clara, California."]}
    preds = {"56be4db0acb8001400a502ec": "Denver Broncos", "q2": "Santa Clara"}
    s = squad_scores(golds, preds)
    # q2: best F1 vs "Santa Clara, California": P 2/2, R 2/3 -> 0.8
    assert s["exact"] == pytest.approx(0.5) and s["f1"] == pytest.approx((1 + 0.8) / 2) and s["total"] == 2
    assert "HasAns_exact" not in s  # v1.1 data: no breakdown


def test_v2_no_answer_counts_as_empty_string_and_splits():
    golds = {"a": ["harbor"], "b": [], "c": []}
    preds = {"a": "the harbor", "b": "", "c": "tower"}
    s = squad_scores(golds, preds)
    assert s["exact"] == pytest.approx(2 / 3) and s["f1"] == pytest.approx(2 / 3)
    assert s["HasAns_exact"] == 1.0 and s["HasAns_total"] == 1
    assert s["NoAns_exact"] == 0.5 and s["NoAns_total"] == 2


def test_a_gold_that_normalises_to_nothing_is_dropped():
    # the script keeps only golds with a normalised form; none left -> the gold is "" (answered by abstaining)
    assert squad_scores({"q": ["the", "The Harbor"]}, {"q": "harbor"})["exact"] == 1.0
    assert squad_scores({"q": ["the"]}, {"q": ""})["exact"] == 1.0


def test_a_missing_prediction_is_an_error():
    with pytest.raises(KeyError, match="no prediction for 1"):
        squad_scores({"a": ["x"], "b": ["y"]}, {"a": "x"})


def test_best_threshold_by_hand():
    golds = {"a": ["harbor"], "b": [], "c": ["tower"], "d": []}
    preds = {"a": "harbor", "b": "port", "c": "tower", "d": "ship"}  # best non-null spans
    na = {"a": -3.0, "c": -1.0, "b": 2.0, "d": 0.5}  # null score - best span score
    score, thresh = best_threshold(golds, preds, na)
    # threshold -1.0: a, c answer (right), b, d abstain (right): all four right
    assert score == 1.0 and thresh == -1.0
    # everything abstaining is best when every answer is wrong
    score, thresh = best_threshold({"a": ["x"], "b": []}, {"a": "y", "b": "z"}, {"a": 0.0, "b": 1.0})
    assert score == 0.5 and thresh < 0.0
