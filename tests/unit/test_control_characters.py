"""validation.control_characters (issue 27 item 12): real text holds control characters (Debian's fortunes underline with
backspaces). The default still refuses them, naming the opt-in; `strip` removes all but NUL (refused either way) from the
training texts, and the package records it, so predict strips the model's inputs the same way."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.helpers import tiny_config
from tlops.config import config_from_dict
from tlops.errors import DataError, ValidationFailed
from tlops.support_set import strip_control_characters

FORTUNE = "_\bP_\bl_\be_\ba_\bs_\be read the manual before the cat eats the river"  # nroff underlining, as in fortunes
PLAIN = "Please read the manual before the cat eats the river"


def test_strip_removes_controls_and_what_a_backspace_overstrikes():
    assert strip_control_characters(FORTUNE) == PLAIN
    assert strip_control_characters("B\bBold and \x1b[31mred\x1b[0m\x0c") == "Bold and [31mred[0m"
    assert strip_control_characters("tab\tnew\nline\r") == "tab\tnew\nline\r"  # kept: CSV fields may hold them
    assert strip_control_characters("nul\x00 kept") == "nul\x00 kept"  # refused by validation and at predict time


def _append(path, *rows: str) -> None:
    with open(path, "a") as f:
        f.write("".join(r + "\n" for r in rows))


def test_default_refuses_and_names_the_opt_in(tmp_path, text_dataset, tiny_bert):
    from tlops.pipeline import validate_step

    _append(text_dataset / "train.csv", f'"{FORTUNE}",animal')
    with pytest.raises(ValidationFailed) as e:
        validate_step(config_from_dict(tiny_config(tmp_path, text_dataset, tiny_bert)))
    (check,) = [c for c in e.value.report.failed() if "control" in c.rule]
    assert "validation.control_characters: strip" in check.fix


def test_strip_trains_on_stripped_text_and_still_refuses_nul(tmp_path, text_dataset, tiny_bert):
    from tlops.pipeline import validate_step
    from tlops.resolve import open_dataset

    _append(text_dataset / "train.csv", f'"{FORTUNE}",animal')
    cfg = config_from_dict(tiny_config(tmp_path, text_dataset, tiny_bert, validation__control_characters="strip"))
    assert validate_step(cfg).success
    texts = open_dataset(cfg).inputs("train")
    assert PLAIN in texts and FORTUNE not in texts
    _append(text_dataset / "test.csv", "a dog\x00 barking at the moon,animal")
    with pytest.raises(ValidationFailed) as e:
        validate_step(cfg)
    (check,) = [c for c in e.value.report.failed() if "control" in c.rule]
    assert check.split == "test" and "NUL" in check.fix


@pytest.fixture(scope="module")
def packages(tmp_path_factory, tiny_bert):
    """One package trained with strip recorded, one with the default."""
    from tlops.backbones import load_backbone
    from tlops.modules.heads import ProbeHead
    from tlops.package import record_input_rules, save_package

    backbone = load_backbone(f"hf:{tiny_bert}", max_length=32)
    out = {}
    for rule in ("strip", "refuse"):
        pkg = save_package(tmp_path_factory.mktemp(rule) / "pkg", backbone, ProbeHead(backbone.num_features, 2), ["animal", "food"])
        record_input_rules(pkg, rule)
        out[rule] = pkg
    return out


def test_the_package_strips_inputs_as_training_did(packages):
    import numpy as np

    from tlops.package import META_FILE, Predictor

    strip, default = Predictor(packages["strip"]), Predictor(packages["refuse"])
    assert strip.strips_control_characters and not default.strips_control_characters
    assert "inputs" not in (packages["refuse"] / META_FILE).read_text()  # a default package is as it was
    np.testing.assert_array_equal(strip.predict_proba([FORTUNE]), strip.predict_proba([PLAIN]))
    assert default._inputs([FORTUNE]) == [FORTUNE]
    with pytest.raises(DataError, match=r"input row 2 holds only control characters"):
        strip.predict([PLAIN, "\x1b\x07 \b"])
    with pytest.raises(DataError, match="NUL"):
        strip.predict(["nul\x00 text"])


def test_the_pyfunc_serves_the_same_rule(packages):
    import numpy as np

    from tasks.pyfunc_model import TlopsModel

    model = TlopsModel()
    model.load_context(SimpleNamespace(artifacts={"package": str(packages["strip"])}))
    a = model.predict(None, [FORTUNE], {"proba": True})
    b = model.predict(None, [PLAIN], {"proba": True})
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_the_run_records_the_rule_in_its_package(tmp_path, text_dataset, tiny_bert):
    """The core pipeline (what `tlops run` registers) writes the rule into the package it builds."""
    import json

    from tlops.package import META_FILE
    from tlops.pipeline import run_core

    _append(text_dataset / "train.csv", f'"{FORTUNE}",animal')
    cfg = config_from_dict(tiny_config(tmp_path, text_dataset, tiny_bert, validation__control_characters="strip"))
    out = run_core(cfg, tmp_path / "work")
    assert json.loads((tmp_path / "work" / "package" / META_FILE).read_text())["inputs"] == {"control_characters": "strip"}, out.package
