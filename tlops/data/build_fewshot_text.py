"""Build the few-shot text demo from WordNet 3.0 (Debian `wordnet-base`), deterministically.

A class is a noun hypernym ("tree", "dish", "monetary_unit", ...); its rows are the gloss definitions of
its direct hyponyms (a kind of tree, a dish, a currency ...). Meta-train, val and test get disjoint sets
of these fine classes, so few-shot evaluation is on categories never seen in meta-training:

- classes are nested nowhere: a class is dropped when its hypernym is a member (hyponym) of a class kept
  earlier, or one of its members is an earlier class's hypernym ("dog" and "hound" never both appear);
- a synset belongs to one class only and every definition text appears once in the whole dataset.

Selection and split use sha256 of synset offsets, so the output is byte-identical on every machine.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import typer

from tlops.data.build_wordnet import WORDNET_DIR
from tlops.data.dataset import write_split_csv

# (classes, rows per class) per split: test keeps 30 rows per class so the registered model's support set
# (5 carved rows) still leaves 10 shots + 15 queries for the 5-way 10-shot episodes
SPLITS = {"train": (64, 20), "val": (16, 20), "test": (24, 30)}
MIN_CHARS = 8


def _rank(key: str) -> str:
    return hashlib.sha256(f"tlops-fewshot-text-v1:{key}".encode()).hexdigest()


def read_noun_hypernyms(wordnet_dir: Path = WORDNET_DIR):
    """(first lemma per synset, definition per synset, direct hyponyms per hypernym synset) of data.noun."""
    path = wordnet_dir / "data.noun"
    if not path.is_file():
        raise SystemExit(f"{path} not found: install WordNet with `apt-get install -y wordnet-base`")
    lemma, definition, hyponyms = {}, {}, {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  ") or "|" not in line:
            continue  # licence header
        head, gloss = line.split("|", 1)
        fields = head.split()
        offset, n_words = fields[0], int(fields[3], 16)  # wndb(5WN): word count is two hex digits
        lemma[offset] = fields[4]
        at = 4 + 2 * n_words
        pointers = fields[at + 1 : at + 1 + 4 * int(fields[at])]
        for i in range(0, len(pointers), 4):  # symbol, target offset, target pos, source/target
            if pointers[i] == "@" and pointers[i + 2] == "n":  # hypernym (not @i: instances are proper names)
                hyponyms.setdefault(pointers[i + 1], []).append(offset)
        definition[offset] = re.sub(r"\s+", " ", gloss.split(";")[0].replace('"', "")).strip()
    return lemma, definition, hyponyms


def pick_classes(lemma, definition, hyponyms) -> list[tuple[str, list[str]]]:
    """(label, member definitions in hash order) for every usable class, in hash order; nothing nested or shared."""
    need = max(rows for _, rows in SPLITS.values())
    classes, members_taken, heads, texts_seen = [], set(), set(), set()
    for head in sorted(hyponyms, key=_rank):
        members = sorted(set(hyponyms[head]), key=_rank)
        if head in members_taken or any(m in heads for m in members):
            continue  # nested in (or around) a kept class
        rows, own = [], set()
        for m in members:
            text = definition[m]
            key = " ".join(text.lower().split())
            if m in members_taken or len(text) < MIN_CHARS or key in texts_seen or key in own:
                continue  # e.g. seven transuranic elements share one definition: keep one
            own.add(key)
            rows.append((m, text))
        if len(rows) < need:
            continue
        rows = rows[:need]
        heads.add(head)
        members_taken.update(m for m, _ in rows)
        texts_seen.update(" ".join(t.lower().split()) for _, t in rows)
        classes.append((head, [t for _, t in rows]))
    labels, out = set(), []
    for head, texts in classes:
        label = lemma[head] if lemma[head] not in labels else f"{lemma[head]}.{head}"  # two senses of one word
        labels.add(label)
        out.append((label, texts))
    return out


def build(out_dir: Path, wordnet_dir: Path = WORDNET_DIR) -> dict[str, int]:
    classes = pick_classes(*read_noun_hypernyms(wordnet_dir))
    wanted = sum(n for n, _ in SPLITS.values())
    if len(classes) < wanted:
        raise SystemExit(f"only {len(classes)} usable hypernym classes in {wordnet_dir}; the demo needs {wanted}")
    out_dir.mkdir(parents=True, exist_ok=True)
    counts, start = {}, 0
    for split, (n_classes, n_rows) in SPLITS.items():
        rows = [(text, label) for label, texts in classes[start : start + n_classes] for text in texts[:n_rows]]
        rows.sort(key=lambda r: _rank(r[0]))
        write_split_csv(out_dir / f"{split}.csv", ["text", "label"], rows)
        counts[split] = len(rows)
        start += n_classes
    # no `labels:` list: the classes differ per split (few-shot), so the label set is read from the CSVs
    (out_dir / "dataset.yaml").write_text(
        "modality: text\nname: wordnet-hypernyms-fewshot\n"
        "source: WordNet 3.0 (Debian wordnet-base) nouns; text = gloss definition, label = direct hypernym; "
        f"{SPLITS['train'][0]} meta-train / {SPLITS['val'][0]} val / {SPLITS['test'][0]} test classes, disjoint and not nested\n",
        encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/text_fewshot"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
