"""Token-classification datasets: a folder with `train`, optional `val` and `test` splits, each a CoNLL column file
(`train.conll`) or JSON lines (`train.jsonl`), plus an optional `dataset.yaml`.

CoNLL: one token per line, whitespace-separated columns with the token first and the tag last (columns between are
ignored), a blank line between sentences; `-DOCSTART-` lines are skipped. JSON lines: one sentence per line,
`{"tokens": ["Ada", "Lovelace", "wrote"], "tags": ["B-PER", "I-PER", "O"]}`. Tags are IOB2 or IOBES: dataset.yaml
`scheme:` declares it, else it is detected (IOBES when any tag is `E-`/`S-`). Tokens and tags are read in Unicode
NFC. A missing val split is carved from train with the seed.

Every problem is reported at once, each naming the file and line (JSON lines: the record's line, and the token),
the value and the fix: malformed rows and records, tags outside the scheme, an `I-`/`E-` tag that continues no
entity of its type (IOBES: an entity left open), token/tag count mismatches, empty splits, and an entity type in
val/test that train never shows (the model could never predict it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlops.errors import DataError
from tlops.ner.tags import OUTSIDE, SCHEMES, detect_scheme, sequence_problems, split_tag, tag_set
from tlops.ner.words import normal_token
from tlops.text_files import parse_yaml, read_utf8

SPLITS = ("train", "val", "test")
FORMATS = ("conll", "jsonl")
TASK = "token_classification"
DOCSTART = "-DOCSTART-"
MAX_SHOWN = 20  # problems listed in the error message (all are on `NerDataError.problems`)


class NerDataError(DataError):
    """The dataset's problems, every one a line `FILE line N: what; fix`."""

    def __init__(self, problems: list[str]):
        shown = "\n".join(f"- {p}" for p in problems[:MAX_SHOWN])
        more = f"\n- ... and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        super().__init__(f"the token-classification data has {len(problems)} problem(s):\n{shown}{more}")
        self.problems = problems


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    line: int = 0  # CoNLL: the first token's line; JSON lines: the record's line (1-based); 0: made in memory


@dataclass
class NerDataset:
    root: Path
    splits: dict[str, list[Sentence]]  # train, val, test
    scheme: str  # "IOB2" | "IOBES"
    val_carved: bool
    sources: dict[str, Path] = field(default_factory=dict)  # the file each split was read from (a carved val: none)
    meta: dict = field(default_factory=dict)  # dataset.yaml

    @property
    def types(self) -> list[str]:
        """Entity types seen in train, sorted."""
        return entity_types(self.splits["train"])

    @property
    def tags(self) -> list[str]:
        """The label set a model predicts: every tag of the scheme for train's entity types, 'O' first."""
        return tag_set(self.types, self.scheme)

    def tokens(self, split: str) -> list[list[str]]:
        return [s.tokens for s in self.splits[split]]

    def tag_lists(self, split: str) -> list[list[str]]:
        return [s.tags for s in self.splits[split]]


def entity_types(sentences: list[Sentence]) -> list[str]:
    return sorted({split_tag(t)[1] for s in sentences for t in s.tags if t != OUTSIDE})


def _tag_problem(tag: str, scheme: str | None) -> str | None:
    """Why `tag` is not a tag (of the declared scheme), or None."""
    try:
        prefix, _ = split_tag(tag)
    except ValueError:
        return (f"tag {tag!r} is not a tag; write O, or B-TYPE / I-TYPE (IOB2), or also E-TYPE / S-TYPE (IOBES), "
                "e.g. B-PER (a hyphen after the prefix, no spaces)")
    if scheme == "IOB2" and prefix in ("E", "S"):
        return (f"tag {tag!r} is an IOBES tag, but dataset.yaml declares scheme: IOB2; write IOB2 tags (B-/I-) or "
                "declare scheme: IOBES")
    return None


def read_conll(path: Path, scheme: str | None = None) -> tuple[list[Sentence], list[str]]:
    """The file's sentences, and the problems of its rows (malformed row, not a tag)."""
    text = read_utf8(path, DataError)
    sentences: list[Sentence] = []
    problems: list[str] = []
    tokens: list[str] = []
    tags: list[str] = []
    first = 0

    def close():
        nonlocal tokens, tags
        if tokens:
            sentences.append(Sentence(tokens, tags, first))
        tokens, tags = [], []

    for n, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            close()
            continue
        if cols[0] == DOCSTART:
            close()
            continue
        if len(cols) < 2:
            problems.append(f"{path} line {n}: row {line.strip()!r} has one column; a row is a token and its tag "
                            "separated by whitespace (token first, tag last), e.g. 'Paris B-LOC'; a blank line ends a sentence")
            close()
            continue
        tag = normal_token(cols[-1])
        bad = _tag_problem(tag, scheme)
        if bad:
            problems.append(f"{path} line {n}: {bad}")
        if not tokens:
            first = n
        tokens.append(normal_token(cols[0]))
        tags.append(tag)
    close()
    return sentences, problems


def read_jsonl(path: Path, scheme: str | None = None) -> tuple[list[Sentence], list[str]]:
    """The file's sentences (one JSON object per line), and the problems of its records."""
    text = read_utf8(path, DataError)
    sentences: list[Sentence] = []
    problems: list[str] = []
    example = '{"tokens": ["Ada", "Lovelace"], "tags": ["B-PER", "I-PER"]}'
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            rec = json.loads(line)
        except ValueError as e:
            problems.append(f"{where}: not valid JSON ({e.msg} at column {e.colno}); write one JSON object per line, e.g. {example}")
            continue
        if not isinstance(rec, dict) or not {"tokens", "tags"} <= rec.keys():
            have = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            problems.append(f"{where}: a record needs 'tokens' and 'tags' lists, got {have}; write e.g. {example}")
            continue
        toks, tags = rec["tokens"], rec["tags"]
        if not (isinstance(toks, list) and isinstance(tags, list)):
            problems.append(f"{where}: 'tokens' and 'tags' must be lists, got {type(toks).__name__} and {type(tags).__name__}; write e.g. {example}")
            continue
        odd = [(k, i, v) for k, vs in (("tokens", toks), ("tags", tags)) for i, v in enumerate(vs) if not isinstance(v, str)]
        if odd:
            k, i, v = odd[0]
            problems.append(f"{where}: {k}[{i}] is {v!r}, not a string; quote it (every token and tag is a string)")
            continue
        if len(toks) != len(tags):
            problems.append(f"{where}: {len(toks)} tokens but {len(tags)} tags; give exactly one tag per token")
            continue
        if not toks:
            problems.append(f"{where}: a record with no tokens; drop that line")
            continue
        for i, t in enumerate(toks):
            if not t.strip() or t != "".join(t.split()):
                problems.append(f"{where}, token {i}: token {t!r} is empty or holds whitespace; split it into tokens without "
                                "spaces (or drop it, with its tag)")
        for i, tag in enumerate(tags):
            bad = _tag_problem(normal_token(tag), scheme)
            if bad:
                problems.append(f"{where}, token {i} ({toks[i]!r}): {bad}")
        sentences.append(Sentence([normal_token(t) for t in toks], [normal_token(t) for t in tags], n))
    return sentences, problems


def _where(path: Path, s: Sentence, i: int) -> str:
    """The location of token i of a sentence read from `path`."""
    if path.suffix == ".jsonl":
        return f"{path} line {s.line}, token {i} ({s.tokens[i]!r})"
    return f"{path} line {s.line + i}"


def read_meta(root: Path) -> tuple[dict, list[str]]:
    """dataset.yaml (optional) and its problems: `task` must be token_classification, `scheme` IOB2 or IOBES."""
    f = root / "dataset.yaml"
    if not f.is_file():
        return {}, []
    meta = parse_yaml(read_utf8(f, DataError), str(f), DataError, "fix the syntax there (indentation, brackets, quotes)") or {}
    if not isinstance(meta, dict):
        return {}, [f"{f}: must be a mapping such as `task: token_classification`, got a {type(meta).__name__}"]
    problems = []
    if meta.get("task", TASK) != TASK:
        problems.append(f"{f}: task is {meta['task']!r}, but these are token-classification files; write task: {TASK}")
    if "scheme" in meta and str(meta["scheme"]).upper() not in SCHEMES:
        problems.append(f"{f}: scheme {meta['scheme']!r} is not one of {list(SCHEMES)}; declare one, or remove the key to "
                        "detect it from the tags")
    return meta, problems


def find_split_file(root: Path, split: str) -> tuple[Path | None, str | None]:
    """(the split's file, None) or (None, the problem: both formats present)."""
    found = [root / f"{split}.{ext}" for ext in FORMATS if (root / f"{split}.{ext}").is_file()]
    if len(found) > 1:
        return None, f"{root}: both {found[0].name} and {found[1].name} exist; keep one file per split"
    return (found[0] if found else None), None


def carve_val(train: list[Sentence], seed: int, fraction: float) -> tuple[list[Sentence], list[Sentence]]:
    """(train, val): a seeded `fraction` of train's sentences (at least one) held out, both in file order."""
    n_val = max(1, round(len(train) * fraction))
    held = set(np.random.default_rng(seed).permutation(len(train))[:n_val].tolist())
    return [s for i, s in enumerate(train) if i not in held], [s for i, s in enumerate(train) if i in held]


def read_ner_dataset(root: str | Path, scheme: str | None = None, seed: int = 0, val_fraction: float = 0.1) -> NerDataset:
    """Read and validate a token-classification dataset folder; raises NerDataError listing every problem.
    `scheme` overrides dataset.yaml's; neither: detected from the tags."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; point at a folder holding train.conll (or .jsonl) and test.conll")
    meta, problems = read_meta(root)
    declared = scheme or meta.get("scheme")
    declared = str(declared).upper() if declared and str(declared).upper() in SCHEMES else None
    if scheme and declared is None:
        raise DataError(f"tag scheme {scheme!r} is not one of {list(SCHEMES)}")
    splits: dict[str, list[Sentence]] = {}
    sources: dict[str, Path] = {}
    for split in SPLITS:
        path, problem = find_split_file(root, split)
        if problem:
            problems.append(problem)
            continue
        if path is None:
            if split != "val":
                problems.append(f"{root}: no {split}.conll or {split}.jsonl; add the {split} split "
                                "(CoNLL: one 'token tag' row per line, a blank line between sentences)")
            continue
        sentences, file_problems = (read_jsonl if path.suffix == ".jsonl" else read_conll)(path, declared)
        problems += file_problems
        if not sentences and not file_problems:
            problems.append(f"{path}: no sentences; add sentences to it" + (" or remove it to carve val from train" if split == "val" else ""))
        splits[split], sources[split] = sentences, path
    all_tags = [t for ss in splits.values() for s in ss for t in s.tags]
    used = declared or detect_scheme(all_tags)
    if not problems:  # the sequence rules read well-formed tags only
        for split, sentences in splits.items():
            for s in sentences:
                for i, msg in sequence_problems(s.tags, used):
                    problems.append(f"{_where(sources[split], s, i)}: {msg}")
    if not problems:
        known = set(entity_types(splits["train"]))
        for split in ("val", "test"):
            unseen: dict[str, tuple[Sentence, int, int]] = {}
            for s in splits.get(split, []):
                for i, t in enumerate(s.tags):
                    kind = split_tag(t)[1]
                    if t != OUTSIDE and kind not in known:
                        first = unseen.setdefault(kind, (s, i, 0))
                        unseen[kind] = (first[0], first[1], first[2] + 1)
            for kind, (s, i, count) in sorted(unseen.items()):
                problems.append(f"{_where(sources[split], s, i)}: tag {s.tags[i]!r}: entity type {kind!r} never appears in "
                                f"train ({count} {split} tag(s) of it), so no model trained on train can predict it; add "
                                f"training sentences with {kind} entities, or tag these O")
    if problems:
        raise NerDataError(problems)
    carved = "val" not in splits
    if carved:
        if len(splits["train"]) < 2:
            raise NerDataError([(f"{sources['train']}: {len(splits['train'])} sentence(s), too few to carve a val split "
                                 "from; add sentences or a val file")])
        splits["train"], splits["val"] = carve_val(splits["train"], seed, val_fraction)
    return NerDataset(root=root, splits={k: splits[k] for k in SPLITS}, scheme=used, val_carved=carved,
                      sources=sources, meta=meta)


def write_conll(path: Path, sentences: list[Sentence]) -> None:
    """CoNLL columns `token tag`, a blank line after each sentence; UTF-8 with "\\n" line ends (byte-identical rebuilds)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines("".join(f"{tok} {tag}\n" for tok, tag in zip(s.tokens, s.tags)) + "\n" for s in sentences)
