"""SQuAD exact match and F1, as the official evaluation script computes them.

Follows "Official evaluation script for SQuAD version 2.0" (`evaluate-v2.0.py`, https://rajpurkar.github.io/SQuAD-explorer/,
also the v1.1 script `evaluate-v1.1.py`) line for line:
- `normalize_answer`: lower-case, drop ASCII punctuation (`string.punctuation`), drop the articles a/an/the
  (whole words), collapse whitespace;
- exact match: normalised strings equal; F1: bag-of-tokens overlap of the normalised answers, where an empty
  prediction or gold scores 1 only when both are empty;
- gold answers that normalise to "" are dropped; a question left with none (an impossible one, SQuAD v2.0) has the
  single gold answer "" (so abstaining, the empty prediction, is right for it);
- each question scores the max over its gold answers; totals are means over questions;
- v2.0: `HasAns_*` over answerable questions and `NoAns_*` over impossible ones, and `best_threshold`
  (the script's `find_best_thresh`) for the null-score threshold.
Scores here are fractions in [0, 1]; the script prints them x100.
On answerable questions whose gold answers all normalise to something, v1.1's script gives the same numbers.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official script's function)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def get_tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def compute_exact(a_gold: str, a_pred: str) -> int:
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    gold_toks, pred_toks = get_tokens(a_gold), get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return float(gold_toks == pred_toks)  # if either is no-answer, F1 is 1 if they agree, 0 otherwise
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def gold_texts(answers: Sequence[str]) -> list[str]:
    """The gold answers the script scores against: those that normalise to something, else [""]."""
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


def question_scores(golds: Sequence[str], pred: str) -> tuple[int, float]:
    """(exact, f1) of one prediction: the max over the question's gold answers."""
    g = gold_texts(golds)
    return max(compute_exact(a, pred) for a in g), max(compute_f1(a, pred) for a in g)


def squad_scores(golds: Mapping[str, Sequence[str]], preds: Mapping[str, str]) -> dict[str, float]:
    """`golds`: question id -> gold answer texts ([] for an impossible question); `preds`: id -> predicted text
    ("" = no answer). Returns exact, f1, total and, when any question is impossible or any answerable,
    HasAns_exact/HasAns_f1/HasAns_total and NoAns_exact/NoAns_f1/NoAns_total (v2.0's breakdown). A question
    without a prediction is an error, as in the official script's missing-prediction warning (scored 0 there)."""
    missing = [q for q in golds if q not in preds]
    if missing:
        raise KeyError(f"no prediction for {len(missing)} question(s), e.g. {missing[:3]}")
    exact, f1 = {}, {}
    for qid, answers in golds.items():
        exact[qid], f1[qid] = question_scores(answers, preds[qid])
    has_ans = [q for q, a in golds.items() if gold_texts(a) != [""]]
    no_ans = [q for q, a in golds.items() if gold_texts(a) == [""]]
    out = _means(exact, f1, list(golds))
    if no_ans:  # v2.0 data: the breakdown the official script prints
        out.update({f"HasAns_{k}": v for k, v in _means(exact, f1, has_ans).items()})
        out.update({f"NoAns_{k}": v for k, v in _means(exact, f1, no_ans).items()})
    return out


def _means(exact: Mapping[str, float], f1: Mapping[str, float], qids: Sequence[str]) -> dict[str, float]:
    n = len(qids)
    return {"exact": sum(exact[q] for q in qids) / n if n else 0.0,
            "f1": sum(f1[q] for q in qids) / n if n else 0.0,
            "total": float(n)}


def best_threshold(golds: Mapping[str, Sequence[str]], preds: Mapping[str, str], na_probs: Mapping[str, float],
                   metric: str = "f1") -> tuple[float, float]:
    """(best score, threshold): the official `find_best_thresh`. A question's prediction becomes "" when its
    no-answer score `na_probs[qid]` exceeds the threshold; the threshold is the one (among the na scores, and
    below all of them) that maximises the mean `metric` ("exact" or "f1") over all questions."""
    scores = {q: question_scores(a, preds[q])[0 if metric == "exact" else 1] for q, a in golds.items()}
    has_ans = {q: gold_texts(a) != [""] for q, a in golds.items()}
    num_no_ans = sum(not h for h in has_ans.values())
    ordered = sorted(golds, key=lambda q: na_probs[q])
    # start from "every question abstains" (the impossible ones are right), then un-abstain from the lowest na score
    # up. The script starts at threshold 0.0 because its na scores are probabilities; here they may be any real
    # number, so "all abstain" is a threshold below every score.
    cur = best = float(num_no_ans)
    best_thresh = min(na_probs[q] for q in golds) - 1.0 if golds else 0.0
    for q in ordered:
        if has_ans[q]:
            diff = scores[q]
        else:
            diff = -1 if preds[q] else 0
        cur += diff
        if cur > best:
            best = cur
            best_thresh = na_probs[q]
    n = len(golds)
    return (best / n if n else 0.0), best_thresh
