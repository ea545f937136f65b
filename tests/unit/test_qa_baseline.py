"""The sliding-window lexical baseline (tlops.qa.baseline) and the QA demo builder (tlops.data.build_qa_wordnet)."""

from __future__ import annotations

import json

from tlops.qa.baseline import SlidingWindowBaseline, sentences

CTX = ("A harbor is a sheltered port where ships can take on or discharge cargo. "
       "A lighthouse is a tower with a light that gives warning of shoals to passing ships.")


def test_picks_the_span_beside_the_question_words_with_offsets():
    b = SlidingWindowBaseline()
    (p,) = b.predict([{"question": "Which word means a sheltered port where ships discharge cargo?", "context": CTX}])
    assert p["answer"] == "harbor" and CTX[p["start"]:p["end"]] == "harbor" and p["score"] > 0
    # its known failure: the answer is the word beside the question words, which need not be the right one
    (p,) = b.predict([{"question": "What is a tower with a light that gives warning of shoals?", "context": CTX}])
    assert p["answer"] == "passing"  # beside 'shoals' (the rarest question word), not 'lighthouse'


def test_idf_weights_rare_words_and_the_span_holds_no_question_word():
    b = SlidingWindowBaseline().fit([CTX, "Ships sail. Ships dock. Ships sink."])
    assert b.idf("shoals") > b.idf("ships")
    (p,) = b.predict([{"question": "What do ships take on or discharge?", "context": CTX}])
    assert not {"ships", "discharge"} & set(p["answer"].lower().split())


def test_no_candidate_means_no_answer():
    (p,) = SlidingWindowBaseline().predict([{"question": "the a an", "context": "The. A. An."}])
    assert p == {"answer": "", "start": -1, "end": -1, "score": 0.0}


def test_sentences():
    assert [CTX[a:b] for a, b in sentences(CTX)][1].startswith("A lighthouse")


def test_demo_builder_is_valid_squad_with_no_context_across_splits(tmp_path):
    from tlops.data.build_qa_wordnet import build
    from tlops.qa.files import read_qa_dataset

    counts = build(tmp_path / "qa")
    ds = read_qa_dataset(tmp_path / "qa")  # every answer is at its answer_start; no context leaks into val/test
    assert {k: len(v) for k, v in ds.splits.items()} == counts and not ds.val_carved
    assert ds.meta["task"] == "extractive_qa"
    kinds = {e.id.split("-")[0] for e in ds.splits["test"]}
    assert kinds == {"blank", "word", "gloss"}
    doc = json.loads((tmp_path / "qa" / "train.json").read_text())
    assert doc["version"] == "1.1"
    blank = next(e for e in ds.splits["train"] if e.id.startswith("blank-"))
    assert "___" in blank.question and blank.answers[0].text.lower() not in blank.question.lower()
