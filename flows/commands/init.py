"""`tlops init DATA_DIR`: a starter config fitted to a dataset folder (`tlops init --list`: the starters)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from flows.console import esc, failed
from tlops.errors import TlopsError


def init(
    data_dir: Optional[Path] = typer.Argument(None, help="your dataset folder: train.csv + test.csv (text,label or path,label; "
                                              "numbers: dataset.yaml `task: regression`, optional `target:` and `group:` columns)"),
    out: Optional[Path] = typer.Option(None, "--out", help="config file to write (default: <folder name>.yaml here)"),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="linear_probe | finetune | domain_adapt | fewshot "
                                           "(default: fewshot for novel test classes or a regression's `group:` tasks, "
                                           "domain_adapt with unlabeled.csv, else linear_probe)"),
    list_: bool = typer.Option(False, "--list", help="list the starter configs shipped with tlops and exit"),
    force: bool = typer.Option(False, "--force", help="replace an existing config file"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Write a starter config for a dataset folder (classes, or numbers: a regression): modality, backbone and
    validation limits fitted to the data."""  # the folder, labels, columns and paths are the user's: escaped below
    from rich.console import Console

    from tlops.init import init as do_init
    from tlops.init import starter_names

    out_console = Console(soft_wrap=True)
    if list_:
        names = starter_names()
        if json_out:
            return print(json.dumps({"starters": names}))
        for name, what in names.items():
            out_console.print(esc(f"{name:<26}{what}"), highlight=False)
        return
    if data_dir is None:
        raise failed(TlopsError("tlops init DATA_DIR: name your dataset folder (or pass --list)"), 2)
    try:
        r = do_init(data_dir, out, strategy, force)
    except TlopsError as e:
        raise failed(e, 2)
    f = r.folder
    if json_out:
        return print(json.dumps({"config": str(r.config), "starter": r.starter, "modality": f.modality, "task": f.task,
                                 "classes": f.classes, "rows": f.rows, "val_carved": f.val_carved, "validation": r.validation,
                                 "strategy_changes": r.strategy_changes, "wrote_dataset_yaml": r.wrote_dataset_yaml}))
    carved = " (val carved from train)" if f.val_carved else ""
    out_console.print(f"[bold]{esc(str(f.root))}[/bold]: {esc(f.summary())}{carved}", highlight=False)
    if f.classes:  # a regression has no classes to count (its target rules are dataset.yaml's), nor do NER/QA files
        smallest = min(f.counts["train"].items(), key=lambda kv: (kv[1], kv[0]))
        out_console.print(esc(f"  smallest class {smallest[0]!r}: {smallest[1]} training rows -> validation.min_per_class "
                              f"{r.validation['min_per_class']}"), highlight=False)
    for k, v in r.strategy_changes.items():
        why = "fitted to the rows per task" if k == "queries" and f.regression else \
            "fitted to the rows per class" if k in ("queries", "ways") else "for numbers; see its comment"
        out_console.print(esc(f"  strategy.{k} {v} ({why})"), highlight=False)
    if r.wrote_dataset_yaml:
        task = f", task: {f.task}" if f.own_files else ""
        out_console.print(esc(f"wrote {f.root / 'dataset.yaml'} (modality: {f.modality}{task})"), highlight=False)
    out_console.print(esc(f"wrote {r.config} from starter {r.starter}"), highlight=False)
    out_console.print(esc(f"next:  tlops validate {r.config}   then   tlops run {r.config}"), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
