"""The trivial baseline every probe and fine-tune is scored beside (issue 30: "every run knows its trivial baseline"):
hand-made features of the raw input and a linear model, fitted on train, its regularisation chosen on val, the test
split scored once with the task type's own metrics.

- text: TF-IDF of word 1-2-grams (sublinear tf), as scikit-learn's `TfidfVectorizer` makes it;
- image: raw pixels: each image in grey levels, resized to 32 x 32, flattened (Fashion-MNIST-style baselines);
- audio: MFCC statistics: 20 MFCCs and their deltas over the clip (librosa), mean and standard deviation of each (80
  numbers), the features bench/audio.py and bench/regression.py already compared against;

then logistic regression (classes; C in 0.01 .. 10 by val macro-F1) or ridge regression (numbers; alpha in 0.1 .. 10^4 by
val MAE, predictions clipped to train's target range), on standardised features. A pretrained backbone that cannot beat this has not earned its cost: on
rotated handwritten digits (target = the angle), pretrained features + ridge reached R² 0.396 while raw pixels + ridge
reach 0.683, and the run should say so. Plain scikit-learn; no Prefect, MLflow or torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

CLASSIC = {"text": "tfidf", "image": "raw_pixels", "audio": "mfcc_stats"}
IMAGE_SIDE = 32
AUDIO_RATE = 16000
CS = (0.01, 0.1, 1.0, 10.0)
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass
class ClassicBaseline:
    name: str  # e.g. "tfidf_logreg", "raw_pixels_ridge"
    metrics: dict[str, float]  # test metrics, as the task type computes them
    kept: float  # the C or alpha val chose
    val_metric: float  # its selection metric on val
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"name": self.name, "metrics": self.metrics, "kept": self.kept, "val_metric": self.val_metric,
                "seconds": round(self.seconds, 3)}


def _image_pixels(paths: Sequence[str]) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(paths), IMAGE_SIDE * IMAGE_SIDE), dtype=np.float32)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.BILINEAR), dtype=np.float32).ravel() / 255.0
    return out


def _mfcc_stats(paths: Sequence[str]) -> np.ndarray:
    import librosa

    from tlops.data.audio import read_audio, resample

    rows = []
    for p in paths:
        y, rate = read_audio(p)
        y = resample(y.mean(axis=1), rate, AUDIO_RATE).astype(np.float32)
        if len(y) < 2048:  # librosa's frame: shorter clips are padded with silence
            y = np.pad(y, (0, 2048 - len(y)))
        m = librosa.feature.mfcc(y=y, sr=AUDIO_RATE, n_mfcc=20)
        d = librosa.feature.delta(m, width=min(9, m.shape[1] - (1 - m.shape[1] % 2))) if m.shape[1] >= 3 else np.zeros_like(m)
        rows.append(np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1)]))
    return np.asarray(rows, dtype=np.float32)


def featurize(modality: str, train: Sequence[str], others: Sequence[Sequence[str]]):
    """The classic features of train and of each other split (the TF-IDF vocabulary is train's); dense or sparse."""
    if modality == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        return vec.fit_transform(list(train)), [vec.transform(list(o)) for o in others]
    make = {"image": _image_pixels, "audio": _mfcc_stats}[modality]
    from sklearn.preprocessing import StandardScaler

    x = make(train)
    scaler = StandardScaler().fit(x)
    return scaler.transform(x), [scaler.transform(make(o)) for o in others]


def fit_classic(modality: str, inputs: dict[str, Sequence[str]], targets: dict[str, list], numeric: bool,
                metrics: Callable[[list, list], dict[str, float]], selection: str, higher_is_better: bool,
                seed: int = 0) -> ClassicBaseline:
    """Fit on `inputs["train"]`, choose C/alpha on val by `selection` (a key of `metrics`), score test once."""
    import time

    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    with threadpool_limits(limits=1):  # small problems: BLAS threads only spin (and stall a loaded machine: 400 s for 1 s of work)
        return _fit(modality, inputs, targets, numeric, metrics, selection, higher_is_better, seed, started)


def _fit(modality, inputs, targets, numeric, metrics, selection, higher_is_better, seed, started) -> ClassicBaseline:
    import time

    from sklearn.linear_model import LogisticRegression, Ridge

    xtr, (xva, xte) = featurize(modality, inputs["train"], [inputs["val"], inputs["test"]])
    ytr = np.asarray(targets["train"], dtype=float) if numeric else list(targets["train"])
    grid = ALPHAS if numeric else CS
    best = None
    span = (float(np.min(ytr)), float(np.max(ytr))) if numeric else None
    for value in grid:
        model = (Ridge(alpha=value) if numeric else LogisticRegression(C=value, max_iter=2000, random_state=seed)).fit(xtr, ytr)
        score = metrics(list(targets["val"]), _predict(model, xva, span))[selection]
        if best is None or (score > best[0] if higher_is_better else score < best[0]):
            best = (score, value, model)
    score, value, model = best
    test = metrics(list(targets["test"]), _predict(model, xte, span))
    head = "ridge" if numeric else "logreg"
    return ClassicBaseline(name=f"{CLASSIC[modality]}_{head}", metrics=test, kept=float(value), val_metric=float(score),
                           seconds=time.perf_counter() - started)


def _predict(model, x, span: tuple[float, float] | None) -> list:
    """Class names, or numbers clipped to train's target range (`span`): a linear model on raw pixels can extrapolate
    wildly on an unusual image, which no user would ship."""
    pred = model.predict(x)
    return [float(v) for v in np.clip(pred, *span)] if span else [str(v) for v in pred]


def verdict(model_metric: float, baseline_metric: float, higher_is_better: bool) -> bool:
    """Whether the classic baseline beats the model on the gate metric (strictly)."""
    return baseline_metric > model_metric if higher_is_better else baseline_metric < model_metric
