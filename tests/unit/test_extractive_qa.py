"""The extractive_qa task type's own pieces without a model: SQuAD reader problems as validation checks (file, record,
fix), the GX rule on a carved val, the pyfunc's row checks, the settings its trainers refuse, and the windows it
derives from max_length."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tasks.pyfunc_model import InvalidInput, checked_records
from tests.helpers import make_qa_dataset
from tlops.config import ValidationConfig
from tlops.data.dataset import load_dataset
from tlops.errors import ConfigError, DataError
from tlops.task_types.extractive_qa import COLUMNS, check_finetune_settings, check_probe_settings, window_settings
from tlops.validation import failure_message, validate_dataset


def test_squad_reader_problems_are_failed_checks_naming_file_record_and_fix(tmp_path):
    data = make_qa_dataset(tmp_path / "data", contexts=(3, 1, 2))
    doc = json.loads((data / "test.json").read_text())
    qa = doc["data"][1]["paragraphs"][0]["qas"][1]
    qa["answers"][0]["answer_start"] += 2  # off by two
    doc["data"][0]["title"] = "A title: with a colon"  # the record is split from the message outside its quotes
    del doc["data"][0]["paragraphs"][0]["context"]
    (data / "test.json").write_text(json.dumps(doc))
    (data / "val.json").write_text('{"data": [\n  {"title": "x",}\n]}')  # a trailing comma on line 2
    ds = load_dataset(data)
    report = validate_dataset(ds, ValidationConfig())
    failed = report.failed()
    assert not report.success and len(failed) == 3, [c.rule for c in failed]
    by_file = {(c.file.rsplit("/", 1)[-1], c.rule): c for c in failed}
    (off,) = [c for (f, r), c in by_file.items() if f == "test.json" and qa["id"] in r]
    assert "answers[0]" in off.rule and "not the answer text" in off.rule and off.fix.startswith("the text occurs at offset"), off
    (missing,) = [c for (f, r), c in by_file.items() if f == "test.json" and "'context' is missing" in r]
    assert missing.rule.startswith("SQuAD file article 'A title: with a colon' (data[0].paragraphs[0]): 'context' is missing"), missing
    assert missing.fix == "give the paragraph's text as a non-empty string", missing
    (syntax,) = [c for (f, _), c in by_file.items() if f == "val.json"]
    assert syntax.rows == [2] and "not valid JSON" in syntax.rule and "json.tool" in syntax.fix, syntax
    text = failure_message(report)
    assert "val.json line 2" in text and qa["id"] in text, text


def test_a_carved_val_with_no_article_fails_validation_with_the_fix(tmp_path):
    data = make_qa_dataset(tmp_path / "data", contexts=(1, 1, 1))
    (data / "val.json").unlink()  # train holds a single article: nothing to carve
    report = validate_dataset(load_dataset(data), ValidationConfig())
    (bad,) = report.failed()
    assert bad.split == "val" and bad.rule == "at least one question" and "add a val.json" in bad.fix, bad


def test_the_pyfunc_takes_records_or_a_dataframe_and_names_a_bad_row():
    rows = [{"question": "Who?", "context": "Ada did.", "extra": 1}]
    assert checked_records(rows, COLUMNS, None) == [{"question": "Who?", "context": "Ada did."}]
    assert checked_records(pd.DataFrame(rows), COLUMNS, None) == checked_records(rows[0], COLUMNS, None)
    with pytest.raises(InvalidInput, match="not context"):
        checked_records(pd.DataFrame([{"question": "Who?", "text": "Ada did."}]), COLUMNS, None)
    with pytest.raises(InvalidInput, match="input row 2 is 'Ada did.'"):
        checked_records([rows[0], "Ada did."], COLUMNS, None)
    with pytest.raises(InvalidInput, match="input row 1 question is 3"):
        checked_records([{"question": 3, "context": "x"}], COLUMNS, None)
    with pytest.raises(DataError, match="input row 1 context is missing"):
        checked_records([{"question": "Who?"}], COLUMNS, None)
    with pytest.raises(InvalidInput, match="more than the 1 this server takes"):
        checked_records(rows * 2, COLUMNS, 1)


def test_the_trainers_refuse_settings_they_would_ignore():
    from tlops.strategies.finetune import FinetuneConfig
    from tlops.strategies.linear_probe import LinearProbeConfig

    check_finetune_settings(FinetuneConfig())
    check_probe_settings(LinearProbeConfig())
    with pytest.raises(ConfigError, match=r"strategy.lp_ft: True.*set lp_ft: False"):
        check_finetune_settings(FinetuneConfig(lp_ft=True))
    with pytest.raises(ConfigError, match=r"strategy.C: 0.1"):
        check_probe_settings(LinearProbeConfig(C=0.1))


def test_windows_follow_max_length():
    assert window_settings(128) == {"max_length": 128, "stride": 48, "max_query_length": 64, "max_answer_length": 30}  # the bench's
    assert window_settings(32) == {"max_length": 32, "stride": 12, "max_query_length": 16, "max_answer_length": 30}
    assert window_settings(512)["max_query_length"] == 64
