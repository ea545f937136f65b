"""Extractive QA model (tlops.qa.model) on the tiny random-weights BERT: windows, decoding, probe, fine-tune, save/load."""

from __future__ import annotations

import torch

from tlops.backbones.hf import HFTextBackbone
from tlops.qa.files import Answer, QAExample
from tlops.qa.model import QAConfig, QAModel, encode_windows

WORDS = ("harbor port ship cargo tower light rock night river bridge city market bread water stone house garden "
         "road field horse table chair window door paper music glass metal wood apple tree bird fish green "
         "summer winter morning evening island forest mountain valley").split()
LONG = " ".join(WORDS) + "."
CTX = "The harbor is a sheltered port. Ships take on cargo there. A lighthouse warns ships of rocks at night."
SMALL = QAConfig(max_length=24, stride=8, max_query_length=6, max_answer_length=5)


def backbone(folder) -> HFTextBackbone:
    return HFTextBackbone(str(folder), layers=[-1])


def examples(n: int = 3, impossible: bool = False) -> list[QAExample]:
    pairs = [("What is a sheltered port?", "harbor"), ("What do ships take on?", "cargo"), ("What warns ships?", "lighthouse")]
    out = [QAExample(id=f"q{i}", question=q, context=CTX, answers=(Answer(a, CTX.index(a)),))
           for i, (q, a) in enumerate(pairs[:n])]
    if impossible:
        out.append(QAExample(id="none", question="Who painted the tower?", context=CTX, answers=(), is_impossible=True))
    return out


def test_an_answer_across_a_window_edge_is_labelled_in_the_window_that_holds_it(tiny_bert):
    tok = backbone(tiny_bert).tokenizer
    first = encode_windows(tok, ["Which word?"], [LONG], SMALL)
    assert len(first) > 2 and set(first.row) == {0}
    last_tok = max(k for k, o in enumerate(first.offsets[0]) if o is not None)
    k = LONG[: first.offsets[0][last_tok][1]].count(" ")  # the word window 0 ends on
    start = len(" ".join(WORDS[:k])) + 1
    answer = (start, start + len(WORDS[k]) + 1 + len(WORDS[k + 1]))  # word k and the next one: crosses the edge
    w = encode_windows(tok, ["Which word?"], [LONG], SMALL, answers=[answer])
    assert (w.start[0], w.end[0]) == (0, 0)  # window 0 holds only the first word of it
    whole = [j for j in range(len(w)) if w.start[j] > 0]
    assert whole == [1]
    j = whole[0]
    assert LONG[w.offsets[j][w.start[j]][0]: w.offsets[j][w.end[j]][1]] == LONG[answer[0]: answer[1]]
    # every window's question part is there, and only context tokens carry offsets
    assert all(w.features[i]["input_ids"][0] == tok.cls_token_id for i in range(len(w)))


def test_decoding_gives_exact_character_offsets_across_windows(tiny_bert):
    model = QAModel(backbone(tiny_bert), SMALL)
    w = model.windows(["Which word?"], [LONG])
    target = "island forest"
    a = LONG.index(target)
    j = max(i for i in range(len(w)) if any(o and o[0] == a for o in w.offsets[i]))  # a later window holds it
    # every token -100, so only a pair of the high logits below can beat the target's 5 + 5
    logits = [(torch.full((len(f["input_ids"]),), -100.0), torch.full((len(f["input_ids"]),), -100.0)) for f in w.features]
    s_tok = next(k for k, o in enumerate(w.offsets[j]) if o and o[0] == a)
    e_tok = next(k for k, o in enumerate(w.offsets[j]) if o and o[1] == a + len(target))
    logits[j][0][s_tok] = 5.0
    logits[j][1][e_tok] = 5.0
    # distractors the decoder must not take: a question token, an end before the start, a span too long
    logits[0][0][1] = logits[0][1][1] = 50.0
    logits[1][0][-2] = 40.0
    logits[1][1][next(k for k, o in enumerate(w.offsets[1]) if o)] = 40.0
    c0 = [k for k, o in enumerate(w.offsets[2]) if o]
    logits[2][0][c0[0]] = logits[2][1][c0[-1]] = 40.0  # longer than max_answer_length (5 tokens)
    assert c0[-1] - c0[0] >= SMALL.max_answer_length
    (pred,) = model.decode(w, [LONG], logits)
    assert pred["answer"] == target and (pred["start"], pred["end"]) == (a, a + len(target))
    assert 0 < pred["score"] <= 1


def test_probe_learns_is_seeded_and_round_trips(tiny_bert, tmp_path):
    cfg = QAConfig(max_length=48, stride=16, max_query_length=12, probe_epochs=40, probe_lr=3e-2)
    train = examples()
    m1 = QAModel(backbone(tiny_bert), cfg)
    hist = m1.fit(train, mode="probe")
    assert hist[-1]["loss"] < hist[0]["loss"] * 0.5
    assert m1.evaluate(train)["exact"] > 0  # a linear head on 32-d random-weight states: better than nothing
    m2 = QAModel(backbone(tiny_bert), cfg)
    m2.fit(train, mode="probe")
    assert all(torch.equal(a, b) for a, b in zip(m1.head.state_dict().values(), m2.head.state_dict().values()))
    rows = [{"question": e.question, "context": e.context} for e in train]
    preds = m1.predict(rows)
    assert all(p["answer"] == r["context"][p["start"]:p["end"]] for p, r in zip(preds, rows))
    m1.save(tmp_path / "probe")
    assert not (tmp_path / "probe" / "backbone").exists()  # a probe's backbone is the frozen one, not saved again
    loaded = QAModel.load(tmp_path / "probe", backbone(tiny_bert))
    assert loaded.predict(rows) == preds


def test_finetune_learns_is_seeded_and_round_trips(tiny_bert, tmp_path):
    cfg = QAConfig(max_length=48, stride=16, max_query_length=12, epochs=12, lr=2e-3, head_lr=1e-2, batch_size=2, warmup=0.0)
    train = examples()
    m1 = QAModel(backbone(tiny_bert), cfg)
    before = {k: v.clone() for k, v in m1.backbone.model.state_dict().items()}
    hist = m1.fit(train, val=train, mode="finetune")
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert any(not torch.equal(before[k], v) for k, v in m1.backbone.model.state_dict().items())  # the backbone trained
    m2 = QAModel(backbone(tiny_bert), cfg)
    m2.fit(train, val=train, mode="finetune")
    assert [h["loss"] for h in m2.history] == [h["loss"] for h in hist]  # seeded: same steps on CPU
    rows = [{"question": e.question, "context": e.context} for e in train]
    preds = m1.predict(rows)
    m1.save(tmp_path / "ft")
    loaded = QAModel.load(tmp_path / "ft")  # the fine-tuned backbone comes from the folder itself
    assert loaded.fine_tuned and loaded.predict(rows) == preds


def test_v2_data_chooses_a_null_threshold_and_can_abstain(tiny_bert, tmp_path):
    cfg = QAConfig(max_length=48, stride=16, max_query_length=12, probe_epochs=30, probe_lr=3e-2)
    train = examples(impossible=True)
    m = QAModel(backbone(tiny_bert), cfg)
    m.fit(train, val=train, mode="probe")
    assert m.null_threshold is not None
    scores = m.evaluate(train)
    assert "NoAns_exact" in scores and scores["exact"] >= 0.75  # the val threshold fits these four questions
    preds = m.predict([{"question": e.question, "context": e.context} for e in train])
    assert all((p["answer"] == "") == (p["start"] == -1) for p in preds)
    m.save(tmp_path / "v2")
    assert QAModel.load(tmp_path / "v2", backbone(tiny_bert)).null_threshold == m.null_threshold
