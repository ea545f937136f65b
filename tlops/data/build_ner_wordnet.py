"""Build the NER demo (token classification) from WordNet 3.0 (Debian `wordnet-base`), deterministically.

Text: WordNet's own sentences, the parts of every gloss (definitions split at ';', and the quoted example
sentences) of nouns, verbs, adjectives and adverbs. Entities: WordNet's named instances (synsets with an `@i`
instance-hypernym pointer, e.g. Mozart, Danube, Hegira) plus the capitalised names of organisations (noun.group),
typed by their lexicographer file: noun.person -> PER, noun.location and noun.object (rivers, mountains, planets)
-> LOC, noun.group -> ORG, any other instance (battles, wars, books, buildings, holidays) -> MISC. Their mentions
in the text are tagged IOB2 by longest match of the exact, capitalised name over words split by
`tlops.ner.words.split_words` (the splitter a model's `predict` uses on raw text).

A name of two types (Hastings: a battle and a town), or that is also a common word's capitalised lemma (French: a
sculptor, and the language and adjective), is left out, and so is every sentence that mentions one, so no tag is a
coin toss. Some entities are held out: sentences naming a held-out entity go only to test (or only to val),
so test holds names train never shows and a memorising gazetteer cannot find them. Order and selection come from
sha256, so the output is byte-identical on every machine.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import typer

from tlops.data.build_wordnet import LEXNAMES, WORDNET_DIR, synset_lines
from tlops.ner.files import Sentence, write_conll
from tlops.ner.tags import Span, to_tags
from tlops.ner.words import split_words

TYPE_OF = {"noun.person": "PER", "noun.location": "LOC", "noun.object": "LOC", "noun.group": "ORG"}
OTHER = "MISC"  # an instance of any other lexicographer file
CONNECTORS = {"of", "the", "and", "for", "de", "du", "des", "la", "le", "les", "von", "van", "der", "den", "al", "el",
              "y", "da", "di", "del", "on", "upon", "in", "at", "a", "an", "to", "'s", "s", "bin", "ibn", "ben", "ul", "e"}
SIZES = {"train": 1500, "val": 250, "test": 500}
HELD_TEST, HELD_VAL = 0.15, 0.10  # share of entities (synsets) whose sentences go only to test / only to val
UNSEEN_SHARE = {"val": 0.4, "test": 0.5}  # of val/test sentences: those naming a held-out entity
NO_ENTITY_SHARE = 0.1  # of every split: sentences without any entity
MIN_WORDS, MAX_WORDS = 4, 40
SALT = "tlops-ner-wordnet-v1"


def _rank(key: str) -> str:
    return hashlib.sha256(f"{SALT}:{key}".encode()).hexdigest()


def _unit(key: str) -> float:
    return int(_rank(key)[:12], 16) / 16**12


def name_like(name: str) -> bool:
    """A proper name: starts with a capital, and every other alphabetic word is capitalised or a connector."""
    words = [w.text for w in split_words(name)]
    if not words or not words[0][:1].isupper() or len(name) < 2:
        return False
    return all(w[:1].isupper() or not w[:1].isalpha() or w.lower() in CONNECTORS for w in words)


def read_wordnet(wordnet_dir: Path = WORDNET_DIR):
    """(names: surface -> {(synset id, type)}, common: capitalised lemmas of other synsets (French the language,
    Arctic the adjective), texts: every gloss part and example sentence, in file order)."""
    names: dict[str, set[tuple[str, str]]] = {}
    common: set[str] = set()
    texts: list[str] = []
    for pos, f, gloss in synset_lines(wordnet_dir):
        for part in gloss.split(";"):
            part = re.sub(r"\s+", " ", part.replace('"', "")).strip()
            if part:
                texts.append(part)
        lex = LEXNAMES[int(f[1])]
        n = int(f[3], 16)
        lemmas = [re.sub(r"\([a-z]+\)$", "", f[4 + 2 * i]).replace("_", " ") for i in range(n)]
        rest = f[4 + 2 * n:]
        symbols = {rest[1 + 4 * i] for i in range(int(rest[0]))}
        if pos == "noun" and "@i" in symbols:
            kind = TYPE_OF.get(lex, OTHER)
        elif pos == "noun" and lex == "noun.group":
            kind = "ORG"
        else:
            common.update(l for l in lemmas if l[:1].isupper())
            continue
        for lemma in lemmas:
            if name_like(lemma):
                names.setdefault(lemma, set()).add((f"n:{f[0]}", kind))
    return names, common, texts


def mentions(words: list[str], table: dict[tuple[str, ...], str], longest: int) -> list[tuple[Span, str]]:
    """(span, surface) of the longest matches, left to right."""
    out, i = [], 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            key = tuple(words[i:i + n])
            if key in table:
                out.append((Span(i, i + n, table[key]), " ".join(key)))
                i += n
                break
        else:
            i += 1
    return out


def build(out_dir: Path, wordnet_dir: Path = WORDNET_DIR, sizes: dict[str, int] | None = None) -> dict[str, int]:
    sizes = sizes or SIZES
    names, common, texts = read_wordnet(wordnet_dir)
    table: dict[tuple[str, ...], str] = {}
    ambiguous: set[tuple[str, ...]] = set()
    held: dict[tuple[str, ...], str] = {}  # surface -> "test" | "val"
    for surface, senses in names.items():
        key = tuple(w.text for w in split_words(surface))
        kinds = {k for _, k in senses}
        table[key] = next(iter(kinds)) if len(kinds) == 1 else "?"
        if len(kinds) > 1 or surface in common:
            ambiguous.add(key)
        us = [_unit(sid) for sid, _ in senses]
        if any(u < HELD_TEST for u in us):
            held[key] = "test"
        elif any(u < HELD_TEST + HELD_VAL for u in us):
            held[key] = "val"
    longest = max(len(k) for k in table)
    pools: dict[str, list[Sentence]] = {"seen": [], "val": [], "test": [], "none": []}  # test/val: naming a held-out entity
    seen_text: set[str] = set()
    for text in sorted(set(texts), key=_rank):
        words = [w.text for w in split_words(text)]
        if not MIN_WORDS <= len(words) <= MAX_WORDS or text.lower() in seen_text:
            continue
        seen_text.add(text.lower())
        found = mentions(words, table, longest)
        keys = [tuple(words[s.start:s.end]) for s, _ in found]
        if any(k in ambiguous for k in keys):
            continue
        sentence = Sentence(words, to_tags([s for s, _ in found], len(words), "IOB2"))
        where = {held.get(k) for k in keys} - {None}
        if not found:
            pools["none"].append(sentence)
        elif "test" in where:
            pools["test"].append(sentence)
        elif where == {"val"}:
            pools["val"].append(sentence)
        else:
            pools["seen"].append(sentence)
    splits: dict[str, list[Sentence]] = {}
    taken = {"seen": 0, "none": 0}

    def take(pool: str, n: int) -> list[Sentence]:
        rows = pools[pool][taken[pool]:taken[pool] + n]
        if len(rows) < n:
            raise SystemExit(f"WordNet gives {len(pools[pool])} '{pool}' sentences, fewer than the sizes {sizes} need")
        taken[pool] += n
        return rows

    for split in ("test", "val", "train"):
        n = sizes[split]
        n_unseen = round(n * UNSEEN_SHARE.get(split, 0.0))
        rows = pools[split][:n_unseen] if split != "train" else []  # fewer when WordNet has fewer
        rows += take("none", round(n * NO_ENTITY_SHARE))
        rows += take("seen", n - len(rows))
        splits[split] = sorted(rows, key=lambda s: _rank("order:" + " ".join(s.tokens)))  # not the pools' order
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_conll(out_dir / f"{split}.conll", rows)
    (out_dir / "dataset.yaml").write_text(
        "modality: text\n"
        "name: wordnet-ner\n"
        "task: token_classification\n"
        "scheme: IOB2\n"
        "source: WordNet 3.0 (Debian wordnet-base); text = gloss parts and example sentences, entities = named "
        "instances (PER, LOC, ORG, MISC by lexicographer file) tagged by longest match; test names entities train never shows\n",
        encoding="utf-8",
    )
    return {split: len(rows) for split, rows in splits.items()}


def main(out_dir: Path = typer.Argument(Path("data/text_ner"))) -> None:
    counts = build(out_dir)
    print(f"wrote {out_dir}: {counts}")


if __name__ == "__main__":
    typer.run(main)
