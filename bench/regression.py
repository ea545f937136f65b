"""Regression quality on the text demo (data/text_regression: WordNet gloss -> noun depth), same splits:
pretrained MiniLM probe (ridge and MLP heads, tlops's own `train_probe`) vs the same MiniLM architecture with
random weights (ridge) vs TF-IDF + ridge; plus predicting the train mean (R² ~ 0). Every method picks its
regularisation on val by MAE. MAE and R² on test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge

from bench.common import REPO, save
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.evaluate import regression_metrics
from tlops.features import embed_all
from tlops.modules.heads import predict_values
from tlops.strategies.linear_probe import LinearProbeConfig
from tlops.training.probe import train_probe

ALPHAS = [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]


def probe(backbone, ds, head: str = "ridge") -> dict:
    x = {s: embed_all(backbone, ds.inputs(s)) for s in ("train", "val", "test")}
    y = {s: ds.targets(s) for s in x}
    r = train_probe(x["train"], y["train"], x["val"], y["val"], 0, LinearProbeConfig(head=head, alphas=ALPHAS), seed=0, task="regression")
    return {**regression_metrics(y["test"], np.asarray(predict_values(r.head, x["test"]))), "kept": r.history[-1].get("alpha")}


def tfidf_ridge(ds) -> dict:
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    xtr = vec.fit_transform(ds.splits["train"]["text"])
    xva, xte = vec.transform(ds.splits["val"]["text"]), vec.transform(ds.splits["test"]["text"])
    ytr, yva = ds.targets("train"), ds.targets("val")
    fits = [Ridge(alpha=a).fit(xtr, ytr) for a in ALPHAS]
    best = min(range(len(fits)), key=lambda i: np.abs(fits[i].predict(xva) - yva).mean())
    return {**regression_metrics(ds.targets("test"), fits[best].predict(xte)), "kept": ALPHAS[best]}


def main() -> dict:
    from transformers import AutoConfig, BertModel

    ds = load_dataset(REPO / "data" / "text_regression")
    pre = load_backbone("hf:sentence-transformers/all-MiniLM-L6-v2")
    tmp = Path(tempfile.mkdtemp(prefix="tlops-bench-rand-"))
    try:
        torch.manual_seed(0)
        BertModel(AutoConfig.from_pretrained(pre.folder)).save_pretrained(tmp)  # same architecture, random init
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy2(pre.folder / f, tmp / f)
        mean = float(ds.targets("train").mean())
        results = {"pretrained_minilm_ridge": probe(pre, ds),
                   "pretrained_minilm_mlp": probe(pre, ds, head="mlp"),
                   "random_weights_minilm_ridge": probe(load_backbone(f"hf:{tmp}"), ds),
                   "tfidf_ridge": tfidf_ridge(ds),
                   "train_mean": regression_metrics(ds.targets("test"), np.full(len(ds.splits["test"]), mean))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    p = results["pretrained_minilm_ridge"]
    others = ("random_weights_minilm_ridge", "tfidf_ridge")
    return save("regression", {"dataset": "wordnet-noun-depth (text -> hypernym depth)", "rows": {s: len(d) for s, d in ds.splits.items()},
                               "results": results,
                               "pretrained_beats_both": all(p["mae"] < results[k]["mae"] and p["r2"] > results[k]["r2"] for k in others)})


if __name__ == "__main__":
    main()
