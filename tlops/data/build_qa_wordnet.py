"""Build the extractive-QA demo set (SQuAD v1.1 JSON) from WordNet 3.0 (Debian `wordnet-base`), deterministically.

Synsets: nouns and verbs of 12 lexicographer files whose first lemma is one or two lower-case words and that have
a quoted example sentence holding the word. A context is 3-5 such synsets of one lexicographer file (e.g. verb.motion) written as definitions, one
sentence each: "A harbor is a sheltered port where ships can take on or discharge cargo." (nouns; "A cutlery: implements for
cutting and eating food." when the definition does not start with an article or the like),
"To stroll is to walk leisurely and with no apparent aim." (verbs). Each synset of a context gets one question,
of one of three kinds (chosen by a hash of the synset, the first where it applies):
- `blank`: one of WordNet's own quoted example sentences for the synset, with the word blanked:
  'Which word fits the blank in "we ___ along the beach"?' -> "stroll". The example shares few words with the
  definition, so word overlap alone rarely finds the answer: the reader must match the usage to a meaning.
- `word`: 'Which word means walk leisurely and with no apparent aim?' -> "stroll" (the definition's words are in
  the context: a lexical matcher's home ground).
- `gloss`: 'What does it mean to stroll?' / 'What is a harbor?' -> the definition span ("walk leisurely and with
  no apparent aim").
The answer is always the span in the synset's own sentence (`answer_start` points there). Question ids are
`KIND-POS-OFFSET` (e.g. `blank-verb-01904930`), so results can be broken down by kind.
Each synset is in one context and each context in one split, so no context or synset crosses splits. Selection,
grouping and split use sha256 of the synset id: byte-identical output on every machine.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import typer

from tlops.data.build_wordnet import LEXNAMES, WORDNET_DIR

LEXFILES = ("noun.artifact noun.act noun.person noun.location noun.body noun.communication verb.motion verb.contact verb.communication verb.change verb.body "
            "verb.consumption verb.creation").split()
SPLITS = {"train": 800, "val": 150, "test": 300}  # questions per split (one per synset; whole contexts)
SIZES = (3, 4, 5)  # synsets per context
KINDS = ("blank", "blank", "word", "gloss")  # by hash: half the questions are blanks, a quarter each word / gloss
VERSION = "tlops-qa-wordnet-v1"


def _h(key: str) -> int:
    return int(hashlib.sha256(f"{VERSION}:{key}".encode()).hexdigest(), 16)


def read_entries(wordnet_dir: Path = WORDNET_DIR) -> list[dict]:
    """Noun and verb synsets of LEXFILES as {id, lex, pos, word, definition, examples}, in file order: the first
    lemma (one or two plain lower-case words), the gloss's definition (before the first ';', 3-25 words), and at
    least one quoted example sentence that holds the word (so every synset can get a blank question)."""
    out = []
    for pos in ("noun", "verb"):
        path = wordnet_dir / f"data.{pos}"
        if not path.is_file():
            raise SystemExit(f"{path} not found: install WordNet with `apt-get install -y wordnet-base`")
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue
            head, gloss = line.split("|", 1)
            fields = head.split()
            lex = LEXNAMES[int(fields[1])]
            if lex not in LEXFILES:
                continue
            word = re.sub(r"\(.*\)$", "", fields[4]).replace("_", " ")
            if not re.fullmatch(r"[a-z]+( [a-z]+)?", word) or len(word) < 3:
                continue
            definition = re.sub(r"\s+", " ", gloss.split(";")[0].replace('"', "")).strip().rstrip(".")
            n_words = len(definition.split())
            if not 3 <= n_words <= 25 or not re.fullmatch(r"[A-Za-z0-9 ,'()\-]+", definition):
                continue
            examples = [re.sub(r"\s+", " ", e).strip() for e in re.findall(r'"([^"]+)"', gloss)]
            e = {"id": f"{pos}-{fields[0]}", "lex": lex, "pos": pos, "word": word, "definition": definition,
                 "examples": examples}
            if blanked(e):
                out.append(e)
    return out


def sentence(e: dict) -> tuple[str, int, int]:
    """(the synset's sentence, offset of the word, offset of the definition) within it."""
    if e["pos"] == "verb":
        lead = "To "
        s = f"{lead}{e['word']} is to {e['definition']}."
        return s, len(lead), len(lead) + len(e["word"]) + len(" is to ")
    art = "An " if e["word"][0] in "aeiou" else "A "
    link = " is " if re.match(r"(a|an|the|any|one|some|someone|something|(\(.*\) )?(a|an|the)) ", e["definition"]) else ": "
    s = f"{art}{e['word']}{link}{e['definition']}."
    return s, len(art), len(art) + len(e["word"]) + len(link)


def blanked(e: dict) -> str | None:
    """The first example sentence holding the word (or an inflected form of it) with every such form blanked;
    None when no example holds it."""
    plain = e["word"][:-1] if e["word"].endswith(("e", "y")) else e["word"]
    if not any(plain in ex.lower() for ex in e["examples"]):
        return None  # the pattern below needs this text: skip compiling it (most synsets)
    forms = r"(?:s|es|ed|d|ing|ning|ping|ting|ged|ned|ped|ted|ies|ied)?"
    base = re.escape(e["word"])
    stem = re.escape(plain)
    pattern = re.compile(rf"\b(?:{base}|{stem}){forms}\b", re.IGNORECASE)
    for ex in e["examples"]:
        if pattern.search(ex) and len(ex.split()) >= 4:
            return pattern.sub("___", ex)
    return None


def question(e: dict) -> tuple[str, str]:
    """(kind, question text) for the synset."""
    kind = KINDS[_h(e["id"] + ":kind") % len(KINDS)]
    if kind == "blank":
        return kind, f'Which word fits the blank in "{blanked(e)}"?'
    if kind == "word":
        return kind, f"Which word means {e['definition']}?"
    if e["pos"] == "verb":
        return kind, f"What does it mean to {e['word']}?"
    art = "an " if e["word"][0] in "aeiou" else "a "
    return kind, f"What is {art}{e['word']}?"


def contexts(entries: list[dict]) -> list[list[dict]]:
    """Synsets of one lexicographer file, in hash order, cut into groups of 3-5 with distinct words (a word twice in
    one context would make its answer ambiguous); groups in hash order across files."""
    groups = []
    for lex in LEXFILES:
        pool = sorted((e for e in entries if e["lex"] == lex), key=lambda e: _h(e["id"]))
        cur: list[dict] = []
        size = SIZES[_h(f"{lex}:0") % len(SIZES)]
        for e in pool:
            if any(e["word"].lower() == c["word"].lower() for c in cur):
                continue
            cur.append(e)
            if len(cur) == size:
                groups.append(cur)
                cur = []
                size = SIZES[_h(f"{lex}:{len(groups)}") % len(SIZES)]
    return sorted(groups, key=lambda g: _h("ctx:" + g[0]["id"]))


def paragraph(group: list[dict]) -> dict:
    parts, qas, at = [], [], 0
    for e in group:
        s, w_off, d_off = sentence(e)
        kind, q = question(e)
        if kind == "gloss":
            answer, start = e["definition"], at + d_off
        else:
            answer, start = e["word"], at + w_off
        qas.append({"id": f"{kind}-{e['id']}", "question": q, "answers": [{"text": answer, "answer_start": start}]})
        parts.append(s)
        at += len(s) + 1
    context = " ".join(parts)
    for qa in qas:
        a = qa["answers"][0]
        assert context[a["answer_start"]:a["answer_start"] + len(a["text"])] == a["text"], qa
    return {"context": context, "qas": qas}


def build(out_dir: Path, wordnet_dir: Path = WORDNET_DIR) -> dict[str, int]:
    groups = contexts(read_entries(wordnet_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    counts, i = {}, 0
    for split, want in SPLITS.items():
        data, n = [], 0
        while n < want:
            g = groups[i]
            i += 1
            para = paragraph(g)
            data.append({"title": f"{g[0]['lex']} {g[0]['id']}", "paragraphs": [para]})
            n += len(para["qas"])
        doc = {"version": "1.1", "source": "WordNet 3.0 (Debian wordnet-base), built by tlops.data.build_qa_wordnet",
               "data": data}
        (out_dir / f"{split}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        counts[split] = n
    (out_dir / "dataset.yaml").write_text(
        "modality: text\n"
        "task: extractive_qa\n"
        "name: wordnet-qa\n"
        "format: squad-v1.1\n"
        "source: WordNet 3.0 (Debian wordnet-base); context = 3-5 definitions of one lexicographer file, question = "
        "a blanked example sentence, a definition (which word?) or a word (what is it?), answer = the span\n",
        encoding="utf-8",
    )
    return counts


def main(out_dir: Path = typer.Argument(Path("data/text_qa"))) -> None:
    counts = build(out_dir)
    print(f"wrote {out_dir}: {counts}")


if __name__ == "__main__":
    typer.run(main)
