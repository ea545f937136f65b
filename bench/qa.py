"""Extractive QA on the WordNet demo (data/text_qa, issue 26): test exact match / F1 of
- the sliding-window lexical baseline (tlops.qa.baseline; idf from the train contexts),
- a frozen-backbone probe (start/end Linear head on MiniLM's token states),
- fine-tuning the packaged real MiniLM (sentence-transformers/all-MiniLM-L6-v2),
- fine-tuning the same architecture from random weights (the control: what the pretrained weights add),
each also broken down by question kind (blank / word / gloss; see tlops/data/build_qa_wordnet.py).
Every model trains on train.json, keeps its best epoch by val F1, and is scored once on test.json.

Run: `python -m bench.qa [--methods baseline probe finetune random] [--epochs 2] [--lr 1e-4] [--batch-size 16]
[--out qa]` (results in bench/out/OUT.json). Build the data first: `python -m tlops.data.build_qa_wordnet data/text_qa`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import REPO, save
from tlops.qa.files import QAExample, read_qa_dataset
from tlops.qa.metrics import squad_scores

KINDS = ("blank", "word", "gloss")


def scores(examples: list[QAExample], preds: list[dict]) -> dict:
    def one(pairs):
        return squad_scores({e.id: [a.text for a in e.answers] for e, _ in pairs}, {e.id: p["answer"] for e, p in pairs})

    pairs = list(zip(examples, preds))
    out = {"all": one(pairs)}
    for k in KINDS:
        sub = [(e, p) for e, p in pairs if e.id.startswith(k + "-")]
        if sub:
            out[k] = one(sub)
    # offsets must point at the answer text
    assert all(p["answer"] == e.context[p["start"]:p["end"]] for e, p in pairs if p["start"] >= 0)
    return out


def rows(examples: list[QAExample]) -> list[dict]:
    return [{"question": e.question, "context": e.context} for e in examples]


def random_minilm(folder: Path, seed: int = 0) -> Path:
    """MiniLM's architecture and tokenizer with random weights (the control)."""
    import torch
    from transformers import AutoConfig, AutoModel

    from tests.helpers import minilm_folder

    src = minilm_folder()
    torch.manual_seed(seed)
    AutoModel.from_config(AutoConfig.from_pretrained(src)).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(src / name, folder / name)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="+", default=["baseline", "probe", "finetune", "random"])
    ap.add_argument("--data", default=str(REPO / "data" / "text_qa"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--probe-epochs", type=int, default=30)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--stride", type=int, default=48)
    ap.add_argument("--layers", type=int, nargs="+", default=[-1])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default="qa", help="results file bench/out/OUT.json")
    ap.add_argument("--limit-train", type=int, default=0, help="use only the first N train questions (smoke runs)")
    args = ap.parse_args()

    from tlops.backbones.hf import HFTextBackbone
    from tlops.qa.baseline import SlidingWindowBaseline
    from tlops.qa.model import QAConfig, QAModel
    from tests.helpers import minilm_folder

    ds = read_qa_dataset(Path(args.data))
    train, val, test = ds.splits["train"], ds.splits["val"], ds.splits["test"]
    if args.limit_train:
        train = train[: args.limit_train]
    cfg = dict(max_length=args.max_length, stride=args.stride, epochs=args.epochs, lr=args.lr,
               probe_epochs=args.probe_epochs, layers=tuple(args.layers), batch_size=args.batch_size, seed=0)
    result = {"data": {"train": len(train), "val": len(val), "test": len(test)}, "config": cfg, "methods": {}}
    for method in args.methods:
        t0 = time.perf_counter()
        if method == "baseline":
            model = SlidingWindowBaseline().fit(e.context for e in train)
            history = []
        else:
            tmp = None
            if method == "random":
                tmp = Path(tempfile.mkdtemp(prefix="qa-random-"))
                folder = random_minilm(tmp / "m")
            else:
                folder = minilm_folder()
            model = QAModel(HFTextBackbone(str(folder), layers=list(args.layers)), QAConfig(**cfg))
            history = model.fit(train, val, mode="probe" if method == "probe" else "finetune",
                                log=lambda s, m=method: print(f"[{m}] {s}", flush=True))
            windows = len(model.windows([e.question for e in train], [e.context for e in train]))
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        preds = model.predict(rows(test))
        rec = {"test": scores(test, preds), "train_seconds": round(train_s, 1),
               "predict_seconds": round(time.perf_counter() - t1, 1), "history": history}
        if method != "baseline":
            rec["train_windows"] = windows
        result["methods"][method] = rec
        s = rec["test"]["all"]
        print(f"== {method}: test EM {s['exact']:.3f} F1 {s['f1']:.3f} "
              + " ".join(f"{k} {rec['test'][k]['exact']:.2f}/{rec['test'][k]['f1']:.2f}" for k in KINDS if k in rec["test"])
              + f" (train {train_s:.0f} s)", flush=True)
    save(args.out, result)


if __name__ == "__main__":
    main()
