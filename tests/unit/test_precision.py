"""backbone.precision (issue 33): bf16 feature extraction as an opt-in. The precision and the compute-path version are
part of the backbone identity (so the feature cache keeps bf16 rows apart from fp32 ones), travel in the exported
backbone.json (so predict and serve embed the way training did), and a CPU without native bf16 falls back to fp32 with
one warning. The CPU check is patched here, so these tests run the same on any CPU (autocast runs bf16 anywhere)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from tlops.backbones import backbone_from_export, base, load_backbone
from tlops.cache import namespace_of
from tlops.errors import BackboneError
from tlops.features import embed_all

TEXTS = ["a noun", "the act of moving something from one place to another by carrying it", "blue",
         "a small domesticated carnivorous mammal with soft fur", "to run"]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_bf16_features_identity_and_export(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "cpu_has_bf16", lambda: True)
    fp32 = load_backbone(f"hf:{tiny_bert}", max_length=32)
    bf16 = load_backbone(f"hf:{tiny_bert}", max_length=32, precision="bf16")
    assert fp32.precision == "fp32" and bf16.precision == "bf16"
    # fp32 keeps the identity it had before precision existed (caches still hit); bf16 is another cache namespace
    assert "precision" not in fp32.identity() and "compute_version" not in fp32.identity()
    assert bf16.identity() == {**fp32.identity(), "precision": "bf16"}
    assert namespace_of(bf16.identity()) != namespace_of(fp32.identity())

    x32, x16 = embed_all(fp32, TEXTS, batch_size=2), embed_all(bf16, TEXTS, batch_size=2)
    assert x16.dtype == np.float32 and x16.shape == x32.shape
    assert not np.array_equal(x16, x32)  # it did run in bf16 ...
    assert _cos(x16, x32).min() > 0.99  # ... and stays close (random tiny weights; MiniLM: bench/RESULTS.md)

    bf16.export(tmp_path / "bb")
    assert json.loads((tmp_path / "bb" / "backbone.json").read_text())["precision"] == "bf16"
    again = backbone_from_export(tmp_path / "bb", {})
    assert again.precision == "bf16" and again.identity()["precision"] == "bf16"
    np.testing.assert_array_equal(embed_all(again, TEXTS, batch_size=2), x16)
    fp32.export(tmp_path / "fp")
    assert "precision" not in json.loads((tmp_path / "fp" / "backbone.json").read_text())
    assert backbone_from_export(tmp_path / "fp", {}).precision == "fp32"


def test_no_native_bf16_warns_and_uses_fp32(tiny_bert, monkeypatch, caplog):
    monkeypatch.setattr(base, "cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="tlops.backbones.base"):
        b = load_backbone(f"hf:{tiny_bert}", max_length=32, precision="bf16")
    assert b.precision == "fp32" and "precision" not in b.identity()
    warned = [r for r in caplog.records if "no native bf16" in r.getMessage()]
    assert len(warned) == 1 and "computed in fp32" in warned[0].getMessage()


def test_bad_or_unoffered_precision_is_refused(tiny_bert, monkeypatch):
    monkeypatch.setattr(base, "cpu_has_bf16", lambda: True)
    with pytest.raises(BackboneError, match="precision 'fp16' is not one of fp32, bf16"):
        load_backbone(f"hf:{tiny_bert}", precision="fp16")
    b = load_backbone(f"hf:{tiny_bert}")
    b.precisions = ("fp32",)  # what an ONNX Runtime kind offers
    with pytest.raises(BackboneError, match="runs only in fp32"):
        base.set_precision(b, "bf16")


def test_compute_version_enters_the_identity_once_bumped(tiny_bert):
    b = load_backbone(f"hf:{tiny_bert}")
    before = b.identity()
    b.compute_version = 2  # a kind whose forward numerics changed
    assert b.identity() == {**before, "compute_version": 2} and namespace_of(b.identity()) != namespace_of(before)
    from tlops.backbones.efficientnet_lite import EfficientNetLiteBackbone

    assert EfficientNetLiteBackbone.compute_version == 1  # channels-last + folded copy: rows before it are another namespace


def test_config_precision_field():
    from pydantic import ValidationError

    from tlops.config import BackboneConfig

    assert BackboneConfig(name="hf:x").precision == "fp32"
    assert BackboneConfig(name="hf:x", precision="bf16").precision == "bf16"
    with pytest.raises(ValidationError, match="precision"):
        BackboneConfig(name="hf:x", precision="fp16")
