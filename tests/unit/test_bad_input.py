"""Bad input seen by a hostile user (issue 14): each case once reached the user as a traceback, a wrong
location or silence. Each error must name the file, the line (1-based, as an editor shows it), the value
and the fix, as the project's error types (so the CLI prints one `error:` line)."""

from __future__ import annotations

import logging
import os

import pytest
import yaml

from tests.helpers import tiny_config
from tests.cli import cli
from tlops.config import ValidationConfig, load_config, parse_overrides
from tlops.data import load_dataset
from tlops.errors import ConfigError, DataError
from tlops.validation import validate_dataset

CFG = ValidationConfig(min_per_class=3)


def _append(path, *lines: str) -> None:
    with open(path, "a", newline="") as f:
        f.write("".join(line + "\n" for line in lines))


def _failed_checks(root, cfg=CFG) -> dict:
    report = validate_dataset(load_dataset(root), cfg)
    return {c.rule: c for c in report.failed()}


def _line_count(path) -> int:
    return len(path.read_bytes().splitlines())


# ---- 1. labels that differ only by surrounding whitespace ---------------------------------------------

def test_label_with_surrounding_spaces_is_refused_not_a_new_class(text_dataset):
    train = text_dataset / "train.csv"
    first = _line_count(train) + 1
    _append(train, *[f"a grey wolf howling at night {i}, animal " for i in range(4)])  # enough rows to pass min_per_class
    failed = _failed_checks(text_dataset)
    (check,) = [c for c in failed.values() if "whitespace" in c.rule]
    assert check.file.endswith("train.csv") and check.rows == [first, first + 1, first + 2, first + 3]
    assert check.values[0] == " animal " and "strip" in check.fix


def test_label_list_in_dataset_yaml_with_spaces_or_repeats_is_refused(text_dataset):
    meta = text_dataset / "dataset.yaml"
    meta.write_text("modality: text\nlabels: [animal, ' food', vehicle]\n")
    with pytest.raises(DataError, match=r"dataset.yaml.*' food'.*strip"):
        load_dataset(text_dataset)
    meta.write_text("modality: text\nlabels: [animal, food, animal]\n")
    with pytest.raises(DataError, match=r"dataset.yaml.*'animal' more than once"):
        load_dataset(text_dataset)
    meta.write_text("modality: text\nlabels: animal\n")
    with pytest.raises(DataError, match=r"dataset.yaml.*labels must be a list"):
        load_dataset(text_dataset)


# ---- 2. tracebacks instead of an error line ---------------------------------------------------------------

def test_bad_yaml_value_in_set_is_a_config_error():
    with pytest.raises(ConfigError, match=r"--set strategy.C=\[1: .*not valid YAML.*quote"):
        parse_overrides(["strategy.C=[1"])
    with pytest.raises(ConfigError, match=r"--set =3: .*key"):
        parse_overrides(["=3"])
    with pytest.raises(ConfigError, match=r"--set strategy..C=3: .*not a dotted name"):
        parse_overrides(["strategy..C=3"])


def test_config_file_that_is_invalid_yaml_or_not_utf8_names_file_and_line(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("seed: 0\ndata:\n  path: [x\nbackbone: {}\n")
    with pytest.raises(ConfigError, match=rf"{bad} line \d+ column \d+: .*not valid YAML") as e:
        load_config(bad)
    assert "\n" not in str(e.value)
    bad.write_bytes(b"seed: 0\ndata:\n  path: caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"{bad} line 3 column 12: byte 0xe9 is not UTF-8"):
        load_config(bad)


@pytest.mark.parametrize("content, where", [
    ("- modality: text\n- name: x\n", "must be a mapping"),
    ("modality: text\nlabels: [a, b\nname: x\n", r"line \d+ column \d+: .*not valid YAML"),
    (b"modality: text\nname: \xff\n", "line 2 column 7: byte 0xff is not UTF-8"),
])
def test_dataset_yaml_that_is_a_list_or_invalid_names_the_file(text_dataset, content, where):
    meta = text_dataset / "dataset.yaml"
    meta.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=rf"{meta}.*{where}") as e:
        load_dataset(text_dataset)
    assert "\n" not in str(e.value)


def test_cli_prints_an_error_line_not_a_traceback(tmp_path, text_dataset, tiny_bert):
    """At the command line (`tlops validate`, no server): the bad --set value, then a dataset.yaml that is a list."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path, text_dataset, tiny_bert)))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = cli("validate", str(tmp_path / "c.yaml"), "--set", "strategy.C=[1", env=env)
    assert out.returncode == 2 and out.stderr.startswith("error: --set strategy.C=[1") and "Traceback" not in out.stderr, out.stderr
    (text_dataset / "dataset.yaml").write_text("- modality: text\n")
    out = cli("validate", str(tmp_path / "c.yaml"), env=env)
    assert out.returncode == 2 and out.stderr.startswith("error:") and "dataset.yaml" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


# ---- 3. accurate locations ---------------------------------------------------------------------------------

def test_non_utf8_byte_is_reported_by_line_and_column(text_dataset):
    train = text_dataset / "train.csv"
    lines = train.read_bytes().splitlines(keepends=True)
    lines[4] = b"a caf\xe9 by the river,food\n"
    train.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=rf"{train} line 5 column 6: byte 0xe9 is not UTF-8.*UTF-8") as e:
        load_dataset(text_dataset)
    assert "position" not in str(e.value)


def test_predict_csv_is_read_like_a_dataset_split(tmp_path):
    from flows.commands.predict import items_from as _items

    csv = tmp_path / "inputs.csv"
    csv.write_bytes(b'text\n"two\nlines"\nok\na caf\xe9\n')
    with pytest.raises(DataError, match=rf"{csv} line 5 column 6: byte 0xe9 is not UTF-8"):
        _items([], csv)
    csv.write_bytes(b'text\n"two\nlines"\nok\n')
    assert _items([], csv) == ["two\nlines", "ok"]


def test_lines_after_quoted_fields_with_newlines_stay_exact(text_dataset):
    train = text_dataset / "train.csv"
    first = _line_count(train) + 1
    _append(train, '"a cat curled up', 'by the fire",animal', "", ",animal")  # a 2-line record, a blank line, an empty text
    (check,) = [c for c in _failed_checks(text_dataset).values() if c.rule == "non-empty text"]
    assert check.rows == [first + 3], "the empty text is on the 4th appended line"


def test_malformed_rows_name_their_line(text_dataset):
    train = text_dataset / "train.csv"
    first = _line_count(train) + 1
    _append(train, "a dog, a cat and a bird,animal")
    with pytest.raises(DataError, match=rf"{train} line {first}: 3 fields but the header has 2.*quote"):
        load_dataset(text_dataset)
    train.write_text(train.read_text().replace("a dog, a cat and a bird,animal", '"a dog barking,animal'))
    with pytest.raises(DataError, match=rf"{train} line {first}: .*quote.*never closed"):
        load_dataset(text_dataset)


# ---- 4. degenerate data ------------------------------------------------------------------------------------

def test_mostly_duplicate_rows_are_refused_with_counts(text_dataset):
    train = text_dataset / "train.csv"
    _append(train, *["a small dog that barks at the river,animal"] * 200)
    failed = _failed_checks(text_dataset)
    (check,) = [c for c in failed.values() if "duplicate" in c.rule]
    assert check.split == "train" and check.unexpected_count == 201  # the original row and its 200 copies
    assert check.values[0] == "a small dog that barks at the river" and "max_duplicate_fraction" in check.fix


def test_a_few_duplicates_pass_with_a_warning(text_dataset, caplog):
    _append(text_dataset / "train.csv", "a small dog that barks at the river,animal")
    with caplog.at_level(logging.WARNING, logger="tlops.validation"):
        report = validate_dataset(load_dataset(text_dataset), CFG)
    assert report.success, report.failed()
    (check,) = [c for c in report.checks if c.split == "train" and "duplicate" in c.rule]
    assert check.success and check.unexpected_count == 2
    assert "train.csv: 2 of 43 rows share their input with another row" in caplog.text


def test_nul_and_control_characters_in_text_are_refused(text_dataset):
    train = text_dataset / "train.csv"
    first = _line_count(train) + 1
    _append(train, "a dog\x00 barking loudly,animal", "a cat\x1b[31m purring,animal", "a tab\tand a newline are fine,animal")
    (check,) = [c for c in _failed_checks(text_dataset).values() if "control" in c.rule]
    assert check.rows == [first, first + 1] and "NUL" in check.fix


def test_cache_misses_count_distinct_inputs_embedded(tiny_bert, tmp_path):
    from tlops.backbones import load_backbone
    from tlops.cache import FeatureCache
    from tlops.features import cached_features

    backbone = load_backbone(f"hf:{tiny_bert}")
    x, stats = cached_features(backbone, ["the same text"] * 500 + ["another text"], FeatureCache(tmp_path / "c"), batch_size=64)
    assert x.shape[0] == 501 and (stats.hits, stats.misses) == (0, 2) and backbone.calls == 1
    _, again = cached_features(load_backbone(f"hf:{tiny_bert}"), ["the same text"] * 3, FeatureCache(tmp_path / "c"))
    assert (again.hits, again.misses) == (1, 0)
