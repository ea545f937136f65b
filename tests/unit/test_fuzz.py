"""Fuzzing the readers of user files (issue 14): whatever bytes a config, dataset.yaml or CSV holds, the
result is a value or a TlopsError with one clear line, never a traceback from inside a library. Bounded:
a few hundred examples in all, no example database written into the checkout."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlops.config import RunConfig, config_from_dict, load_config, parse_overrides
from tlops.data import load_dataset
from tlops.errors import TlopsError

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# YAML-ish text: the characters that steer YAML's parser, some words the loaders know, control and odd characters
YAML_CHARS = st.sampled_from(list(":-[]{},'\"#&*!|>%@`? \n\t\r\x00\x1b\x85\u2028\ufeffé")) | st.characters(codec="utf-8")  # no lone surrogates: a file holds UTF-8
WORDS = st.sampled_from(["data", "path", "backbone", "name", "strategy", "linear_probe", "finetune", "registry", "model_name",
                         "modality", "text", "image", "labels", "yes", "no", "~", "null", "1e3", "- ", ": ", "!!python/object", "&a", "*a"])
YAMLISH = st.lists(YAML_CHARS | WORDS, max_size=40).map("".join)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
TREES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12) | WORDS, kids, max_size=4),
                     max_leaves=20)
SECTIONS = st.sampled_from(list(RunConfig.model_fields) + ["bogus"])


def _one_line_error(e: TlopsError) -> None:
    assert str(e).strip(), "an empty error message"


def _writes(files: dict[str, bytes]):
    d = tempfile.TemporaryDirectory()
    for name, data in files.items():
        (Path(d.name) / name).write_bytes(data)
    return d


@FUZZ
@given(st.one_of(YAMLISH.map(str.encode), st.binary(max_size=200), TREES.map(lambda t: yaml.safe_dump(t).encode())))
def test_config_file_gives_a_config_or_a_clear_error(data):
    with _writes({"c.yaml": data}) as d:
        try:
            load_config(Path(d) / "c.yaml")
        except TlopsError as e:
            _one_line_error(e)


BASE = {"data": {"path": "d"}, "backbone": {"name": "hf:x"}, "registry": {"model_name": "m"}}  # a valid config
EDITS = st.lists(st.tuples(SECTIONS, st.sampled_from(sorted({k for f in RunConfig.model_fields.values()
                                                             for k in getattr(f.annotation, "model_fields", {})} | {"name", "bogus"})),
                           TREES), max_size=3)


@FUZZ
@given(EDITS)
def test_config_tree_gives_a_config_or_a_clear_error(edits):
    """A valid config with a few keys set to anything: reaches every section's validators."""
    tree = {k: dict(v) for k, v in BASE.items()}
    for section, key, value in edits:
        node = tree.setdefault(section, {})
        if isinstance(node, dict):
            node[key] = value
        else:
            tree[section] = value
    try:
        config_from_dict(tree)
    except TlopsError as e:
        _one_line_error(e)


@FUZZ
@given(st.lists(st.text(max_size=30) | st.tuples(st.sampled_from(["strategy.C", "data.path", "seed", "a..b", ""]), YAMLISH)
                .map("=".join), max_size=3))
def test_set_overrides_give_values_or_a_clear_error(items):
    try:
        parse_overrides(items)
    except TlopsError as e:
        _one_line_error(e)
        assert "\n" not in str(e)


CSV_CHARS = st.sampled_from(list(',"\n\r \tab\x00') + ["é", "\udcff", "label", "text", "animal", "food", "\n", ","])
CSV_BODY = st.lists(CSV_CHARS, max_size=60).map(lambda cs: ("text,label\n" + "".join(cs)).encode("utf-8", "surrogateescape"))
GOOD_CSV = b"text,label\na dog barking,animal\nfresh bread,food\n"


@FUZZ
@given(st.one_of(YAMLISH.map(str.encode), st.binary(max_size=60),
                 st.fixed_dictionaries({"modality": st.just("text") | TREES},
                                       optional={"labels": st.just(["animal", "food"]) | TREES | st.lists(SCALARS, max_size=3),
                                                 "name": SCALARS, "extra": TREES}).map(lambda m: yaml.safe_dump(m).encode())))
def test_dataset_yaml_gives_a_dataset_or_a_clear_error(meta):
    with _writes({"dataset.yaml": meta, "train.csv": GOOD_CSV, "test.csv": GOOD_CSV}) as d:
        try:
            load_dataset(d)
        except TlopsError as e:
            _one_line_error(e)


@FUZZ
@given(st.one_of(CSV_BODY, st.binary(max_size=120)))
def test_csv_gives_rows_or_a_clear_error(train):
    with _writes({"dataset.yaml": b"modality: text\n", "train.csv": train, "test.csv": GOOD_CSV}) as d:
        try:
            ds = load_dataset(d)
        except TlopsError as e:
            _one_line_error(e)
            return
        rows = ds.splits["train"]
        assert list(rows.columns) == ["text", "label"] and len(ds.splits["train"].attrs["lines"]) >= len(rows)


FIELD = st.lists(st.sampled_from(list('ab ,"\n\t') + ["é", "\r\n"]), max_size=8).map("".join)  # Windows line ends too


@FUZZ
@given(st.lists(st.tuples(FIELD, FIELD, st.integers(0, 2)), min_size=1, max_size=12))
def test_row_lines_are_the_lines_an_editor_shows(records):
    """Quoted fields with line breaks and blank lines between rows: each row's recorded line is where it starts."""
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["text", "label"])
    expected = []
    for text, label, blanks in records:
        out.write("\n" * blanks)
        if (text, label) == ("", ""):  # csv writes '"",' ... fine, but a record of one empty field is a blank line
            label = "x"
        expected.append(out.getvalue().count("\n") + 1)
        w.writerow([text, label])
    data = out.getvalue().encode()
    with _writes({"dataset.yaml": b"modality: text\n", "train.csv": data, "val.csv": data, "test.csv": data}) as d:
        ds = load_dataset(d)
    assert list(ds.splits["train"].attrs["lines"]) == expected
