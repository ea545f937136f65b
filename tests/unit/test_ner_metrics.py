"""Entity metrics (tlops/ner/metrics.py) against hand-computed values, and the tag-scheme helpers (tags.py):
spans, repair, valid-sequence decoding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tlops.ner.metrics import entity_scores
from tlops.ner.model import transition_masks, viterbi
from tlops.ner.tags import Span, repair, sequence_problems, spans, tag_set, to_tags


def test_entity_scores_by_hand():
    truth = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC", "I-LOC", "O"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-PER", "B-LOC", "I-LOC", "O"], ["B-ORG", "B-LOC"]]
    s = entity_scores(truth, pred)
    # truth: PER(0:2) LOC(3) | LOC(1:3) | ORG(0) = 4; predicted: PER(0:2) | PER(0) LOC(1:3) | ORG(0) LOC(1) = 5; correct 3
    assert (s.support, s.predicted) == (4, 5)
    assert s.precision == pytest.approx(3 / 5) and s.recall == pytest.approx(3 / 4)
    assert s.f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert s.accuracy == pytest.approx(7 / 10)  # token tags exactly right: 3 + 3 + 1
    assert s.per_type["LOC"].precision == pytest.approx(1 / 2) and s.per_type["LOC"].recall == pytest.approx(1 / 2)
    assert s.per_type["PER"].precision == pytest.approx(1 / 2) and s.per_type["PER"].recall == 1.0
    assert s.per_type["ORG"].f1 == 1.0 and s.per_type["ORG"].support == 1
    flat = s.flat("test_")
    assert flat["test_entity_f1"] == s.f1 and flat["test_f1_LOC"] == pytest.approx(0.5)


def test_a_partly_matched_span_is_wrong_in_strict_mode():
    truth = [["B-LOC", "I-LOC", "I-LOC"]]
    s = entity_scores(truth, [["B-LOC", "I-LOC", "O"]])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    assert s.accuracy == pytest.approx(2 / 3)


def test_iobes_scores():
    truth = [["S-PER", "O", "B-LOC", "E-LOC"]]
    s = entity_scores(truth, [["S-PER", "O", "B-LOC", "E-LOC"]], "IOBES")
    assert s.f1 == 1.0 and s.support == 2
    s = entity_scores(truth, [["S-PER", "O", "S-LOC", "S-LOC"]], "IOBES")
    assert s.precision == pytest.approx(1 / 3) and s.recall == pytest.approx(1 / 2)


def test_no_entities_scores_zero_not_nan():
    s = entity_scores([["O", "O"]], [["O", "O"]])
    assert (s.f1, s.support, s.predicted, s.accuracy) == (0.0, 0, 0, 1.0)
    with pytest.raises(ValueError):
        entity_scores([["O"]], [["O", "O"]])


def test_spans_and_repair():
    assert spans(["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC"]) == [Span(0, 2, "PER"), Span(3, 5, "LOC"), Span(5, 6, "LOC")]
    assert spans(["B-PER", "I-LOC"]) == [Span(0, 1, "PER"), Span(1, 2, "LOC")]
    assert spans(["B-LOC", "I-LOC", "E-LOC", "S-PER", "B-ORG"]) == [Span(0, 3, "LOC"), Span(3, 4, "PER"), Span(4, 5, "ORG")]
    assert repair(["O", "I-PER", "I-PER", "I-LOC"], "IOB2") == ["O", "B-PER", "I-PER", "B-LOC"]
    assert repair(["B-LOC", "I-LOC", "O", "B-PER"], "IOBES") == ["B-LOC", "E-LOC", "O", "S-PER"]
    assert to_tags([Span(1, 3, "X")], 4, "IOB2") == ["O", "B-X", "I-X", "O"]
    assert sequence_problems(["O", "B-X", "I-X"], "IOB2") == []


@pytest.mark.parametrize("scheme", ["IOB2", "IOBES"])
def test_viterbi_gives_valid_sequences_and_keeps_a_valid_argmax(scheme):
    tags = tag_set(["LOC", "PER"], scheme)
    masks = transition_masks(tags, scheme)
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 9):
        for _ in range(20):
            lp = np.log(rng.dirichlet(np.ones(len(tags)) * 0.3, size=n))
            best = [tags[k] for k in viterbi(lp, masks)]
            assert sequence_problems(best, scheme) == [], (best, scheme)
            greedy = [tags[k] for k in lp.argmax(1)]
            if not sequence_problems(greedy, scheme):
                assert best == greedy, "a valid argmax sequence is the answer"
    # brute force on a short sequence: viterbi finds the best-scoring valid sequence
    lp = np.log(rng.dirichlet(np.ones(len(tags)), size=3))
    valid = [seq for seq in itertools.product(range(len(tags)), repeat=3)
             if not sequence_problems([tags[k] for k in seq], scheme)]
    best = max(valid, key=lambda seq: sum(lp[i, k] for i, k in enumerate(seq)))
    assert tuple(viterbi(lp, masks)) == best
