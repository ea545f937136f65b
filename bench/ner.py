"""NER quality on the demo set (data/text_ner, WordNet): test entity F1 (seqeval, strict IOB2) of
- the memorising gazetteer (the skeptic's baseline),
- a frozen linear probe on MiniLM's token states (C picked on val),
- the same probe on MiniLM's architecture with random weights (the control: what the tokenizer and a linear head
  on untrained features find without pretraining),
- fine-tuning MiniLM with a linear token head (3 epochs, the best epoch on val).
Split into test entities seen / unseen in train, because a name seen in train is what the gazetteer memorises.

    .venv/bin/python -m bench.ner            # all four (about 3-4 min on 2 CPU cores)
    .venv/bin/python -m bench.ner --no-finetune
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from bench.common import REPO, save
from tlops.backbones import load_backbone
from tlops.ner.baseline import Gazetteer
from tlops.ner.files import read_ner_dataset
from tlops.ner.metrics import entity_scores
from tlops.ner.model import fit_probe
from tlops.ner.training import finetune
from tlops.ner.tags import spans

CS = (0.1, 0.3, 1.0, 3.0)


def seen_unseen(ds, truth: list[list[str]], predicted: list[list[str]]) -> dict:
    """Recall of test entities whose exact string is / is not an entity of train."""
    known = {tuple(s.tokens[a:b]) for s in ds.splits["train"] for a, b, _ in spans(s.tags)}
    hit = {True: [0, 0], False: [0, 0]}
    for sent, t, p in zip(ds.splits["test"], truth, predicted):
        found = set(spans(p))
        for sp in spans(t):
            k = tuple(sent.tokens[sp.start:sp.end]) in known
            hit[k][1] += 1
            hit[k][0] += sp in found
    return {"recall_seen": hit[True][0] / max(1, hit[True][1]), "seen_entities": hit[True][1],
            "recall_unseen": hit[False][0] / max(1, hit[False][1]), "unseen_entities": hit[False][1]}


def report(ds, predicted: list[list[str]], seconds: float, **extra) -> dict:
    truth = ds.tag_lists("test")
    s = entity_scores(truth, predicted, ds.scheme)
    return {"test_entity_f1": s.f1, "test_precision": s.precision, "test_recall": s.recall, "test_token_accuracy": s.accuracy,
            "per_type_f1": {t: v.f1 for t, v in s.per_type.items()}, **seen_unseen(ds, truth, predicted),
            "seconds": round(seconds, 1), **extra}


def probe(backbone, ds) -> dict:
    t0 = time.perf_counter()
    m = fit_probe(backbone, ds.splits["train"], ds.tags, ds.scheme, C=CS, val=ds.splits["val"])
    print("  probe", m.history, flush=True)
    best = max(m.history, key=lambda r: r["val_entity_f1"])
    pred = m.predict_tags(ds.tokens("test")).tags
    return report(ds, pred, time.perf_counter() - t0, C=best["C"], val_entity_f1=best["val_entity_f1"], by_C=m.history)


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-finetune", action="store_true")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    ds = read_ner_dataset(REPO / "data" / "text_ner")
    results = {}
    t0 = time.perf_counter()
    gaz = Gazetteer.fit(ds.splits["train"], ds.scheme)
    results["gazetteer"] = report(ds, gaz.predict_tags(ds.tokens("test")), time.perf_counter() - t0)
    print("gazetteer", results["gazetteer"]["test_entity_f1"], flush=True)
    pre = load_backbone("hf:sentence-transformers/all-MiniLM-L6-v2")
    results["minilm_probe"] = probe(pre, ds)
    print("probe", results["minilm_probe"]["test_entity_f1"], flush=True)
    from transformers import AutoConfig, BertModel

    tmp = Path(tempfile.mkdtemp(prefix="tlops-bench-ner-rand-"))
    try:
        torch.manual_seed(0)
        BertModel(AutoConfig.from_pretrained(pre.folder)).save_pretrained(tmp)  # same architecture, random init
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy2(pre.folder / f, tmp / f)
        results["random_weights_probe"] = probe(load_backbone(f"hf:{tmp}"), ds)
        print("random", results["random_weights_probe"]["test_entity_f1"], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.no_finetune:
        t0 = time.perf_counter()
        ft = finetune(load_backbone("hf:sentence-transformers/all-MiniLM-L6-v2"), ds.splits["train"], ds.tags, ds.scheme,
                      val=ds.splits["val"], epochs=args.epochs, seed=0, log=lambda r: print("  finetune", r, flush=True))
        train_s = time.perf_counter() - t0
        results["minilm_finetune"] = report(ds, ft.predict_tags(ds.tokens("test")).tags, time.perf_counter() - t0,
                                            train_seconds=round(train_s, 1), epochs=args.epochs, history=ft.history)
        print("finetune", results["minilm_finetune"]["test_entity_f1"], flush=True)
    f1 = {k: v["test_entity_f1"] for k, v in results.items()}
    target = None
    if "minilm_finetune" in f1:
        target = f1["minilm_finetune"] > f1["minilm_probe"] > f1["random_weights_probe"]
    return save("ner", {"dataset": "data/text_ner (WordNet NER, IOB2, PER/LOC/ORG/MISC)",
                        "sentences": {s: len(v) for s, v in ds.splits.items()}, "results": results, "test_entity_f1": f1,
                        "finetune_beats_probe_beats_random": target})


if __name__ == "__main__":
    main()
