"""Build the text domain-shift demo from WordNet 3.0, deterministically: verb supersense (15 lexicographer
files) from gloss definitions (labelled source: "move fast by using one's feet") -> from example sentences
(target: "Don't run--you'll be late"), same labels.

Source and target use disjoint synsets, so a target sentence never shares its synset with a source
definition; the target's unlabelled and test rows are disjoint synsets too (one example sentence each).
Order and splits come from sha256 of the synset id, as in `build_wordnet`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer

from tlops.data.build_wordnet import WORDNET_DIR, read_synsets
from tlops.data.dataset import write_split_csv

SOURCE_PER_CLASS = {"train": 60, "val": 15}
TARGET_PER_CLASS = {"unlabeled": 40, "test": 30}


def _rank(synset_id: str) -> str:
    return hashlib.sha256(f"tlops-wordnet-shift-v1:{synset_id}".encode()).hexdigest()


def _take(pool: list[tuple[str, str]], n: int, seen: set[str]) -> list[tuple[str, str]]:
    """The first `n` rows of `pool` whose text was not used yet (one row per distinct text, no leakage)."""
    out = []
    for text, lex in pool:
        if len(out) == n:
            break
        if len(text) >= 8 and text.lower() not in seen:
            seen.add(text.lower())
            out.append((text, lex))
    return out


def build(out_dir: Path, wordnet_dir: Path = WORDNET_DIR, pos: str = "verb", min_with_examples: int = 0) -> dict[str, int]:
    """The demo is `pos="verb"`, every class; bench.da_shifts builds the noun shift with the classes that have at
    least `min_with_examples` synsets with example sentences."""
    by_class: dict[str, list] = {}
    for sid, lex, definition, examples in sorted(read_synsets(wordnet_dir, (pos,)), key=lambda r: _rank(r[0])):
        by_class.setdefault(lex, []).append((definition, examples))
    classes = sorted(c for c, synsets in by_class.items() if sum(bool(ex) for _, ex in synsets) >= min_with_examples)
    rows: dict[str, list[tuple[str, str]]] = {s: [] for s in (*SOURCE_PER_CLASS, *TARGET_PER_CLASS)}
    seen: set[str] = set()
    for lex in classes:
        synsets = by_class[lex]
        # at most half of a class's synsets go to the target, so a small class (verb.weather: 81) keeps source rows
        target_n = min(sum(TARGET_PER_CLASS.values()), len(synsets) // 2)
        with_examples = [i for i, (_, ex) in enumerate(synsets) if ex][:target_n]
        target = [(synsets[i][1][0], lex) for i in with_examples]
        n_test = round(len(target) * TARGET_PER_CLASS["test"] / sum(TARGET_PER_CLASS.values()))
        rows["test"] += _take(target, n_test, seen)
        rows["unlabeled"] += _take(target[n_test:], len(target) - n_test, seen)
        used = set(with_examples)
        source = [(d, lex) for i, (d, _) in enumerate(synsets) if i not in used]
        n_source = min(sum(SOURCE_PER_CLASS.values()), len(source))
        n_val = round(n_source * SOURCE_PER_CLASS["val"] / sum(SOURCE_PER_CLASS.values()))
        rows["val"] += _take(source, n_val, seen)
        rows["train"] += _take(source[n_val:], n_source - n_val, seen)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda r: _rank(r[0]))
        if split == "unlabeled":
            write_split_csv(out_dir / "unlabeled.csv", ["text"], [(text,) for text, _ in split_rows])
        else:
            write_split_csv(out_dir / f"{split}.csv", ["text", "label"], split_rows)
        counts[split] = len(split_rows)
    (out_dir / "dataset.yaml").write_text(
        f"modality: text\nname: wordnet-{pos}s-definitions-to-examples\n"
        f"source: WordNet 3.0 (Debian wordnet-base) {pos} synsets; train/val = gloss definition, unlabeled/test = an "
        f"example sentence of other synsets; label = lexicographer file ({pos} supersense)\n"
        f"labels: [{', '.join(classes)}]\n", encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/text_wordnet_shift"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
