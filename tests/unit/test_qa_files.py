"""SQuAD JSON reading (tlops.qa.files): what is read, and one clear message per problem."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from tlops.errors import DataError
from tlops.qa.files import carve_val, check_squad, read_qa_dataset, read_squad

CTX = "A harbor is a sheltered port. A lighthouse is a tower that warns ships."


def squad(*articles, version="1.1") -> dict:
    return {"version": version, "data": list(articles)}


def article(title: str, context: str, *qas) -> dict:
    return {"title": title, "paragraphs": [{"context": context, "qas": list(qas)}]}


def qa(qid: str, question: str, text: str | None, context: str = CTX, start: int | None = None, **extra) -> dict:
    answers = [] if text is None else [{"text": text, "answer_start": context.index(text) if start is None else start}]
    return {"id": qid, "question": question, "answers": answers, **extra}


def write(path: Path, doc) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def one_problem(path: Path) -> str:
    examples, problems = check_squad(path)
    assert len(problems) == 1, problems
    return problems[0]


def test_reads_questions_answers_and_v2_impossible(tmp_path):
    f = write(tmp_path / "train.json", squad(article("Ports", CTX, qa("q1", "What is a sheltered port?", "harbor"),
                                                     qa("q2", "Who built it?", None, is_impossible=True)), version="v2.0"))
    ex = read_squad(f)
    assert [e.id for e in ex] == ["q1", "q2"]
    assert ex[0].answers[0].text == "harbor" and CTX[ex[0].answers[0].start:ex[0].answers[0].end] == "harbor"
    assert ex[0].title == "Ports" and not ex[0].is_impossible
    assert ex[1].is_impossible and ex[1].answers == ()


def test_text_is_nfc_and_answer_start_follows(tmp_path):
    decomposed = unicodedata.normalize("NFD", "Le café est près du port.")  # é, è as e + combining accents
    assert len(decomposed) == 27
    f = write(tmp_path / "train.json", squad(article("Café", decomposed, qa("q", "Où?", "port", context=decomposed))))
    (e,) = read_squad(f)
    assert e.context == unicodedata.normalize("NFC", decomposed) and len(e.context) == 25
    a = e.answers[0]
    assert a.start == 20 and e.context[a.start:a.end] == "port"


def test_answer_text_must_match_the_context_at_answer_start(tmp_path):
    f = write(tmp_path / "train.json", squad(article("Ports", CTX, qa("q7", "What warns ships?", "lighthouse", start=3))))
    msg = one_problem(f)
    assert str(f) in msg and "'q7'" in msg and "context[3:13]" in msg and "'lighthouse'" in msg
    assert f"set answer_start to {CTX.index('lighthouse')}" in msg


def test_answer_not_in_context_says_copy_it(tmp_path):
    f = write(tmp_path / "train.json", squad(article("Ports", CTX, qa("q7", "What?", "beacon", start=0))))
    assert "does not occur in the context" in one_problem(f)


@pytest.mark.parametrize("field, fix", [("question", "give the question"), ("id", "unique, non-empty string id"),
                                        ("answers", "is_impossible")])
def test_missing_fields_are_named(tmp_path, field, fix):
    q = qa("q1", "What is a sheltered port?", "harbor")
    del q[field]
    f = write(tmp_path / "train.json", squad(article("Ports", CTX, q)))
    msg = one_problem(f)
    assert f"'{field}' is missing" in msg and fix in msg and str(f) in msg and "qas[0]" in msg


def test_missing_context_names_the_article(tmp_path):
    f = write(tmp_path / "train.json", squad({"title": "Ports", "paragraphs": [{"qas": []}]}))
    msg = one_problem(f)
    assert "article 'Ports'" in msg and "'context' is missing" in msg and "paragraphs[0]" in msg


def test_duplicate_ids(tmp_path):
    f = write(tmp_path / "train.json", squad(article("Ports", CTX, qa("q1", "What is a port?", "harbor"),
                                                     qa("q1", "What warns ships?", "lighthouse"))))
    msg = one_problem(f)
    assert "duplicate id 'q1'" in msg and "data[0].paragraphs[0].qas[0]" in msg


def test_an_empty_split(tmp_path):
    f = write(tmp_path / "test.json", squad())
    msg = one_problem(f)
    assert "has no questions" in msg and str(f) in msg


def test_impossible_with_answers(tmp_path):
    f = write(tmp_path / "train.json", squad(article("Ports", CTX, qa("q9", "What?", "harbor", is_impossible=True))))
    msg = one_problem(f)
    assert "'q9'" in msg and "is_impossible is true but it has 1 answer" in msg and "plausible_answers" in msg


def test_answerable_without_answers(tmp_path):
    f = write(tmp_path / "train.json", squad(article("Ports", CTX, qa("q9", "What?", None))))
    assert "no answers" in one_problem(f)


def test_not_json_gives_line_and_column(tmp_path):
    f = write(tmp_path / "train.json", '{"data": [\n  {"title": "x",}\n]}')
    msg = one_problem(f)
    assert f"{f} line 2 column 17: not valid JSON" in msg


def test_wrong_top_level(tmp_path):
    assert "must be an object with a 'data' list" in one_problem(write(tmp_path / "train.json", "[1, 2]"))


def test_every_problem_is_reported_at_once(tmp_path):
    f = write(tmp_path / "train.json", squad(article("Ports", CTX, qa("a", "What?", "harbor", start=1),
                                                     qa("b", "", "harbor"), qa("a", "What?", "tower"))))
    with pytest.raises(DataError) as e:
        read_squad(f)
    assert str(e.value).startswith("3 problems in the QA data:")


def _dataset(root: Path, n_articles: int = 6, test_context: str = "Rome is a city in Italy.") -> Path:
    root.mkdir()
    arts = [article(f"T{i}", f"Context number {i} is here.", qa(f"q{i}", "Which number?", str(i),
                                                                 context=f"Context number {i} is here."))
            for i in range(n_articles)]
    write(root / "train.json", squad(*arts))
    write(root / "test.json", squad(article("Rome", test_context, qa("t1", "Which word?", test_context.split()[0],
                                                                            context=test_context))))
    (root / "dataset.yaml").write_text("modality: text\ntask: extractive_qa\n")
    return root


def test_val_is_carved_by_article_deterministically(tmp_path):
    ds = read_qa_dataset(_dataset(tmp_path / "d"), seed=3, val_fraction=0.34)
    assert ds.val_carved and len(ds.splits["val"]) == 2 and len(ds.splits["train"]) == 4
    assert not {e.context for e in ds.splits["val"]} & {e.context for e in ds.splits["train"]}
    again = read_qa_dataset(tmp_path / "d", seed=3, val_fraction=0.34)
    assert [e.id for e in again.splits["val"]] == [e.id for e in ds.splits["val"]]
    assert ds.meta["task"] == "extractive_qa" and not ds.version2


def test_carve_keeps_a_whole_article_together():
    ctx2 = "A lighthouse is a tower."
    ex = read_squad_like([("Ports", CTX, "q1"), ("Ports", ctx2, "q2"), ("Rome", "Rome is in Italy.", "q3")])
    train, val = carve_val(ex, fraction=0.3, seed=0)
    assert {e.title for e in train}.isdisjoint({e.title for e in val}) and len(train) + len(val) == 3


def read_squad_like(rows):
    from tlops.qa.files import Answer, QAExample

    return [QAExample(id=q, question="?", context=c, answers=(Answer(c[:1], 0),), title=t, group=t) for t, c, q in rows]


def test_missing_test_and_leakage_are_refused(tmp_path):
    root = _dataset(tmp_path / "d", test_context="Context number 2 is here.")
    with pytest.raises(DataError, match="also appears in train.json"):
        read_qa_dataset(root)
    (root / "test.json").unlink()
    with pytest.raises(DataError, match="test.json not found"):
        read_qa_dataset(root)
