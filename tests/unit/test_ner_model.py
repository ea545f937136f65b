"""NER on a text backbone (tlops/ner/model.py) and the unpooled backbone features it reads (token_states), on the
tiny random-weight BERT: alignment, truncation, the probe, fine-tuning, raw-text spans, save/load; and the
gazetteer baseline."""

from __future__ import annotations

import pytest
import torch

from tlops.backbones import load_backbone
from tlops.errors import BackboneError
from tlops.ner.baseline import Gazetteer
from tlops.ner.files import Sentence
from tlops.ner.model import IGNORE, NerModel, align, fit_probe, word_tokenizer
from tlops.ner.training import finetune
from tlops.ner.tags import sequence_problems, tag_set
from tlops.ner.words import split_words

TRAIN = [Sentence(t.split(), g.split()) for t, g in [
    ("Ada Lovelace lived in London .", "B-PER I-PER O O B-LOC O"),
    ("Paris is a city", "B-LOC O O O"),
    ("they met Alan Turing in Paris", "O O B-PER I-PER O B-LOC"),
    ("the river flows", "O O O"),
]] * 3
TAGS = tag_set(["LOC", "PER"], "IOB2")


@pytest.fixture(scope="module")
def bert(tiny_bert):
    return load_backbone(f"hf:{tiny_bert}", max_length=16)


def test_token_states_share_embeds_layers_and_pool_to_embed(tiny_bert):
    for layers in ([-1], [1, 2]):
        b = load_backbone(f"hf:{tiny_bert}", layers=layers, max_length=16)
        batch = b.preprocess(["a dog", "a much longer sentence about a cat"])
        with torch.inference_mode():
            states, pooled = b.token_states(batch), b.embed(batch)
        assert states.shape == (2, batch["input_ids"].shape[1], b.num_features) and states.dtype == torch.float32
        mask = batch["attention_mask"].unsqueeze(-1).float()
        torch.testing.assert_close((states * mask).sum(1) / mask.sum(1), pooled)
        assert b.calls == 2


def test_token_states_of_a_pooled_only_kind_says_what_to_use():
    from tlops.backbones.base import BaseBackbone

    class Pooled(BaseBackbone):
        kind, modality = "speech-embedding", "audio"

    with pytest.raises(BackboneError, match="gives no per-token features.*hf:<hub id"):
        Pooled().token_states(None)


def test_align_labels_the_first_sub_token_and_reports_truncation(bert):
    tok = word_tokenizer(bert)
    words = [["Lovelace", "wrote", "notes"], ["a"] * 30]
    a = align(tok, words, max_length=16, tag_ids=[[1, 0, 0], [0] * 30])
    pieces = tok.convert_ids_to_tokens(a.input_ids[0])
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert len(pieces) > 5, "Lovelace splits into sub-words"
    assert a.first[0][0] == 1 and [pieces[j] for j in a.first[0][1:]] == ["wrote", "notes"]
    labelled = [j for j, l in enumerate(a.labels[0]) if l != IGNORE]
    assert labelled == a.first[0], "only each word's first sub-token carries a label"
    assert a.labels[0][1] == 1 and all(a.labels[0][j] == IGNORE for j in range(2, a.first[0][1]))
    assert len(a.input_ids[1]) == 16 and a.first[1][:14] == list(range(1, 15)) and a.first[1][14:] == [-1] * 16
    assert (a.truncated_sentences, a.words_cut) == (1, 16)


def test_probe_learns_and_predicts_valid_spans_with_char_offsets(bert):
    m = fit_probe(bert, TRAIN, TAGS, "IOB2", C=[0.1, 10.0], val=TRAIN[:4])
    assert [h["C"] for h in m.history] == [0.1, 10.0]
    assert m.evaluate(TRAIN).f1 > 0.8, "a linear probe fits a dozen repeated sentences"
    text = "  Ada Lovelace lived in London.\tThen Paris!"
    (ents,) = m.predict([text])
    for e in ents:
        assert text[e["start"]:e["end"]] == e["text"] and e["type"] in ("PER", "LOC") and 0 < e["score"] <= 1
    assert {(e["text"], e["type"]) for e in ents} >= {("Ada Lovelace", "PER"), ("London", "LOC")}
    assert m.predict(["", "   "]) == [[], []]
    pred = m.predict_tags([["Paris"] * 40])  # past max_length: cut words are 'O', counted
    assert pred.words_cut == 26 and pred.tags[0][14:] == ["O"] * 26
    assert not sequence_problems(pred.tags[0], "IOB2")


def test_finetune_is_deterministic_changes_weights_and_keeps_the_best_epoch(tiny_bert):
    runs = []
    for _ in range(2):
        b = load_backbone(f"hf:{tiny_bert}", max_length=16)
        before = b.model.embeddings.word_embeddings.weight.detach().clone()
        m = finetune(b, TRAIN, TAGS, "IOB2", val=TRAIN[:4], epochs=3, batch_size=4, head_lr=1e-2, lr=1e-3, seed=3)
        assert b.fine_tuned and not b.model.training
        assert not torch.equal(before, b.model.embeddings.word_embeddings.weight), "the backbone trained too"
        runs.append(m)
    a, b = runs
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history], "same seed, same losses (CPU)"
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]
    torch.testing.assert_close(a.head.weight, b.head.weight, rtol=0, atol=0)
    assert a.evaluate(TRAIN[:4]).f1 == max(h["val_entity_f1"] for h in a.history), "the best val epoch is kept"


@pytest.mark.parametrize("how", ["probe", "finetune"])
def test_save_load_gives_identical_predictions(how, tiny_bert, tmp_path):
    b = load_backbone(f"hf:{tiny_bert}", max_length=16)
    m = (fit_probe(b, TRAIN, TAGS, "IOB2") if how == "probe"
         else finetune(b, TRAIN, TAGS, "IOB2", epochs=1, batch_size=4, head_lr=1e-2, lr=1e-3))
    texts = ["Ada Lovelace met Alan Turing in Paris.", "the river"]
    m.save(tmp_path / "ner")
    back = NerModel.load(tmp_path / "ner")  # backbone rebuilt from the export, offline
    assert back.tags == m.tags and back.scheme == "IOB2"
    assert back.predict(texts) == m.predict(texts)
    assert back.predict_tags([s.tokens for s in TRAIN[:4]]).scores == m.predict_tags([s.tokens for s in TRAIN[:4]]).scores
    wrong = load_backbone(f"hf:{tiny_bert}", layers=[1, 2], max_length=16)
    with pytest.raises(BackboneError, match="takes 32 features, the backbone gives 64"):
        NerModel.load(tmp_path / "ner", backbone=wrong)


def test_split_words_keeps_offsets():
    text = "O'Neill met Jean-Paul in St. Louis, 1990s."
    words = split_words(text)
    assert [w.text for w in words] == ["O'Neill", "met", "Jean-Paul", "in", "St", ".", "Louis", ",", "1990s", "."]
    assert all(text[w.start:w.end] == w.text for w in words)


def test_gazetteer_memorises_longest_match_and_most_frequent_type():
    train = [Sentence(["New", "York", "is", "big"], ["B-LOC", "I-LOC", "O", "O"]),
             Sentence(["York", "won"], ["B-PER", "O"]), Sentence(["York", "lost"], ["B-PER", "O"]),
             Sentence(["in", "York"], ["O", "B-LOC"])]
    g = Gazetteer.fit(train)
    assert g.entries == {("New", "York"): "LOC", ("York",): "PER"}
    assert g.predict_tags([["New", "York", "and", "York", "and", "new", "york"]]) == \
        [["B-LOC", "I-LOC", "O", "B-PER", "O", "O", "O"]]
    text = "I flew to New York, then York."
    assert g.predict([text]) == [[{"start": 10, "end": 18, "type": "LOC", "text": "New York", "score": 1.0},
                                  {"start": 25, "end": 29, "type": "PER", "text": "York", "score": 1.0}]]
    s = g.evaluate(train)
    assert 0 < s.f1 < 1
    assert Gazetteer.fit(train, "IOBES").predict_tags([["York", "New", "York"]]) == [["S-PER", "B-LOC", "E-LOC"]]
