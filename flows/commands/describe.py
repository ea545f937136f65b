"""`tlops describe DATA_DIR`: a preview of a dataset folder before any run: rows per split and class (or the target's
range, for numbers), input lengths (text characters, image sizes, audio seconds), duplicates within and across splits
(and inputs given two labels), and a few examples per class; for token classification (CoNLL or JSON lines) sentences,
tokens and entities per type, for extractive QA (SQuAD JSON) questions, unanswerable ones and lengths. Every value read from the files (labels, texts, paths)
is escaped before it reaches a table. It describes what is there; `tlops validate` says whether a run accepts it."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from pathlib import Path

import typer

from flows.commands._common import JSON
from flows.console import esc, out, print_json, user_errors

SPLITS = ("train", "val", "test", "unlabeled")
EXAMPLE_CHARS = 70  # an example's text in the table (JSON has it whole)


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _file_key(path: Path) -> str:
    """Duplicate files are the same bytes, whatever their names; a file that cannot be read is its path."""
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return f"path:{path}"


def _sizes(paths: list[Path], modality: str) -> tuple[dict, list[str]]:
    """Image sizes (width x height: each size's count) or audio seconds (min/median/max) and sample rates; files that
    do not open are named (validation refuses them)."""
    unreadable: list[str] = []
    if modality == "image":
        from PIL import Image

        sizes = Counter()
        for p in paths:
            try:
                with Image.open(p) as im:
                    sizes[f"{im.width}x{im.height}"] += 1
            except Exception:  # noqa: BLE001 - any decoder error: the file is named, not described
                unreadable.append(str(p))
        return {"sizes": dict(sizes.most_common())}, unreadable
    import soundfile

    seconds, rates = [], Counter()
    for p in paths:
        try:
            info = soundfile.info(str(p))
        except Exception:  # noqa: BLE001
            unreadable.append(str(p))
            continue
        seconds.append(info.frames / info.samplerate)
        rates[str(info.samplerate)] += 1
    return {"seconds": _stats(seconds), "sample_rates": dict(rates.most_common())}, unreadable


def describe_folder(root: Path, examples: int = 3) -> dict:
    """What `tlops describe` shows, as one JSON-able dict."""
    from tlops.data.dataset import _read_csv, _read_meta
    from tlops.errors import DataError

    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a dataset folder (train.csv and test.csv, optional val.csv, unlabeled.csv)")
    meta = _read_meta(root / "dataset.yaml") if (root / "dataset.yaml").is_file() else {}
    task = meta.get("task") or "classification"
    if task == "token_classification":
        return _describe_tokens(root, examples)
    if task == "extractive_qa":
        return _describe_qa(root, examples)
    target = meta.get("target") or "label"
    frames = {s: _read_csv(root / f"{s}.csv", []) for s in SPLITS if (root / f"{s}.csv").is_file()}
    if "train" not in frames:
        others = sorted(p.name for p in root.iterdir() if p.is_file())
        raise DataError(f"{root / 'train.csv'} is missing (the folder holds {', '.join(others) or 'no files'}); describe reads "
                        "the CSV layout: train.csv and test.csv with text,label or path,label")
    columns = list(frames["train"].columns)
    column = "text" if "text" in columns else "path" if "path" in columns else None
    if column is None:
        raise DataError(f"{frames['train'].attrs['source']} line 1: no 'text' or 'path' column (header: {', '.join(columns)})")
    modality = meta.get("modality") or ("text" if column == "text" else None)
    numeric = task == "regression"
    report: dict = {"folder": str(root), "task": task, "target": target, "input": column, "splits": {}, "classes": {},
                    "duplicates": {}, "conflicting_labels": [], "examples": {}, "unreadable": []}
    keys: dict[str, list[str]] = {}
    for split, df in frames.items():
        if column not in df.columns:
            raise DataError(f"{df.attrs['source']} line 1: no {column!r} column (header: {', '.join(df.columns)}), "
                            f"unlike train.csv")
        inputs = df[column].tolist()
        entry: dict = {"rows": len(df)}
        if column == "text":
            entry["chars"] = _stats([len(t) for t in inputs])
            keys[split] = inputs
        else:
            paths = [p if Path(p).is_absolute() else root / p for p in map(Path, inputs)]
            if modality is None:
                suffixes = {p.suffix.lower() for p in paths}
                modality = "audio" if suffixes & {".wav", ".flac", ".ogg"} else "image"
            sizes, unreadable = _sizes(paths, modality)
            entry.update(sizes)
            report["unreadable"] += unreadable
            keys[split] = [_file_key(p) for p in paths]
        if target in df.columns and split != "unlabeled":
            if numeric:
                values = []
                for v in df[target]:
                    try:
                        values.append(float(v))
                    except ValueError:
                        continue
                entry["target"] = _stats(values)
            else:
                for label, n in Counter(df[target]).items():
                    report["classes"].setdefault(label, {})[split] = n
        counted = Counter(keys[split])
        entry["duplicate_rows"] = sum(n - 1 for n in counted.values() if n > 1)  # rows repeating an earlier row's input
        report["splits"][split] = entry
    report["modality"] = modality
    labelled = [s for s in ("train", "val", "test") if s in keys]
    for i, a in enumerate(labelled + (["unlabeled"] if "unlabeled" in keys else [])):
        for b in (labelled + ["unlabeled"])[i + 1:]:
            if b in keys and a != b:
                shared = set(keys[a]) & set(keys[b])
                if shared:
                    report["duplicates"][f"{a}&{b}"] = len(shared)
    if not numeric:  # one input, two labels (within or across the labelled splits)
        seen: dict[str, set] = {}
        shown: dict[str, str] = {}
        for split in labelled:
            df = frames[split]
            if target not in df.columns:
                continue
            for key, raw, label in zip(keys[split], df[column], df[target]):
                seen.setdefault(key, set()).add(label)
                shown.setdefault(key, raw)
        report["conflicting_labels"] = [{"input": shown[k], "labels": sorted(v)} for k, v in seen.items() if len(v) > 1]
        train = frames["train"]
        if target in train.columns:
            for label in sorted(report["classes"]):
                report["examples"][label] = train.loc[train[target] == label, column].head(examples).tolist()
    report["classes"] = {k: report["classes"][k] for k in sorted(report["classes"])}
    return report


def _report(root: Path, task: str, input_: str) -> dict:
    return {"folder": str(root), "task": task, "target": None, "input": input_, "modality": "text", "splits": {}, "classes": {},
            "duplicates": {}, "conflicting_labels": [], "examples": {}, "unreadable": []}


def _shared(keys: dict[str, list]) -> dict[str, int]:
    """Inputs found in two splits, per pair of splits."""
    names = list(keys)
    return {f"{a}&{b}": n for i, a in enumerate(names) for b in names[i + 1:] if (n := len(set(keys[a]) & set(keys[b])))}


def _sentences(path: Path) -> list[tuple[list[str], list[str]]]:
    """(tokens, tags) per sentence of a CoNLL column file (token first, tag last, blank lines between sentences,
    -DOCSTART- skipped) or a JSON-lines file ({"tokens": [...], "tags": [...]}); as written, not validated."""
    import json

    from tlops.text_files import read_utf8
    from tlops.errors import DataError

    text = read_utf8(path, DataError)
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    out.append((list(map(str, row["tokens"])), list(map(str, row["tags"]))))
                except (ValueError, KeyError, TypeError) as e:
                    raise DataError(f"{path} line {n}: not a {{\"tokens\": [...], \"tags\": [...]}} object ({e}); "
                                    f"`tlops validate` says what a run needs") from None
        return out
    out, tokens, tags = [], [], []
    for line in text.splitlines() + [""]:
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if tokens:
                out.append((tokens, tags))
            tokens, tags = [], []
            continue
        tokens.append(cols[0])
        tags.append(cols[-1])
    return out


def _entities(tokens: list[str], tags: list[str]) -> list[tuple[str, str]]:
    """(type, text) of each entity: a B-/S- tag starts one, I-/E- tags of its type continue it (IOB2, IOBES)."""
    found, current = [], None
    for token, tag in zip(tokens, tags):
        prefix, _, kind = tag.partition("-")
        if prefix in ("B", "S") or (prefix in ("I", "E") and (current is None or current[0] != kind)):
            current = [kind, [token]]
            found.append(current)
        elif prefix in ("I", "E"):
            current[1].append(token)
        else:
            current = None
        if prefix in ("S", "E"):
            current = None
    return [(k, " ".join(ts)) for k, ts in found]


def _describe_tokens(root: Path, examples: int) -> dict:
    """Token classification: sentences, tokens per sentence, entities per split and type, repeated sentences, and
    example entities per type."""
    from tlops.errors import DataError

    report = _report(root, "token_classification", "tokens")
    keys: dict[str, list] = {}
    for split in ("train", "val", "test"):
        path = next((root / f"{split}{ext}" for ext in (".conll", ".jsonl") if (root / f"{split}{ext}").is_file()), None)
        if path is None:
            continue
        sentences = _sentences(path)
        keys[split] = [" ".join(tokens) for tokens, _ in sentences]
        counted = Counter(keys[split])
        report["splits"][split] = {"rows": len(sentences), "tokens": sum(len(t) for t, _ in sentences),
                                   "tokens_per_sentence": _stats([len(t) for t, _ in sentences]),
                                   "duplicate_rows": sum(n - 1 for n in counted.values() if n > 1)}
        for tokens, tags in sentences:
            for kind, text in _entities(tokens, tags):
                report["classes"].setdefault(kind, {}).setdefault(split, 0)
                report["classes"][kind][split] += 1
                if split == "train" and len(shown := report["examples"].setdefault(kind, [])) < examples and text not in shown:
                    shown.append(text)
    if "train" not in keys:
        raise DataError(f"{root}: no train.conll or train.jsonl; a token-classification folder holds train and test as CoNLL "
                        "column files or JSON lines")
    report["duplicates"] = _shared(keys)
    report["classes"] = {k: report["classes"][k] for k in sorted(report["classes"])}
    report["examples"] = {k: report["examples"].get(k, []) for k in report["classes"]}
    return report


def _describe_qa(root: Path, examples: int) -> dict:
    """Extractive QA (SQuAD JSON): questions, unanswerable ones, context and question lengths, questions or contexts
    found in two splits, and example questions with their first answer."""
    import json

    from tlops.errors import DataError
    from tlops.text_files import read_utf8

    report = _report(root, "extractive_qa", "question, context")
    questions: dict[str, list] = {}
    for split in ("train", "val", "test"):
        path = root / f"{split}.json"
        if not path.is_file():
            continue
        try:
            doc = json.loads(read_utf8(path, DataError))
            paragraphs = [p for article in doc["data"] for p in article["paragraphs"]]
            qas = [(p["context"], q) for p in paragraphs for q in p["qas"]]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: not SQuAD JSON (data[].paragraphs[].context, qas[]): {type(e).__name__} {e}; "
                            "`tlops validate` names the record") from None
        impossible = sum(bool(q.get("is_impossible")) for _, q in qas)
        questions[split] = [(q.get("question", ""), c) for c, q in qas]
        counted = Counter(questions[split])
        report["splits"][split] = {"rows": len(qas), "unanswerable": impossible, "contexts": len(paragraphs),
                                   "context_chars": _stats([len(p["context"]) for p in paragraphs]),
                                   "question_chars": _stats([len(q.get("question", "")) for _, q in qas]),
                                   "duplicate_rows": sum(n - 1 for n in counted.values() if n > 1)}
        report["classes"].setdefault("answerable", {})[split] = len(qas) - impossible
        report["classes"].setdefault("unanswerable", {})[split] = impossible
        if split == "train":
            report["examples"]["questions"] = [{"question": q.get("question", ""), "answer": (q.get("answers") or [{}])[0].get("text")}
                                               for _, q in qas[:examples]]
    if "train" not in questions:
        raise DataError(f"{root}: no train.json; an extractive-QA folder holds train.json and test.json in SQuAD's format")
    report["duplicates"] = _shared({s: [f"{q}\n{c}" for q, c in v] for s, v in questions.items()})
    if not any(report["classes"]["unanswerable"].values()):
        del report["classes"]["unanswerable"]
    return report


def _fmt(stats: dict | None, spec: str = "g") -> str:
    if not stats:
        return "-"
    return " / ".join(format(stats[k], spec) for k in ("min", "median", "max"))


def describe(data_dir: Path = typer.Argument(..., help="a dataset folder: train.csv, test.csv (optional val.csv, unlabeled.csv); NER: train.conll ...; QA: train.json ..."),
             examples: int = typer.Option(3, "--examples", help="examples shown per class"),
             json_out: bool = JSON) -> None:
    """Preview a dataset folder: rows per split and class, text lengths / image sizes / audio seconds, duplicates
    within and across splits, inputs with two labels, and examples per class."""
    from rich.table import Table

    r = describe_folder(data_dir, examples)
    if json_out:
        return print_json(r)
    splits = list(r["splits"])
    rows, key, classes_title, examples_title = {
        "token_classification": ("sentences", "entity type", "entities per split and type", "example entities (train)"),
        "extractive_qa": ("questions", "questions", "questions per split", ""),
    }.get(r["task"], ("rows", "class", "rows per split and class", "examples (train)"))
    out.print(esc(f"{r['folder']}: {r['modality']} {r['task']}, {rows} " + ", ".join(f"{s} {e['rows']}" for s, e in r["splits"].items())),
              highlight=False)
    if r["classes"]:
        t = Table(key, *[s for s in splits if s != "unlabeled"], title=classes_title)
        for label, per in r["classes"].items():
            t.add_row(esc(label), *[str(per.get(s, 0)) for s in splits if s != "unlabeled"])
        out.print(t)
    what = {"token_classification": ("tokens per sentence min / median / max", lambda e: _fmt(e["tokens_per_sentence"])),
            "extractive_qa": ("contexts; context / question characters (median)",
                              lambda e: f"{e['contexts']}; {e['context_chars']['median']:g} / {e['question_chars']['median']:g}"),
            "text": ("characters min / median / max", lambda e: _fmt(e.get("chars"))),
            "image": ("sizes (width x height: rows)", lambda e: ", ".join(f"{k}: {v}" for k, v in list(e["sizes"].items())[:4])
                      + (" ..." if len(e["sizes"]) > 4 else "")),
            "audio": ("seconds min / median / max (sample rates)",
                      lambda e: f"{_fmt(e['seconds'], '.2f')} ({', '.join(f'{k} Hz' for k in e['sample_rates'])})")}
    what = what.get(r["task"]) or what[r["modality"]]
    t = Table("split", rows, what[0], *(["target min / median / max"] if r["task"] == "regression" else []), "repeated inputs",
              title="inputs")
    for s, e in r["splits"].items():
        t.add_row(s, str(e["rows"]), esc(what[1](e)), *([_fmt(e.get("target"))] if r["task"] == "regression" else []),
                  str(e["duplicate_rows"]))
    out.print(t)
    if r["duplicates"]:
        out.print("[yellow]the same input in two splits[/yellow] (a test row seen in training inflates its score): "
                  + ", ".join(f"{k.replace('&', ' and ')} {n}" for k, n in r["duplicates"].items()), highlight=False)
    for c in r["conflicting_labels"][:5]:
        out.print(f"[yellow]one input, labels {esc(', '.join(map(repr, c['labels'])))}[/yellow]: {esc(repr(c['input'][:EXAMPLE_CHARS]))}",
                  highlight=False)
    if len(r["conflicting_labels"]) > 5:
        out.print(f"... and {len(r['conflicting_labels']) - 5} more inputs with two or more labels (--json lists them)", highlight=False)
    for p in r["unreadable"][:5]:
        out.print(f"[yellow]does not open:[/yellow] {esc(p)}", highlight=False)
    if r["task"] == "extractive_qa":
        t = Table("question (train)", "first answer", title="examples")
        for x in r["examples"].get("questions", []):
            t.add_row(esc(x["question"]), esc(x["answer"]) if x["answer"] is not None else "(none: unanswerable)")
        out.print(t)
    elif r["examples"]:
        t = Table(key, examples_title, title=f"examples per {key}")
        for label, xs in r["examples"].items():
            t.add_row(esc(label), esc(" | ".join(x if len(x) <= EXAMPLE_CHARS else x[:EXAMPLE_CHARS - 3] + "..." for x in xs)))
        out.print(t)


def register(app: typer.Typer) -> None:
    app.command("describe")(user_errors(describe))
