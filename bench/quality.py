"""Quality on the demo task (same splits): pretrained MiniLM probe vs TF-IDF + logistic regression vs
the same MiniLM architecture with random weights. The pretrained probe must beat both."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, PredefinedSplit

from bench.common import REPO, save
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.evaluate import classification_metrics
from tlops.features import embed_all
from tlops.strategies.linear_probe import LinearProbeConfig
from tlops.task_types import train_probe

CS = (0.03, 0.1, 0.3, 1.0, 3.0)


def probe(backbone, ds, labels):
    """Logistic-regression probe, C picked on val (the same selection every method gets)."""
    x = {s: embed_all(backbone, ds.inputs(s)) for s in ("train", "val", "test")}
    y = {s: ds.label_ids(s) for s in x}
    best = max((train_probe(x["train"], y["train"], x["val"], y["val"], len(labels), LinearProbeConfig(C=c)) for c in CS),
               key=lambda r: r.val_metrics["macro_f1"])
    with torch.inference_mode():
        pred = best.head(torch.from_numpy(x["test"])).argmax(1).numpy()
    return classification_metrics(ds.splits["test"]["label"].tolist(), [labels[i] for i in pred], labels)


def tfidf(ds, labels):
    tr, va = ds.splits["train"], ds.splits["val"]
    texts = tr["text"].tolist() + va["text"].tolist()
    ys = tr["label"].tolist() + va["label"].tolist()
    split = PredefinedSplit([-1] * len(tr) + [0] * len(va))
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1), LogisticRegression(max_iter=2000))
    gs = GridSearchCV(pipe, {"logisticregression__C": [0.3, 1, 3, 10, 30]}, cv=split, scoring="f1_macro", refit=False).fit(texts, ys)
    pipe.set_params(**gs.best_params_).fit(tr["text"].tolist(), tr["label"].tolist())
    return classification_metrics(ds.splits["test"]["label"].tolist(), pipe.predict(ds.splits["test"]["text"].tolist()).tolist(), labels)


def main() -> dict:
    from transformers import AutoConfig, BertModel

    ds = load_dataset(REPO / "data" / "text_wordnet")
    labels = ds.labels
    pre = load_backbone("hf:sentence-transformers/all-MiniLM-L6-v2")
    tmp = Path(tempfile.mkdtemp(prefix="tlops-bench-rand-"))
    try:
        torch.manual_seed(0)
        BertModel(AutoConfig.from_pretrained(pre.folder)).save_pretrained(tmp)  # same architecture, random init
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy2(pre.folder / f, tmp / f)
        results = {"pretrained_minilm_probe": probe(pre, ds, labels),
                   "random_weights_minilm_probe": probe(load_backbone(f"hf:{tmp}"), ds, labels),
                   "tfidf_logreg": tfidf(ds, labels)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    p = results["pretrained_minilm_probe"]["macro_f1"]
    return save("quality", {"dataset": "wordnet-supersense (12 classes)", "rows": {s: len(d) for s, d in ds.splits.items()},
                            "results": results,
                            "pretrained_beats_both": p > results["random_weights_minilm_probe"]["macro_f1"] and p > results["tfidf_logreg"]["macro_f1"]})


if __name__ == "__main__":
    main()
