"""Three more domain shifts for `bench.domain_adapt`, built deterministically from the demo sources: common
corruptions of the inputs, the shift family of ImageNet-C (Hendrycks & Dietterich, ICLR 2019) and of noisy speech,
where the source domain is clean and the target the same kind of input recorded worse. Bench data, not demo data:
written under bench/out/da_shifts/ (not in data.dvc), rebuilt by `python -m bench.da_shifts` in a few seconds.

- `fashion_noise`: Fashion-MNIST (source: the image demo's train/val picks, 60 + 15 per class) -> Fashion-MNIST test
  images (80 + 60 per class, none of them the demo's test rows) with additive Gaussian noise, sigma 50 of 255
  (ImageNet-C's gaussian_noise between severities 3 and 4).
- `fashion_contrast`: the same rows, target contrast cut to 0.3 around each image's mean (ImageNet-C's contrast at
  severity 4).
- `keywords_noise`: the audio shift demo's espeak-ng source voices (train 24 / val 6 voices, its clips copied) ->
  20 other espeak-ng voices (12 unlabelled, 8 test; never in the source) with white noise at 5 dB SNR.

`python -m bench.domain_adapt --shifts image:fashion_noise image:fashion_contrast audio:keywords_noise` runs the
methods on them with the modality's demo config (only `data.path` replaced).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

from bench.common import OUT, REPO

ROOT = OUT / "da_shifts"
SHIFTS = {"fashion_noise": "image", "fashion_contrast": "image", "keywords_noise": "audio"}
FASHION_TARGET = {"unlabeled": (100, 80), "test": (180, 60)}  # (first index, rows) per class in Fashion-MNIST's test set


def _noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x.astype(np.float32) + rng.normal(0, 50, x.shape), 0, 255)


def _contrast(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    m = x.astype(np.float32).mean()
    return np.clip((x.astype(np.float32) - m) * 0.3 + m, 0, 255)


def build_fashion(out: Path, corrupt) -> dict[str, int]:
    from PIL import Image

    from tlops.data.build_fashion_mnist import PER_CLASS, _pick, load
    from tlops.data.dataset import write_split_csv

    train_x, train_y, test_x, test_y = load()
    labels = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
    plan = {"train": (train_x, train_y, _pick(train_y, 0, PER_CLASS["train"]), None),
            "val": (train_x, train_y, _pick(train_y, PER_CLASS["train"], PER_CLASS["val"]), None),
            **{s: (test_x, test_y, _pick(test_y, start, n), corrupt) for s, (start, n) in FASHION_TARGET.items()}}
    rng = np.random.default_rng(0)
    counts = {}
    for split, (xs, ys, idx, fn) in plan.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in idx:
            pixels = xs[i] if fn is None else fn(xs[i], rng)
            rel = f"images/{split}/{split}-{i:05d}.png"
            Image.fromarray(np.asarray(pixels).round().astype(np.uint8), mode="L").save(out / rel)
            rows.append((rel,) if split == "unlabeled" else (rel, labels[int(ys[i])]))
        write_split_csv(out / f"{split}.csv", ["path"] if split == "unlabeled" else ["path", "label"], rows)
        counts[split] = len(rows)
    (out / "dataset.yaml").write_text(f"modality: image\nname: {out.name}\nsource: Fashion-MNIST clean -> corrupted ({out.name})\n"
                                      f"labels: [{', '.join(labels)}]\n", encoding="utf-8")
    return counts


def build_keywords_noise(out: Path, snr_db: float = 5.0) -> dict[str, int]:
    import soundfile as sf

    from tlops.data.build_keywords import WORDS, require_engines, synthesise
    from tlops.data.build_voice_shift import ACCENTS, VARIANTS, source_voices
    from tlops.data.dataset import write_split_csv

    require_engines()
    demo = REPO / "data" / "audio_voice_shift"
    counts = {}
    for split in ("train", "val"):  # the demo's clean espeak-ng source, copied
        lines = (demo / f"{split}.csv").read_text(encoding="utf-8").splitlines()[1:]
        rows = [tuple(line.split(",")) for line in lines]
        for rel, _ in rows:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(demo / rel, out / rel)
        write_split_csv(out / f"{split}.csv", ["path", "label"], rows)
        counts[split] = len(rows)
    used = {v for voices in source_voices().values() for v, _ in voices}
    rank = lambda k: hashlib.sha256(f"tlops-keywords-noise-v1:{k}".encode()).hexdigest()  # noqa: E731
    others = sorted((f"{a}+{v}" for a in ACCENTS for v in VARIANTS if f"{a}+{v}" not in used), key=rank)
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    for split, voices in (("unlabeled", others[:12]), ("test", others[12:20])):
        rows = []
        for voice in voices:
            speed = 140 + int(rank(voice)[:4], 16) % 41
            folder = out / "clips" / f"noisy-{voice.replace('+', '_')}"
            folder.mkdir(parents=True, exist_ok=True)
            for word in WORDS:
                clean = folder / f"{word}.clean.wav"
                synthesise("espeak", voice, speed, word, clean)
                digest = hashlib.sha256(clean.read_bytes()).hexdigest()
                x, rate = sf.read(str(clean), dtype="float32")
                clean.unlink()
                if digest in seen:  # espeak-ng renders some variants byte-identically: keep the first
                    continue
                seen.add(digest)
                power = float(np.mean(x ** 2)) or 1e-8
                noisy = x + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), x.shape).astype(np.float32)
                rel = f"clips/{folder.name}/{word}.wav"
                sf.write(str(out / rel), np.clip(noisy, -1, 1), rate, subtype="PCM_16")
                rows.append((rel,) if split == "unlabeled" else (rel, word))
        write_split_csv(out / f"{split}.csv", ["path"] if split == "unlabeled" else ["path", "label"], rows)
        counts[split] = len(rows)
    (out / "dataset.yaml").write_text(
        "modality: audio\nname: keywords-noise\nsource: espeak-ng voices clean -> other espeak-ng voices, white noise at "
        f"{snr_db:g} dB SNR\nlabels: [{', '.join(repr(w) for w in WORDS)}]  # quoted: YAML reads bare yes/no/on/off as booleans\n",
        encoding="utf-8")
    return counts


def build(name: str) -> Path:
    """The shift's folder, built once (a folder with its dataset.yaml is reused)."""
    out = ROOT / name
    if (out / "dataset.yaml").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if name == "keywords_noise":
        counts = build_keywords_noise(out)
    else:
        counts = build_fashion(out, _noise if name == "fashion_noise" else _contrast)
    print(f"wrote {out}: {counts}", flush=True)
    return out


if __name__ == "__main__":
    for n in sys.argv[1:] or list(SHIFTS):
        build(n)
