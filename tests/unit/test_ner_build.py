"""The NER demo builder (tlops/data/build_ner_wordnet.py) on a small WordNet-format folder written here: typed
longest-match tags, ambiguous names left out, held-out entities never in train, byte-identical rebuilds."""

from __future__ import annotations

from pathlib import Path

from tlops.data import build_ner_wordnet as b
from tlops.ner.files import read_ner_dataset
from tlops.ner.tags import spans

PEOPLE = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Emmy Noether", "Carl Gauss", "Marie Curie", "Niels Bohr",
          "Max Planck", "Enrico Fermi", "Lise Meitner"]
PLACES = ["Paris", "London", "Rome", "Berlin", "Vienna", "Prague", "Madrid", "Lisbon", "Dublin", "Oslo", "Saint Louis"]
NOUN_PERSON, NOUN_LOCATION, NOUN_ACT, NOUN_COMMUNICATION = 18, 15, 4, 10


def _line(offset: int, lex: int, lemma: str, gloss: str, instance: bool = True) -> str:
    ptr = "001 @i 00000001 n 0000" if instance else "001 @ 00000001 n 0000"
    return f"{offset:08d} {lex:02d} n 01 {lemma.replace(' ', '_')} 0 {ptr} | {gloss}  \n"


def fake_wordnet(root: Path) -> Path:
    root.mkdir()
    lines, off = ["  1 This software and database is being provided\n"], 100
    for i, p in enumerate(PEOPLE):
        place, other = PLACES[i % len(PLACES)], PEOPLE[(i + 3) % len(PEOPLE)]
        lines.append(_line(off, NOUN_PERSON, p, f'a scientist born in {place} who worked with {other}; '
                                                f'"{p} wrote to {other} about the problem"; known across the world'))
        off += 100
    for i, p in enumerate(PLACES):
        lines.append(_line(off, NOUN_LOCATION, p, f"a city on a river near {PLACES[(i + 1) % len(PLACES)]}; "
                                                  f'"we drove from {p} to {PLACES[(i + 2) % len(PLACES)]} in a day"'))
        off += 100
    lines += [_line(off, NOUN_LOCATION, "Hastings", "a town in England where the old battle of Hastings was fought"),
              _line(off + 100, NOUN_ACT, "Hastings", "the battle where a duke from Normandy beat the English"),
              _line(off + 200, NOUN_PERSON, "French", "an American sculptor who lived near Paris for years"),
              _line(off + 300, NOUN_COMMUNICATION, "French", "the language spoken by people in France", instance=False),
              _line(off + 400, NOUN_COMMUNICATION, "essay", '"she wrote French poems about the sea"', instance=False)]
    (root / "data.noun").write_text("".join(lines), encoding="latin-1")
    for pos in ("verb", "adj", "adv"):
        (root / f"data.{pos}").write_text("", encoding="latin-1")
    return root


def test_builder_tags_by_type_drops_ambiguous_names_and_holds_entities_out_of_train(tmp_path):
    wn = fake_wordnet(tmp_path / "wn")
    sizes = {"train": 20, "val": 4, "test": 6}
    counts = b.build(tmp_path / "a", wordnet_dir=wn, sizes=sizes)
    b.build(tmp_path / "b", wordnet_dir=wn, sizes=sizes)
    assert counts == sizes
    for f in ("train.conll", "val.conll", "test.conll", "dataset.yaml"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f"{f} differs between two builds"
    ds = read_ner_dataset(tmp_path / "a")
    assert ds.scheme == "IOB2" and ds.meta["task"] == "token_classification"
    typed = {}
    for split, sentences in ds.splits.items():
        for s in sentences:
            assert "Hastings" not in s.tokens, "a name of two types (town, battle) is left out with its sentences"
            assert "French" not in s.tokens, "a name that is also a common word's lemma is left out with its sentences"
            for sp in spans(s.tags):
                typed.setdefault(" ".join(s.tokens[sp.start:sp.end]), set()).add((sp.type, split))
    assert {t for t, _ in typed["Saint Louis"]} == {"LOC"}, "multi-word names match as one entity"
    assert all({t for t, _ in typed.get(p, {("PER", "")})} == {"PER"} for p in PEOPLE)
    held = {name for name in PEOPLE + PLACES if b._unit(f"n:{(100 + 100 * (PEOPLE + PLACES).index(name)):08d}") < b.HELD_TEST + b.HELD_VAL}
    assert held, "the fake WordNet holds some entities out"
    in_train = {name for name, where in typed.items() if any(split == "train" for _, split in where)}
    assert not in_train & held, f"held-out entities {sorted(in_train & held)} reached train"
