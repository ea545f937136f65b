"""The record of a label-free choice among candidate models, shared by the families that choose one without target
labels: domain adaptation (source_only vs the adapted models, `tlops.strategies.domain_adapt`) and meta-transfer
(the meta-learned encoder vs its no-meta-training baselines).

One record per run, written as `selection.json` beside the trained head (or inside the package the train step
writes) and copied into the registered package; the model card's "Selection" section, the CLI's table and the
markdown of bench reports all render it from here.

    {"family": "domain_adaptation" | "meta_transfer",
     "criterion": "agreement of dev, im, snd, source_val",
     "chosen": "source_only",
     "why": "one sentence",
     "candidates": [{"name": "dann", "mode": "finetune" | "features" | null, "scores": {"dev_risk": 0.41, ...}, "excluded": "collapsed: ..." | null, "chosen": false}],
     "oracle": {"dann": 0.39, "source_only": 0.40}}   # optional: labelled target metric, reported only, never used to choose
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tlops.errors import DataError

if TYPE_CHECKING:
    from rich.table import Table

SELECTION_FILE = "selection.json"
FAMILIES = ("domain_adaptation", "meta_transfer")


class SelectionCandidate(BaseModel):
    """One candidate model and its label-free scores; `excluded` says why it could not be chosen (e.g. collapsed)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    mode: str | None = Field(None, description="how it was trained, when a pool mixes them (domain adaptation: features or finetune)")
    scores: dict[str, float | None] = Field(default_factory=dict, description="criterion name -> value (None: not computed)")
    excluded: str | None = Field(None, description="why this candidate was dropped before the choice; None: it was eligible")
    chosen: bool = False


class SelectionRecord(BaseModel):
    """How a run chose its registered model without target labels, and why."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["domain_adaptation", "meta_transfer"]
    criterion: str = Field(min_length=1, description="what chose: one criterion's name, or how several were combined")
    chosen: str = Field(min_length=1, description="the name of the registered candidate")
    why: str = Field(min_length=1, description="one sentence a user can read: why this candidate")
    candidates: list[SelectionCandidate] = Field(min_length=1)
    oracle: dict[str, float | None] | None = Field(None, description="candidate name -> its labelled target metric: reported "
                                                                     "beside the choice, never used to make it")

    @model_validator(mode="after")
    def _consistent(self):
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"candidate names must be unique; repeated: {dup}")
        if self.chosen not in names:
            raise ValueError(f"chosen {self.chosen!r} is not one of the candidates {names}")
        flagged = [c.name for c in self.candidates if c.chosen]
        if flagged != [self.chosen]:
            raise ValueError(f"exactly the chosen candidate {self.chosen!r} must have chosen: true (flagged: {flagged})")
        if self.candidate(self.chosen).excluded is not None:
            raise ValueError(f"the chosen candidate {self.chosen!r} is excluded ({self.candidate(self.chosen).excluded})")
        return self

    def candidate(self, name: str) -> SelectionCandidate:
        return next(c for c in self.candidates if c.name == name)

    def score_names(self) -> list[str]:
        """Every criterion any candidate has a score for, in first-seen order."""
        return list(dict.fromkeys(k for c in self.candidates for k in c.scores))

    # ---- files ----------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write as JSON, whole or not at all (a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.model_dump_json(indent=1), encoding="utf-8")
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> SelectionRecord:
        """Read a `selection.json`; a broken file is one DataError naming it, the problem and the fix."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {e.lineno}: not valid JSON ({e.msg}); rerun the training run that wrote it") from None
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            raise DataError(f"{path}: {where}: {err['msg']} (value {str(err.get('input'))[:80]!r}); a selection record needs "
                            f"family, criterion, chosen, why and candidates (tlops/selection_record.py); rerun the training run "
                            f"that wrote it") from None

    # ---- renderers ------------------------------------------------------------------------------------

    def _rows(self) -> tuple[list[str], list[list[str]]]:
        scores = self.score_names()
        modes = any(c.mode for c in self.candidates)
        header = ["candidate", *(["mode"] if modes else []), *scores, *(["oracle (not used)"] if self.oracle else []), "status"]
        rows = []
        for c in self.candidates:
            status = "CHOSEN" if c.chosen else (f"excluded: {c.excluded}" if c.excluded else "eligible")
            oracle = [_fmt((self.oracle or {}).get(c.name))] if self.oracle else []
            rows.append([c.name, *([_fmt(c.mode)] if modes else []), *(_fmt(c.scores.get(k)) for k in scores), *oracle, status])
        return header, rows

    def rich_table(self, title: str | None = None) -> Table:
        """A Rich table of the candidates (every user string escaped: a name like `[red]` prints as written)."""
        from rich.markup import escape
        from rich.table import Table

        header, rows = self._rows()
        table = Table(title=escape(title or f"{_family_title(self.family)}: chose {self.chosen} ({self.criterion})"),
                      caption=escape(self.why), caption_justify="left")
        for i, h in enumerate(header):
            table.add_column(escape(h), justify="left" if i == 0 or i == len(header) - 1 or h == "mode" else "right")
        for c, row in zip(self.candidates, rows):
            table.add_row(*(escape(v) for v in row), style="bold green" if c.chosen else ("dim" if c.excluded else None))
        return table

    def markdown(self) -> str:
        """The record as a markdown paragraph + table (cells escaped for markdown and inline HTML)."""
        header, rows = self._rows()
        lines = [f"**{_md(_family_title(self.family))}**: chose `{_md(self.chosen)}` by {_md(self.criterion)}. {_md(self.why)}", "",
                 "| " + " | ".join(_md(h) for h in header) + " |",
                 "|" + "|".join(["---", *(["---:"] * (len(header) - 2)), "---"]) + "|"]
        lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """An HTML fragment (a sentence + a table) for the model card; every string escaped."""
        header, rows = self._rows()
        e = lambda x: html.escape(str(x), quote=True)
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join(("<tr class=\"chosen\">" if c.chosen else "<tr>") + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>"
                       for c, row in zip(self.candidates, rows))
        oracle = ('<p class="note">oracle: the labelled target metric of each candidate, shown for judging the choice; it was '
                  "never used to make it.</p>") if self.oracle else ""
        return (f"<p><b>{e(_family_title(self.family))}</b>: registered <b><code>{e(self.chosen)}</code></b> "
                f"(criterion: {e(self.criterion)}). {e(self.why)}</p>"
                f'<table class="numbers"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{oracle}')


def selection_file(result: Any) -> Path | None:
    """The `selection.json` of a train step's result (`tlops.records`), when its strategy wrote one: inside the package
    the train step wrote, or beside its head file. None when there is none."""
    folder = Path(result.package) if getattr(result, "kind", None) == "package" else (
        Path(result.head_path).parent if getattr(result, "head_path", None) else None)
    path = folder / SELECTION_FILE if folder is not None else None
    return path if path is not None and path.is_file() else None


def _family_title(family: str) -> str:
    return {"domain_adaptation": "Domain adaptation", "meta_transfer": "Meta-transfer"}.get(family, family)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _md(s: Any) -> str:
    """A string made safe for one markdown table cell: HTML escaped, pipes and markdown emphasis characters escaped."""
    text = html.escape(" ".join(str(s).split()), quote=False)
    for ch in "\\|*_`[]":
        text = text.replace(ch, "\\" + ch)
    return text
