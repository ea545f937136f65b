"""Extractive-QA data: SQuAD v1.1 / v2.0 JSON files per split, read and checked.

A QA dataset folder holds `dataset.yaml` (`task: extractive_qa`), `train.json`, an optional `val.json` and
`test.json`, each in SQuAD's format::

    {"version": "1.1", "data": [{"title": "...", "paragraphs": [{"context": "...", "qas": [
        {"id": "...", "question": "...", "answers": [{"text": "...", "answer_start": 17}],
         "is_impossible": false}]}]}]}

`is_impossible` (SQuAD v2.0) marks a question the context does not answer; it then has no `answers`.
A dataset with any impossible question is a v2 dataset (the model learns to abstain; metrics add HasAns/NoAns).

Every problem in a file is collected and reported at once, one line each, naming the file, the record (article
title, question id and its JSON path), the bad value and the fix; `read_squad` raises `DataError` with them.

Text is kept in Unicode NFC (as tlops keeps labels, `tlops.text_files.normal_label`): a context typed with
combining accents reads the same as one with precomposed letters. `answer_start` is a character offset into the
file's context and is remapped to the NFC context (the offset becomes the length of the NFC form of the text
before the answer); the span is checked against the file's own text first.

Val, when `val.json` is absent, is carved from train by article (all paragraphs of one title go to one side; by
context when the file has a single title), with a sha256 rank of the article key and the seed: deterministic, and no
context appears in two splits.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlops.errors import DataError
from tlops.text_files import decode_utf8

SPLIT_FILES = {"train": "train.json", "val": "val.json", "test": "test.json"}
MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the (NFC) context

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: tuple[Answer, ...]  # empty for an impossible question
    is_impossible: bool = False
    title: str = ""
    group: str = ""  # the article (or context) this example belongs to: the unit a val split is carved by


@dataclass
class QADataset:
    root: Path
    splits: dict[str, list[QAExample]]  # train, val, test
    val_carved: bool
    meta: dict = field(default_factory=dict)

    @property
    def version2(self) -> bool:
        """True when any question in any split is impossible (SQuAD v2.0): the model must be able to abstain."""
        return any(ex.is_impossible for rows in self.splits.values() for ex in rows)


def nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def _show(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _nonempty_str(x: Any) -> bool:
    return isinstance(x, str) and x.strip() != ""


def check_squad(path: Path, split: str = "") -> tuple[list[QAExample], list[str]]:
    """The examples of one SQuAD JSON file and every problem found in it (one message each)."""
    path = Path(path)
    name = split or path.stem
    try:
        raw = path.read_bytes()
    except OSError as e:
        return [], [f"{path} cannot be read ({e.strerror}); check that it is a readable file"]
    try:
        text = decode_utf8(raw, str(path), DataError)
    except DataError as e:
        return [], [str(e)]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        return [], [f"{path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg}); fix the syntax there "
                    "(a missing comma or quote, a trailing comma) and check it with `python -m json.tool FILE`"]
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        got = type(doc).__name__ if not isinstance(doc, dict) else f"keys {sorted(doc)[:8]}"
        return [], [f"{path}: the top level must be an object with a 'data' list (SQuAD format: "
                    f'{{"version": "1.1", "data": [{{"title": ..., "paragraphs": [...]}}]}}), got {got}']
    problems: list[str] = []
    examples: list[QAExample] = []
    first_seen: dict[str, str] = {}
    titles = {str(a.get("title", "")) for a in doc["data"] if isinstance(a, dict)}
    for ai, article in enumerate(doc["data"]):
        where_a = f"data[{ai}]"
        if not isinstance(article, dict):
            problems.append(f"{path} {where_a}: an article must be an object with 'title' and 'paragraphs', got {_show(article)}")
            continue
        title = article.get("title", "")
        if not isinstance(title, str):
            problems.append(f"{path} {where_a}: title {_show(title)} is not a string; write the article's title as text")
            title = str(title)
        title = nfc(title)
        at_a = f"{path} article {title!r} ({where_a})" if title else f"{path} {where_a}"
        paragraphs = article.get("paragraphs")
        if not isinstance(paragraphs, list):
            problems.append(f"{at_a}: 'paragraphs' is {'missing' if paragraphs is None else _show(paragraphs)}; "
                            'give a list of {"context": ..., "qas": [...]} objects')
            continue
        for pi, para in enumerate(paragraphs):
            where_p = f"{where_a}.paragraphs[{pi}]"
            at_p = f"{path} article {title!r} ({where_p})" if title else f"{path} {where_p}"
            if not isinstance(para, dict):
                problems.append(f"{at_p}: a paragraph must be an object with 'context' and 'qas', got {_show(para)}")
                continue
            raw_context = para.get("context")
            if not _nonempty_str(raw_context):
                problems.append(f"{at_p}: 'context' is {'missing' if raw_context is None else _show(raw_context)}; "
                                "give the paragraph's text as a non-empty string")
                continue
            context = nfc(raw_context)
            qas = para.get("qas")
            if not isinstance(qas, list):
                problems.append(f"{at_p}: 'qas' is {'missing' if qas is None else _show(qas)}; give a list of "
                                '{"id": ..., "question": ..., "answers": [...]} objects')
                continue
            group = title if len(titles) > 1 and title else f"{title}#{pi}#{ai}"
            for qi, qa in enumerate(qas):
                where_q = f"{where_p}.qas[{qi}]"
                if not isinstance(qa, dict):
                    problems.append(f"{at_p} qas[{qi}]: a question must be an object with 'id', 'question' and "
                                    f"'answers', got {_show(qa)}")
                    continue
                qid = qa.get("id")
                if isinstance(qid, int) and not isinstance(qid, bool):
                    qid = str(qid)
                at_q = f"{path} question id {qid!r} ({where_q})" if _nonempty_str(qid) else f"{path} {where_q}"
                ok = True
                if not _nonempty_str(qid):
                    problems.append(f"{at_q}: 'id' is {'missing' if qid is None else _show(qid)}; give every question "
                                    "a unique, non-empty string id")
                    ok = False
                elif qid in first_seen:
                    problems.append(f"{at_q}: duplicate id {qid!r}, also used at {first_seen[qid]}; give every "
                                    "question its own id")
                    ok = False
                else:
                    first_seen[qid] = where_q
                question = qa.get("question")
                if not _nonempty_str(question):
                    problems.append(f"{at_q}: 'question' is {'missing' if question is None else _show(question)}; "
                                    "give the question as a non-empty string")
                    ok = False
                impossible = qa.get("is_impossible", False)
                if not isinstance(impossible, bool):
                    problems.append(f"{at_q}: is_impossible is {_show(impossible)}; write true or false")
                    ok, impossible = False, False
                answers = qa.get("answers", [] if impossible else None)
                if not isinstance(answers, list):
                    problems.append(f"{at_q}: 'answers' is {'missing' if answers is None else _show(answers)}; give a "
                                    'list such as [{"text": "...", "answer_start": 0}], or set "is_impossible": true '
                                    "(SQuAD v2.0) if the context does not answer it")
                    continue
                if impossible and answers:
                    problems.append(f"{at_q}: is_impossible is true but it has {len(answers)} answer(s) "
                                    f"({_show(answers[0])}); remove the answers (SQuAD v2.0 keeps them as "
                                    "'plausible_answers') or set is_impossible to false")
                    continue
                if not impossible and not answers:
                    problems.append(f"{at_q}: no answers; give at least one "
                                    '{"text": ..., "answer_start": ...}, or set "is_impossible": true (SQuAD v2.0) '
                                    "if the context does not answer it")
                    continue
                kept: list[Answer] = []
                for ni, ans in enumerate(answers):
                    at_n = f"{at_q} answers[{ni}]"
                    if not isinstance(ans, dict):
                        problems.append(f"{at_n}: an answer must be an object with 'text' and 'answer_start', got {_show(ans)}")
                        ok = False
                        continue
                    atext, start = ans.get("text"), ans.get("answer_start")
                    if not _nonempty_str(atext):
                        problems.append(f"{at_n}: 'text' is {'missing' if atext is None else _show(atext)}; give the "
                                        "answer as it is written in the context")
                        ok = False
                        continue
                    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
                        problems.append(f"{at_n}: answer_start is {'missing' if start is None else _show(start)}; give "
                                        f"the character offset of {_show(atext)} in the context (a whole number >= 0)")
                        ok = False
                        continue
                    found = raw_context[start:start + len(atext)]
                    if found != atext:
                        hint = raw_context.find(atext)
                        fix = (f"the text occurs at offset {hint}; set answer_start to {hint}" if hint >= 0 else
                               "the text does not occur in the context; copy the answer from the context verbatim")
                        problems.append(f"{at_n}: context[{start}:{start + len(atext)}] is {_show(found)}, not the "
                                        f"answer text {_show(atext)}; {fix}")
                        ok = False
                        continue
                    n_start, n_text = len(nfc(raw_context[:start])), nfc(atext)
                    if context[n_start:n_start + len(n_text)] != n_text:
                        problems.append(f"{at_n}: the answer {_show(atext)} starts or ends inside a combined character "
                                        "once the context is in Unicode NFC; move answer_start/text to whole characters")
                        ok = False
                        continue
                    kept.append(Answer(n_text, n_start))
                if ok:
                    examples.append(QAExample(id=qid, question=nfc(question).strip(), context=context,
                                              answers=tuple(kept), is_impossible=impossible, title=title, group=group))
    if not problems and not examples:
        problems.append(f"{path} has no questions (its 'data' holds no paragraphs with 'qas'); the {name} split "
                        "needs at least one question")
    return examples, problems


def _raise(problems: list[str]) -> None:
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        head = "" if len(problems) == 1 else f"{len(problems)} problems in the QA data:\n"
        raise DataError(head + "\n".join(shown) + more)


def read_squad(path: Path, split: str = "") -> list[QAExample]:
    """The examples of one SQuAD JSON file; DataError listing every problem when there is any."""
    examples, problems = check_squad(path, split)
    _raise(problems)
    return examples


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"tlops-qa-val:{seed}:{key}".encode()).hexdigest()


def carve_val(train: list[QAExample], fraction: float = 0.1, seed: int = 0) -> tuple[list[QAExample], list[QAExample]]:
    """(train, val): whole articles (`group`) ranked by sha256(seed, group) go to val until it holds >= `fraction` of
    the questions (at least one group; none when train has a single group). Order within each side is kept."""
    groups = list(dict.fromkeys(ex.group for ex in train))
    if len(groups) < 2:
        return list(train), []
    sizes = Counter(ex.group for ex in train)
    want = max(1, round(fraction * len(train)))
    val_groups: set[str] = set()
    n = 0
    for g in sorted(groups, key=lambda g: _rank(seed, g)):
        if n >= want or len(val_groups) == len(groups) - 1:
            break
        val_groups.add(g)
        n += sizes[g]
    return [ex for ex in train if ex.group not in val_groups], [ex for ex in train if ex.group in val_groups]


def read_qa_dataset(root: Path, seed: int = 0, val_fraction: float = 0.1) -> QADataset:
    """The dataset folder's splits, checked (every problem of every file in one DataError). Across splits: a
    question id used twice, or a context of val/test that also appears in train (leakage), is a problem too."""
    from tlops.text_files import parse_yaml, read_utf8

    root = Path(root)
    meta_file = root / "dataset.yaml"
    meta = {}
    if meta_file.is_file():
        meta = parse_yaml(read_utf8(meta_file, DataError), str(meta_file), DataError, "fix the syntax there") or {}
        if not isinstance(meta, dict):
            raise DataError(f"{meta_file} must be a mapping such as `task: extractive_qa`, got a {type(meta).__name__}")
    splits, val_carved, problems = check_qa_splits(root, seed, val_fraction)
    _raise(problems)
    return QADataset(root=root, splits=splits, val_carved=val_carved, meta=meta)


def check_qa_splits(root: Path, seed: int = 0, val_fraction: float = 0.1) -> tuple[dict[str, list[QAExample]], bool, list[str]]:
    """(splits, val carved from train, problems): every split file read and checked, val carved from train when
    there is no val.json, then the checks across splits; nothing raised (`read_qa_dataset` raises the problems,
    the extractive_qa task type reports each as a failed validation check). With problems in a file the splits
    hold what could be read."""
    root = Path(root)
    problems: list[str] = []
    splits: dict[str, list[QAExample]] = {}
    for split, fname in SPLIT_FILES.items():
        f = root / fname
        if not f.is_file():
            if split != "val":
                problems.append(f"{f} not found; a QA dataset needs {fname} (SQuAD v1.1/v2.0 JSON)")
            continue
        splits[split], found = check_squad(f, split)
        problems += found
    if problems:
        return {s: splits.get(s, []) for s in SPLIT_FILES}, "val" not in splits, problems
    val_carved = "val" not in splits
    if val_carved:
        splits["train"], splits["val"] = carve_val(splits["train"], val_fraction, seed)
    seen_ids = {ex.id: "train" for ex in splits["train"]}
    train_contexts = {" ".join(ex.context.split()).lower() for ex in splits["train"]}
    for split in ("val", "test"):
        leaked = 0
        for ex in splits[split]:
            if ex.id in seen_ids and not (val_carved and split == "val"):
                problems.append(f"{root / SPLIT_FILES[split]} question id {ex.id!r}: the id is also used in "
                                f"{SPLIT_FILES[seen_ids[ex.id]]}; give every question an id of its own across splits")
            seen_ids.setdefault(ex.id, split)
            if " ".join(ex.context.split()).lower() in train_contexts:
                leaked += 1
                if leaked <= 3:
                    problems.append(f"{root / SPLIT_FILES[split]} question id {ex.id!r} (article {ex.title!r}): its "
                                    f"context also appears in train.json, so {split} would measure memory, not reading; "
                                    "keep each paragraph in one split")
        if leaked > 3:
            problems.append(f"{root / SPLIT_FILES[split]}: {leaked} questions in all have a context that train.json also holds")
    return splits, val_carved, problems
