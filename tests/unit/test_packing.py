"""Packed text batches (issue 33): texts back to back with position ids restarting per text give the features the
padded batch gives, on the tiny random-weights BERT the text tests use; a model that cannot pads."""

from __future__ import annotations

import pytest
import torch

from tlops.backbones.hf import pack_batch
from tlops.training.batching import pack_rows

TEXTS = ["a noun", "the act of moving something from one place to another by carrying it", "blue", "x",
         "a small domesticated carnivorous mammal with soft fur", "to run", "an amount of money paid for a service"]


def test_pack_rows_first_fit_decreasing():
    # longest first, each into the first row with room; 12 > capacity gets a row of its own
    assert pack_rows([5, 9, 2, 4, 12], capacity=10) == [[4], [1], [0, 3], [2]]
    assert pack_rows([3, 3, 3], capacity=10) == [[0, 1, 2]]


@pytest.mark.parametrize("pooling,layers", [("mean", [-1]), ("cls", [-1, -2])])
def test_packed_features_equal_padded(tiny_bert, pooling, layers):
    from tlops.backbones import load_backbone

    b = load_backbone(f"hf:{tiny_bert}", pooling=pooling, layers=layers, max_length=32)
    batch = b.collate(b.tokenize(TEXTS))
    packed = pack_batch(batch, 0, capacity=24)
    assert packed is not None and packed.inputs["input_ids"].numel() < batch["input_ids"].numel()
    with torch.inference_mode():
        padded = b._embed_padded(batch)
        out = b.embed(batch)
    assert b.packing is True and b.calls == 1  # checked once on first use, one counted call
    assert torch.nn.functional.cosine_similarity(out, padded).min() >= 1 - 1e-3
    assert torch.allclose(out, padded, atol=1e-5)
    # gradients reach the same parameters (fine-tuning runs the packed path)
    b.model.train()
    b.embed(batch).sum().backward()
    assert b.model.embeddings.word_embeddings.weight.grad is not None


def test_little_padding_or_no_packing_pads(tiny_bert):
    from tlops.backbones import load_backbone

    b = load_backbone(f"hf:{tiny_bert}", max_length=32)
    same = b.collate(b.tokenize(["one two", "three four"]))
    assert pack_batch(same, 0) is None  # nothing to save
    b.packing = False  # a model that failed the check (or switched off): the padded path
    with torch.inference_mode():
        assert torch.equal(b.embed(b.collate(b.tokenize(TEXTS))), b._embed_padded(b.collate(b.tokenize(TEXTS))))


def test_a_model_whose_positions_are_not_restartable_pads(tiny_bert, monkeypatch):
    """RoBERTa-style models offset position ids past the pad id, DeBERTa-style ones use relative positions: packed rows
    give other features there, which the check finds; here a model that ignores position_ids stands for them."""
    from tlops.backbones import load_backbone

    b = load_backbone(f"hf:{tiny_bert}", max_length=32)
    model = b.model
    forward = model.forward

    def no_positions(*a, position_ids=None, **kw):  # position ids ignored: the packed texts see each other
        return forward(*a, **kw)

    monkeypatch.setattr(model, "forward", no_positions)
    batch = b.collate(b.tokenize(TEXTS))
    with torch.inference_mode():
        out = b.embed(batch)
    assert b.packing is False
    with torch.inference_mode():
        assert torch.equal(out, b._embed_padded(batch))
