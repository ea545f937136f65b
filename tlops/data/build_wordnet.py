"""Build the demo text dataset from WordNet 3.0 (Debian `wordnet-base`), deterministically.

Text = a synset's gloss definition (examples stripped), label = its lexicographer file (supersense).
Selection and split use sha256 of the synset offset, so the output is byte-identical on every machine.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import typer

from tlops.data.dataset import write_split_csv

WORDNET_DIR = Path("/usr/share/wordnet")
# WordNet's lexicographer file names, indexed by field 2 of each data line (wndb(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
DEMO_CLASSES = (
    "noun.act noun.animal noun.artifact noun.body noun.communication noun.food "
    "noun.location noun.person noun.plant noun.state noun.substance noun.time"
).split()
PER_CLASS = {"train": 150, "val": 30, "test": 50}


def synset_lines(wordnet_dir: Path = WORDNET_DIR, parts_of_speech: tuple[str, ...] = ("noun", "verb", "adj", "adv")):
    """(part of speech, the fields before `|`, the gloss after it) of every synset line, in file order (the licence
    header skipped); a missing file stops the build with the package to install."""
    for pos in parts_of_speech:
        path = wordnet_dir / f"data.{pos}"
        if not path.is_file():
            raise SystemExit(f"{path} not found: install WordNet with `apt-get install -y wordnet-base`")
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header
            head, gloss = line.split("|", 1)
            yield pos, head.split(), gloss


def read_synsets(wordnet_dir: Path = WORDNET_DIR, parts_of_speech: tuple[str, ...] = ("noun", "verb", "adj", "adv")):
    """(synset id, lexname, definition, quoted example sentences) for every synset, in file order."""
    out = []
    for pos, fields, gloss in synset_lines(wordnet_dir, parts_of_speech):
        definition = gloss.split(";")[0].strip()
        definition = re.sub(r"\s+", " ", definition.replace('"', "")).strip()
        examples = [re.sub(r"\s+", " ", e).strip() for e in re.findall(r'"([^"]+)"', gloss)]
        out.append((f"{pos}:{fields[0]}", LEXNAMES[int(fields[1])], definition, examples))
    return out


def read_glosses(wordnet_dir: Path = WORDNET_DIR) -> list[tuple[str, str, str]]:
    """(synset id, lexname, definition) for every synset, in file order."""
    return [(sid, lex, definition) for sid, lex, definition, _ in read_synsets(wordnet_dir)]


def _rank(synset_id: str) -> str:
    return hashlib.sha256(f"tlops-wordnet-v1:{synset_id}".encode()).hexdigest()


def build(out_dir: Path, wordnet_dir: Path = WORDNET_DIR) -> dict[str, int]:
    rows = read_glosses(wordnet_dir)
    seen: set[str] = set()
    by_class: dict[str, list[tuple[str, str]]] = {c: [] for c in DEMO_CLASSES}
    for sid, lex, text in sorted(rows, key=lambda r: _rank(r[0])):
        key = text.lower()
        if lex not in by_class or len(text) < 8 or key in seen:
            continue  # one row per distinct definition, so no text can leak across splits
        seen.add(key)
        by_class[lex].append((text, lex))
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    start = 0
    for split, n in PER_CLASS.items():
        split_rows = [r for c in DEMO_CLASSES for r in by_class[c][start : start + n]]
        split_rows.sort(key=lambda r: _rank(r[0]))
        write_split_csv(out_dir / f"{split}.csv", ["text", "label"], split_rows)
        counts[split] = len(split_rows)
        start += n
    (out_dir / "dataset.yaml").write_text(
        "modality: text\n"
        "name: wordnet-supersense\n"
        "source: WordNet 3.0 (Debian wordnet-base); text = gloss definition, label = lexicographer file\n"
        f"labels: [{', '.join(DEMO_CLASSES)}]\n",
        encoding="utf-8",
    )
    return counts


def main(out_dir: Path = typer.Argument(Path("data/text_wordnet"))) -> None:
    counts = build(out_dir)
    print(f"wrote {out_dir}: {counts}")


if __name__ == "__main__":
    typer.run(main)
