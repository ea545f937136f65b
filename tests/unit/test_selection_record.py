"""The shared record of a label-free choice (tlops/selection_record.py): its consistency rules, the atomic file round
trip, a broken file as one clear error, escaped renderers (Rich, markdown, HTML) and the model card's Selection
section and the package copy."""

from __future__ import annotations

import io
import json

import pytest
from pydantic import ValidationError
from rich.console import Console

from tests.unit.test_model_card import card_records
from tlops.errors import DataError
from tlops.model_card import render_model_card
from tlops.selection_record import (
    SELECTION_FILE,
    SelectionCandidate,
    SelectionRecord,
    selection_file,
)

NASTY = "[red]<b>|x*"


def _record(**kw) -> SelectionRecord:
    base = {"family": "domain_adaptation", "criterion": "agreement of dev, im", "chosen": "source_only",
            "why": f"no adapted candidate is credibly better than source_only {NASTY}",
            "candidates": [SelectionCandidate(name="source_only", scores={"dev_risk": 0.4, "im": 0.9}, chosen=True),
                           SelectionCandidate(name=NASTY, scores={"dev_risk": 0.3, "im": 0.01}, excluded="collapsed: one class")],
            "oracle": {"source_only": 0.39, NASTY: 0.10}}
    return SelectionRecord(**(base | kw))


def test_consistency_rules():
    with pytest.raises(ValidationError, match="not one of the candidates"):
        _record(chosen="nope")
    with pytest.raises(ValidationError, match="is excluded"):
        _record(chosen=NASTY, candidates=[SelectionCandidate(name="source_only", scores={}),
                                          SelectionCandidate(name=NASTY, scores={}, excluded="collapsed", chosen=True)])
    with pytest.raises(ValidationError, match="unique"):
        _record(candidates=[SelectionCandidate(name="source_only", chosen=True), SelectionCandidate(name="source_only")])


def test_round_trip_and_broken_file(tmp_path):
    r = _record()
    path = r.save(tmp_path / "x" / SELECTION_FILE)
    assert SelectionRecord.load(path) == r and [p.name for p in path.parent.iterdir()] == [SELECTION_FILE]  # no temp file left
    path.write_text('{"family": "domain_adaptation",\n "chosen": ')
    with pytest.raises(DataError, match=r"selection\.json: line 2: not valid JSON"):
        SelectionRecord.load(path)
    path.write_text(json.dumps({**r.model_dump(mode="json"), "family": "magic"}))
    with pytest.raises(DataError, match=r"selection\.json: family: .*'magic'"):
        SelectionRecord.load(path)


def test_renderers_escape_user_strings():
    r = _record()
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(r.rich_table())
    text = out.getvalue()
    assert NASTY in text and "CHOSEN" in text and "excluded: collapsed: one class" in text  # markup printed as written
    md = r.markdown()
    assert "\\[red\\]&lt;b&gt;\\|x\\*" in md and md.count("\n| ") == 3 and "oracle (not used)" in md
    page = r.html()
    assert "&lt;b&gt;" in page and "<b>|" not in page and 'class="chosen"' in page


def test_model_card_section_and_package_lookup(tmp_path):
    records = card_records(tmp_path, with_extras=False)
    assert selection_file(records["train"]) is None and 'id="selection"' not in render_model_card(**records)
    _record().save(tmp_path / SELECTION_FILE)  # beside the head file (head_path is tmp_path/head.pt)
    assert selection_file(records["train"]) == tmp_path / SELECTION_FILE
    page = render_model_card(**records)
    section = page.split('id="selection"')[1].split("</section>")[0]
    assert "source_only" in section and "&lt;b&gt;" in section and "never used to make it" in section
