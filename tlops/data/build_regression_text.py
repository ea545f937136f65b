"""Build the text regression demo from WordNet 3.0 (Debian `wordnet-base`), deterministically.

Text = a noun's gloss definition; target = how deep the noun sits in WordNet's hypernym tree (the fewest
"is a kind of" links up to `entity`): "a young dog" (puppy) is deep, "a general concept formed by extracting
common features" shallower. A reader can judge from a definition alone how specific a concept is, so the
task is fair, and the answer is WordNet's structure, not a property of the text's surface (the builder
never looks at the gloss's length or words). Integer-valued, roughly bell-shaped (about 2-18).

Rows are picked and split by sha256 of synset offsets, every definition text appears once in the whole
dataset, so the output is byte-identical on every machine.
"""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path

import typer

from tlops.data.build_fewshot_text import read_noun_hypernyms
from tlops.data.build_wordnet import WORDNET_DIR
from tlops.data.dataset import write_split_csv

ROOT = "00001740"  # entity.n.01, the one top of WordNet's noun hierarchy
SPLITS = {"train": 2000, "val": 400, "test": 600}
MIN_CHARS = 8


def _rank(key: str) -> str:
    return hashlib.sha256(f"tlops-regression-text-v1:{key}".encode()).hexdigest()


def hypernym_depths(hyponyms: dict[str, list[str]]) -> dict[str, int]:
    """Shortest hypernym-path length from `entity` to every noun synset reachable through `@` links (BFS)."""
    depth = {ROOT: 0}
    queue = deque([ROOT])
    while queue:
        s = queue.popleft()
        for child in hyponyms.get(s, ()):
            if child not in depth:
                depth[child] = depth[s] + 1
                queue.append(child)
    return depth


def build(out_dir: Path, wordnet_dir: Path = WORDNET_DIR) -> dict[str, int]:
    _, definition, hyponyms = read_noun_hypernyms(wordnet_dir)
    depth = hypernym_depths(hyponyms)
    rows, seen = [], set()
    for offset in sorted(depth, key=_rank):
        text = definition[offset]
        key = " ".join(text.lower().split())
        if offset == ROOT or len(text) < MIN_CHARS or key in seen:
            continue
        seen.add(key)
        rows.append((text, depth[offset]))
        if len(rows) == sum(SPLITS.values()):
            break
    out_dir.mkdir(parents=True, exist_ok=True)
    counts, start = {}, 0
    for split, n in SPLITS.items():
        write_split_csv(out_dir / f"{split}.csv", ["text", "depth"], rows[start : start + n])
        counts[split] = n
        start += n
    (out_dir / "dataset.yaml").write_text(
        "modality: text\nname: wordnet-noun-depth\ntask: regression\ntarget: depth\nbounds: [1, 30]\n"
        "source: WordNet 3.0 (Debian wordnet-base) nouns; text = gloss definition, target = depth = fewest hypernym "
        "links up to entity (how specific the concept is)\n", encoding="utf-8")
    return counts


def main(out_dir: Path = typer.Argument(Path("data/text_regression"))) -> None:
    print(f"wrote {out_dir}: {build(out_dir)}")


if __name__ == "__main__":
    typer.run(main)
