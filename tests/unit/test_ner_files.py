"""Token-classification dataset files (tlops/ner/files.py): both formats, the scheme, the carved val split, and
one message per problem naming the file and the line (JSON lines: the record's line and the token)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from tlops.errors import DataError
from tlops.ner.files import NerDataError, Sentence, read_ner_dataset, write_conll

TRAIN = [
    (["Ada", "Lovelace", "lived", "in", "London", "."], ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
    (["Paris", "is", "in", "France"], ["B-LOC", "O", "O", "B-LOC"]),
    (["the", "Red", "Cross", "helps"], ["O", "B-ORG", "I-ORG", "O"]),
    (["nothing", "here"], ["O", "O"]),
]
TEST = [(["Alan", "Turing", "visited", "Rome"], ["B-PER", "I-PER", "O", "B-LOC"])]


def conll(rows, docstart: bool = False, extra_column: bool = False) -> str:
    out = ["-DOCSTART- -X- O", ""] if docstart else []
    for tokens, tags in rows:
        out += [f"{t} NNP {g}" if extra_column else f"{t} {g}" for t, g in zip(tokens, tags)] + [""]
    return "\n".join(out)


def jsonl(rows) -> str:
    return "".join(json.dumps({"tokens": t, "tags": g}) + "\n" for t, g in rows)


def folder(tmp_path: Path, files: dict[str, str], meta: str | None = "task: token_classification\n") -> Path:
    root = tmp_path / "ner"
    root.mkdir(parents=True, exist_ok=True)
    if meta is not None:
        (root / "dataset.yaml").write_text(meta)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def problems(root: Path, **kw) -> list[str]:
    with pytest.raises(NerDataError) as e:
        read_ner_dataset(root, **kw)
    assert isinstance(e.value, DataError)
    for p in e.value.problems:
        assert p in str(e.value), "every problem (up to 20) is in the message"
    return e.value.problems


def test_conll_and_jsonl_read_the_same_sentences(tmp_path):
    a = read_ner_dataset(folder(tmp_path / "a", {"train.conll": conll(TRAIN, docstart=True, extra_column=True),
                                                 "val.conll": conll(TRAIN[:1]), "test.conll": conll(TEST)}))
    b = read_ner_dataset(folder(tmp_path / "b", {"train.jsonl": jsonl(TRAIN), "val.jsonl": jsonl(TRAIN[:1]),
                                                 "test.jsonl": jsonl(TEST)}))
    for ds in (a, b):
        assert [(s.tokens, s.tags) for s in ds.splits["train"]] == [(list(t), list(g)) for t, g in TRAIN]
        assert ds.scheme == "IOB2" and not ds.val_carved
        assert ds.types == ["LOC", "ORG", "PER"]
        assert ds.tags == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert [s.line for s in a.splits["train"]] == [3, 10, 15, 20], "CoNLL: each sentence's first token line (after -DOCSTART-)"
    assert [s.line for s in b.splits["train"]] == [1, 2, 3, 4], "JSON lines: each record's line"


def test_tokens_are_read_in_nfc_and_iobes_is_detected(tmp_path):
    nfd = unicodedata.normalize("NFD", "Zürich")
    rows = [([nfd, "is", "big"], ["S-LOC", "O", "O"]), (["New", "York", "City"], ["B-LOC", "I-LOC", "E-LOC"])]
    ds = read_ner_dataset(folder(tmp_path, {"train.conll": conll(rows), "test.conll": conll(rows[:1])}))
    assert ds.splits["test"][0].tokens[0] == "Zürich" == unicodedata.normalize("NFC", nfd)
    assert ds.scheme == "IOBES"
    assert ds.tags == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def test_missing_val_is_carved_from_train_with_the_seed(tmp_path):
    rows = [([f"w{i}", "Paris"], ["O", "B-LOC"]) for i in range(20)]
    root = folder(tmp_path, {"train.conll": conll(rows), "test.conll": conll(rows[:1])})
    a, b, c = (read_ner_dataset(root, seed=s, val_fraction=0.25) for s in (0, 0, 1))
    assert a.val_carved and len(a.splits["val"]) == 5 and len(a.splits["train"]) == 15
    assert [s.tokens for s in a.splits["val"]] == [s.tokens for s in b.splits["val"]], "same seed, same val"
    assert [s.tokens for s in a.splits["val"]] != [s.tokens for s in c.splits["val"]]
    assert not {tuple(s.tokens) for s in a.splits["val"]} & {tuple(s.tokens) for s in a.splits["train"]}


def test_a_declared_scheme_is_used_and_checked(tmp_path):
    rows = [(["New", "York"], ["B-LOC", "E-LOC"])]
    root = folder(tmp_path, {"train.conll": conll(rows * 3), "test.conll": conll(rows)}, meta="scheme: IOB2\n")
    (p,) = problems(root)[:1]
    assert f"{root / 'train.conll'} line 2:" in p and "'E-LOC' is an IOBES tag" in p and "scheme: IOBES" in p
    assert read_ner_dataset(root, scheme="iobes").scheme == "IOBES", "the argument overrides dataset.yaml"


def test_malformed_conll_rows_and_tags_name_file_and_line(tmp_path):
    text = "Ada B-PER\nLovelace\n\nParis B_LOC\n"
    root = folder(tmp_path, {"train.conll": text, "test.conll": conll(TEST)})
    got = problems(root)
    assert len(got) == 2
    assert got[0].startswith(f"{root / 'train.conll'} line 2: row 'Lovelace' has one column") and "'Paris B-LOC'" in got[0]
    assert got[1].startswith(f"{root / 'train.conll'} line 4: tag 'B_LOC' is not a tag") and "B-PER" in got[1]


def test_an_inside_tag_that_continues_nothing_is_named(tmp_path):
    rows = TRAIN + [(["in", "Paris", "Texas"], ["O", "I-LOC", "I-LOC"]), (["Ada", "London"], ["B-PER", "I-LOC"])]
    root = folder(tmp_path, {"train.conll": conll(rows), "test.conll": conll(TEST)})
    got = problems(root)
    f = root / "train.conll"
    assert len(got) == 2, got
    assert got[0].startswith(f"{f} line 22: tag 'I-LOC' continues an entity, but it follows 'O'") and "'B-LOC'" in got[0]
    assert got[1].startswith(f"{f} line 26: tag 'I-LOC' continues an entity, but it follows 'B-PER'")
    assert "IOB1" in got[0], "the message names the likely cause of a file full of them"


def test_iobes_entity_left_open_is_named(tmp_path):
    rows = [(["New", "York", "is"], ["B-LOC", "I-LOC", "O"]), (["Rome"], ["S-LOC"])]
    root = folder(tmp_path, {"train.conll": conll(rows), "test.conll": conll(rows[1:])})
    (p,) = problems(root)
    assert p.startswith(f"{root / 'train.conll'} line 2: tag 'I-LOC' opens an entity") and "'E-LOC'" in p


def test_jsonl_records_name_file_line_and_token(tmp_path):
    lines = [
        json.dumps({"tokens": ["Ada", "Lovelace"], "tags": ["B-PER"]}),
        "{not json",
        json.dumps({"words": ["a"], "tags": ["O"]}),
        json.dumps({"tokens": ["a b", "c"], "tags": ["O", "O"]}),
        json.dumps({"tokens": ["Rome", "x"], "tags": ["B-LOC", "X-LOC"]}),
        json.dumps({"tokens": [], "tags": []}),
        json.dumps({"tokens": ["Paris"], "tags": [3]}),
    ]
    root = folder(tmp_path, {"train.jsonl": "\n".join(lines) + "\n", "test.jsonl": jsonl(TEST)})
    f = root / "train.jsonl"
    got = problems(root)
    assert got[0] == f"{f} line 1: 2 tokens but 1 tags; give exactly one tag per token"
    assert got[1].startswith(f"{f} line 2: not valid JSON")
    assert got[2].startswith(f"{f} line 3: a record needs 'tokens' and 'tags' lists, got ['tags', 'words']")
    assert got[3].startswith(f"{f} line 4, token 0: token 'a b' is empty or holds whitespace")
    assert got[4].startswith(f"{f} line 5, token 1 ('x'): tag 'X-LOC' is not a tag")
    assert got[5] == f"{f} line 6: a record with no tokens; drop that line"
    assert got[6].startswith(f"{f} line 7: tags[0] is 3, not a string")
    assert len(got) == 7


def test_jsonl_sequence_problem_names_the_record_and_token(tmp_path):
    rows = TRAIN + [(["x", "Rome"], ["O", "I-LOC"])]
    root = folder(tmp_path, {"train.jsonl": jsonl(rows), "test.jsonl": jsonl(TEST)})
    (p,) = problems(root)
    assert p.startswith(f"{root / 'train.jsonl'} line 5, token 1 ('Rome'): tag 'I-LOC' continues an entity")


def test_empty_and_missing_splits_and_two_formats(tmp_path):
    root = folder(tmp_path, {"train.conll": "\n\n-DOCSTART- -X- O\n", "val.conll": "", "val.jsonl": "", })
    got = problems(root)
    assert got[0] == f"{root / 'train.conll'}: no sentences; add sentences to it"
    assert got[1] == f"{root}: both val.conll and val.jsonl exist; keep one file per split"
    assert got[2].startswith(f"{root}: no test.conll or test.jsonl; add the test split")


def test_an_entity_type_unseen_in_train_is_named_in_val_and_test(tmp_path):
    test = TEST + [(["the", "Nile", "and", "Zeus", "and", "Hera"], ["O", "B-LOC", "O", "B-GOD", "O", "B-GOD"])]
    root = folder(tmp_path, {"train.conll": conll(TRAIN), "test.conll": conll(test)})
    (p,) = problems(root)
    assert p.startswith(f"{root / 'test.conll'} line 9: tag 'B-GOD': entity type 'GOD' never appears in train (2 test tag(s)")
    assert "tag these O" in p


def test_dataset_yaml_task_and_scheme_are_checked(tmp_path):
    root = folder(tmp_path, {"train.conll": conll(TRAIN), "test.conll": conll(TEST)}, meta="task: regression\nscheme: BILOU\n")
    got = problems(root)
    assert "task is 'regression'" in got[0] and "task: token_classification" in got[0]
    assert "scheme 'BILOU' is not one of ['IOB2', 'IOBES']" in got[1]


def test_write_conll_round_trips(tmp_path):
    sentences = [Sentence(list(t), list(g)) for t, g in TRAIN]
    write_conll(tmp_path / "train.conll", sentences)
    write_conll(tmp_path / "test.conll", sentences[:1])
    ds = read_ner_dataset(tmp_path)
    back = sorted((s.tokens, s.tags) for s in ds.splits["train"] + ds.splits["val"])
    assert back == sorted((s.tokens, s.tags) for s in sentences)
    assert (tmp_path / "test.conll").read_text() == "Ada B-PER\nLovelace I-PER\nlived O\nin O\nLondon B-LOC\n. O\n\n"
