"""Trust holes in reading the user's data and config (issue 25): one class split in two by Unicode form or case,
a YAML alias bomb, an empty split that passed validation, and error messages that pointed the wrong way. Each
error must be one line naming the file (line, value) and the fix, as the project's error types."""

from __future__ import annotations

import codecs
import csv
import os
import time
import tracemalloc
import unicodedata

import pytest
import yaml

from tests.cli import cli
from tests.helpers import make_text_dataset, tiny_config
from tlops import text_files
from tlops.config import ValidationConfig, load_config, parse_overrides
from tlops.data import load_dataset
from tlops.errors import ConfigError, DataError
from tlops.validation import failure_message, validate_dataset

CFG = ValidationConfig(min_per_class=3)
NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
assert NFC != NFD


def _relabel(path, old: str, new_of_row) -> list[int]:
    """Rewrite `path`'s rows labelled `old` with new_of_row(i) (i counts those rows); their file lines."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    lines, i = [], 0
    for n, row in enumerate(rows[1:], start=2):
        if row[1] == old:
            row[1] = new_of_row(i)
            lines.append(n)
            i += 1
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return lines


def _failed(root) -> dict:
    return {c.rule: c for c in validate_dataset(load_dataset(root), CFG).failed()}


# ---- 1. one class, one spelling ------------------------------------------------------------------------------------

def test_nfc_and_nfd_spellings_of_a_label_are_one_class(text_dataset):
    for split in ("train", "val", "test"):  # both forms in every split
        _relabel(text_dataset / f"{split}.csv", "food", lambda i: NFC if i % 2 else NFD)
    ds = load_dataset(text_dataset)
    assert ds.labels == ["animal", NFC, "vehicle"]
    assert set(ds.splits["test"]["label"]) == {"animal", NFC, "vehicle"}
    report = validate_dataset(ds, CFG)
    assert report.success, failure_message(report)


def test_nfc_in_train_and_nfd_in_test_pass_and_index_the_same_class(text_dataset):
    _relabel(text_dataset / "train.csv", "food", lambda i: NFC)
    _relabel(text_dataset / "val.csv", "food", lambda i: NFC)
    _relabel(text_dataset / "test.csv", "food", lambda i: NFD)
    ds = load_dataset(text_dataset)
    report = validate_dataset(ds, CFG)
    assert report.success, failure_message(report)
    assert set(ds.label_ids("test")) == {0, 1, 2} and ds.labels[1] == NFC


def test_labels_differing_only_by_case_fail_with_both_spellings_and_the_fix(text_dataset):
    lines = _relabel(text_dataset / "test.csv", "food", lambda i: "Food" if i < 2 else "food")[:2]
    failed = _failed(text_dataset)
    (check,) = [c for c in failed.values() if "case" in c.rule]
    assert check.file.endswith("test.csv") and check.rows == lines and check.values == ["Food", "Food"]
    assert "'Food' and 'food'" in check.fix and "spell the class one way" in check.fix
    assert list(failed) == [check.rule], "one failure, not also 'labels from the known set'"
    message = failure_message(validate_dataset(load_dataset(text_dataset), CFG))
    (line,) = [line for line in message.splitlines() if "case" in line]
    assert "test.csv lines" in line and "'Food'" in line and "'food'" in line and "spell the class one way" in line


def test_case_variants_in_train_alone_fail_too(text_dataset):
    lines = _relabel(text_dataset / "train.csv", "food", lambda i: "Food" if i == 0 else "food")
    (check,) = [c for c in _failed(text_dataset).values() if "case" in c.rule]
    assert check.file.endswith("train.csv") and check.rows == lines[:1] and check.values == ["Food"]


def test_dataset_yaml_labels_are_nfc_and_refuse_case_variants(text_dataset):
    meta = text_dataset / "dataset.yaml"
    _relabel(text_dataset / "train.csv", "food", lambda i: NFD)
    _relabel(text_dataset / "val.csv", "food", lambda i: NFD)
    _relabel(text_dataset / "test.csv", "food", lambda i: NFD)
    meta.write_text(f"modality: text\nlabels: [animal, {NFD}, vehicle]\n", encoding="utf-8")
    ds = load_dataset(text_dataset)
    assert ds.labels == ["animal", NFC, "vehicle"] and validate_dataset(ds, CFG).success
    meta.write_text(f"modality: text\nlabels: [animal, {NFC}, {NFD}]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dataset.yaml line 2: label 'caf.*' more than once .*NFC.*list each label once"):
        load_dataset(text_dataset)
    meta.write_text("modality: text\nlabels:\n  - animal\n  - Food\n  - food\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dataset.yaml line 5: labels 'Food' \(line 4\) and 'food' differ only by case.*spell "
                                        r"the class one way") as e:
        load_dataset(text_dataset)
    assert "\n" not in str(e.value)


def test_support_set_labels_are_nfc_and_refuse_case_variants():
    from tlops.support_set import support_from_rows

    s = support_from_rows([{"text": "a", "label": NFD}, {"text": "b", "label": NFC}, {"text": "c", "label": "tea"}], "text")
    assert s.classes() == [NFC, "tea"]
    with pytest.raises(DataError, match=r"support rows 1 and 2: labels 'Tea' and 'tea' differ only by case.*spell the class one way"):
        support_from_rows([{"text": "a", "label": "Tea"}, {"text": "b", "label": "tea"}, {"text": "c", "label": "x"}], "text")


def test_every_csv_read_as_a_split_gives_nfc_labels(tmp_path):
    from tlops.data.dataset import _read_csv  # also what `tlops evaluate --data FILE` reads its true labels with

    f = tmp_path / "labelled.csv"
    f.write_text(f"text,label\nsome text,{NFD}\n", encoding="utf-8")
    assert _read_csv(f, ["text", "label"])["label"].tolist() == [NFC]


# ---- 2. YAML alias bombs ---------------------------------------------------------------------------------------

def _billion_laughs(first_line: str) -> str:
    lines = [first_line, 'lol0: &l0 "lol"']
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10**9 "lol"s
    return "\n".join(lines) + "\n"


def _bounded(call, error: type, match: str):
    """`call` raises `error` matching `match`, within 2 s and 20 MB of Python allocations."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(error, match=match) as e:
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 2.0 and peak < 20e6, (time.perf_counter() - t0, peak)
    assert "\n" not in str(e.value)
    return e.value


def test_billion_laughs_dataset_yaml_is_refused_fast_and_small(text_dataset):
    meta = text_dataset / "dataset.yaml"
    meta.write_text(_billion_laughs("modality: text"))
    err = _bounded(lambda: load_dataset(text_dataset), DataError, rf"{meta} line \d+: refused: YAML aliases")
    assert "100,000" in str(err) and "write the values out" in str(err)


def test_billion_laughs_config_and_set_value_are_refused(tmp_path, text_dataset):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tmp_path, text_dataset, tmp_path / "bert")) + _billion_laughs("").lstrip("\n"))
    _bounded(lambda: load_config(cfg), ConfigError, rf"config file {cfg} line \d+: refused: YAML aliases")
    value = "[" + ", ".join(["&a [1,1,1,1,1,1,1,1,1,1]"] + [f"&{c} [{', '.join([f'*{p}'] * 10)}]"
                                                             for p, c in zip("abcdefgh", "bcdefghi")]) + "]"
    _bounded(lambda: parse_overrides([f"strategy.C={value}"]), ConfigError, r"--set strategy.C=.*: refused: YAML aliases")


def test_recursive_alias_is_refused():
    with pytest.raises(DataError, match=r"x line 1: refused: a YAML alias \(\*name\) refers to the anchor"):
        text_files.parse_yaml("a: &x [1, *x]\n", "x", DataError, "fix it")


def test_alias_bound_counts_only_what_aliases_add(monkeypatch):
    monkeypatch.setattr(text_files, "MAX_YAML_NODES", 50)
    long_list = "items: [" + ", ".join(str(i) for i in range(200)) + "]\n"  # long, but as written: passes
    assert len(text_files.parse_yaml(long_list, "x", DataError, "fix")["items"]) == 200
    assert text_files.parse_yaml("a: &a [1, 2, 3]\nb: *a\nc: *a\n", "x", DataError, "fix")["c"] == [1, 2, 3]
    with pytest.raises(DataError, match="refused: YAML aliases"):
        text_files.parse_yaml("a: &a [" + ", ".join(["1"] * 20) + "]\nb: [" + ", ".join(["*a"] * 5) + "]\n", "x", DataError, "fix")


def test_cli_validate_on_a_billion_laughs_dataset_yaml_prints_one_error_line(tmp_path, text_dataset):
    (text_dataset / "dataset.yaml").write_text(_billion_laughs("modality: text"))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path, text_dataset, tmp_path / "bert")))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    t0 = time.perf_counter()
    out = cli("validate", str(tmp_path / "c.yaml"), env=env)
    assert time.perf_counter() - t0 < 30
    assert out.returncode == 2 and out.stderr.startswith("error:") and "refused: YAML aliases" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


# ---- 3. empty splits -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "test", "val"])
def test_an_empty_split_file_fails_validation_with_one_line(text_dataset, split):
    f = text_dataset / f"{split}.csv"
    f.write_text("text,label\n")
    report = validate_dataset(load_dataset(text_dataset), CFG)
    assert not report.success
    (check,) = report.failed()
    assert check.file == str(f) and check.rule == "at least one data row" and check.observed == 0
    assert f"{split}.csv has a header but no data rows" in check.fix
    (line,) = failure_message(report).splitlines()[1:]
    assert str(f) in line and "no data rows" in line


def test_cli_validate_refuses_an_empty_test_split_without_a_traceback(tmp_path, text_dataset):
    (text_dataset / "test.csv").write_text("text,label\n")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path, text_dataset, tmp_path / "bert")))
    out = cli("validate", str(tmp_path / "c.yaml"), env={k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"})
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout, out.stderr
    (line,) = [line for line in out.stderr.splitlines() if "at least one data row" in line]
    assert str(text_dataset / "test.csv") in line and "test.csv has a header but no data rows" in line


def test_an_empty_train_with_a_carved_val_fails_once(tmp_path):
    root = make_text_dataset(tmp_path / "d", with_val=False)
    (root / "train.csv").write_text("text,label\n")
    (check,) = validate_dataset(load_dataset(root), CFG).failed()
    assert check.file.endswith("train.csv") and check.rule == "at least one data row"


# ---- 4. messages that pointed the wrong way ------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_csv_is_named_utf16_not_latin1(text_dataset, encoding):
    train = text_dataset / "train.csv"
    train.write_bytes(train.read_text(encoding="utf-8").encode(encoding))
    with pytest.raises(DataError, match=rf"{train}: the file is UTF-16, not UTF-8.*iconv -f utf-16 -t utf-8") as e:
        load_dataset(text_dataset)
    assert "Latin-1" not in str(e.value) and "\n" not in str(e.value)


def test_utf16_config_is_named_utf16(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(codecs.BOM_UTF16_LE + "seed: 0\n".encode("utf-16-le"))
    with pytest.raises(ConfigError, match=r"the file is UTF-16, not UTF-8 \(it starts with a UTF-16 byte-order mark\)"):
        load_config(cfg)


def test_a_text_with_one_nul_is_still_left_to_validation(text_dataset):
    with open(text_dataset / "train.csv", "a", newline="") as f:
        f.write("a dog\x00 barking loudly,animal\n")
    assert any("control" in rule for rule in _failed(text_dataset))


@pytest.fixture
def default_csv_limit():
    """The csv module's default field limit (a library imported earlier in this process may have raised it)."""
    old = csv.field_size_limit(131_072)
    yield
    csv.field_size_limit(old)


def test_csv_field_over_the_reader_limit_says_too_long(text_dataset, default_csv_limit):
    train = text_dataset / "train.csv"
    with open(train, "a", newline="") as f:
        f.write("x" * 140_000 + ",animal\n")
    with pytest.raises(DataError, match=rf"{train} line \d+: a field is longer than 131,072 characters.*shorten that field") as e:
        load_dataset(text_dataset)
    assert "double any quote" not in str(e.value)


def test_directory_as_config_says_it_is_a_directory(tmp_path):
    (tmp_path / "probe.yaml").write_text("seed: 0\n")
    with pytest.raises(ConfigError, match=rf"config {tmp_path} is a directory; pass the run config YAML file itself, "
                                          rf"e.g. {tmp_path / 'probe.yaml'}"):
        load_config(tmp_path)
    data = make_text_dataset(tmp_path / "data")
    with pytest.raises(ConfigError, match=r"is a directory.*configs/text_linear_probe.yaml.*data.path.*tlops init"):
        load_config(data)


def test_many_unknown_keys_are_listed_up_to_20(tmp_path, text_dataset):
    tree = tiny_config(tmp_path, text_dataset, tmp_path / "bert")
    tree["strategy"].update({f"k{i}": i for i in range(5_000)})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    lines = str(e.value).splitlines()
    assert len(lines) == 22 and lines[-1] == "  ... and 4,980 more (4,980 of them unknown keys); fix the ones above and run again"
    assert "strategy.k" in lines[1] and "unknown key" in lines[1]


def test_a_700k_key_config_is_refused_fast_in_one_line(tmp_path, text_dataset):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tmp_path, text_dataset, tmp_path / "bert")) + "".join(f"k{i}: {i}\n" for i in range(700_000)))
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"config file {cfg} is [\d,]+ KiB, over the 256 KiB a run config may have") as e:
        load_config(cfg)
    assert time.perf_counter() - t0 < 1 and "\n" not in str(e.value)


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused_by_key(tmp_path, text_dataset, value):
    tree = tiny_config(tmp_path, text_dataset, tmp_path / "bert")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tree).replace("C: 1.0", f"C: {value}"))
    with pytest.raises(ConfigError, match=r"strategy.C: must be a finite number"):
        load_config(cfg)
    cfg.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match=r"execution.pool_timeout_s: must be a finite number"):
        load_config(cfg, [f"execution.pool_timeout_s={value}"])
