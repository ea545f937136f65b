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

Two text shifts from WordNet 3.0 (Debian wordnet-base), one of each family:
- `nouns_examples` (genre, like the verb demo): noun supersenses, gloss definitions (labelled source, 60 + 15 per
  class) -> example sentences of other synsets (40 unlabelled + 30 test per class), the 20 of 26 noun classes with at
  least 90 synsets that have an example sentence (noun.animal, noun.plant, noun.food, noun.shape, noun.motive and
  noun.Tops have too few). Built by the demo's own builder (`build_wordnet_shift.build(pos="noun")`).
- `verbs_typos` (corruption, the text member of the family above): the verb demo's classes and labelled source
  (rebuilt by its builder, byte-identical to data/text_wordnet_shift's train/val) -> the definitions of the same
  classes' other synsets (none in the source; up to 40 unlabelled + 30 test per class, disjoint synsets) with keyboard
  typos: each letter, with probability 0.1, gets one of four edits (a neighbouring QWERTY key instead, deleted, a
  neighbouring key inserted after it, swapped with the next character): the "key" and "swap" noise of Belinkov & Bisk
  (ICLR 2018) plus insertions and deletions. Same genre as the source, so the shift is the corruption alone;
  `verbs_clean` is the same rows without typos (the control that measures how much the typos cost).

`python -m bench.domain_adapt --modalities image:fashion_noise image:fashion_contrast audio:keywords_noise
text:nouns_examples text:verbs_typos` runs the methods on them with the modality's demo config (only `data.path`
replaced).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import OUT, REPO

ROOT = OUT / "da_shifts"
SHIFTS = {"fashion_noise": "image", "fashion_contrast": "image", "keywords_noise": "audio", "nouns_examples": "text",
          "verbs_typos": "text", "verbs_clean": "text"}  # verbs_clean: verbs_typos without the typos (no shift: a control)
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
    rank = lambda k: hashlib.sha256(f"tlops-keywords-noise-v1:{k}".encode()).hexdigest()
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


_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_AT = {k: (r, c + (0, 0.25, 0.75)[r]) for r, row in enumerate(_ROWS) for c, k in enumerate(row)}  # staggered rows
NEIGHBOURS = {k: "".join(o for o, (r2, c2) in _KEY_AT.items() if o != k and (r - r2) ** 2 + (c - c2) ** 2 <= 1.6)
              for k, (r, c) in _KEY_AT.items()}


def typos(text: str, rate: float, rng: np.random.Generator) -> str:
    """Keyboard typos: each ASCII letter, with probability `rate`, gets one of four edits chosen uniformly: a QWERTY
    neighbour instead of it, deleted, a neighbour inserted after it, or swapped with the next character."""
    out: list[str] = []
    chars = list(text)
    i = 0
    while i < len(chars):
        ch = chars[i]
        near = NEIGHBOURS.get(ch.lower())
        if near is None or rng.random() >= rate:
            out.append(ch)
            i += 1
            continue
        key = near[rng.integers(len(near))]
        key = key.upper() if ch.isupper() else key
        edit = rng.integers(4)
        if edit == 0:
            out.append(key)
        elif edit == 2:
            out += [ch, key]
        elif edit == 3 and i + 1 < len(chars):
            out += [chars[i + 1], ch]
            i += 1
        elif edit == 3:
            out.append(ch)  # the last character has nothing to swap with
        i += 1  # edit 1: deleted
    return "".join(out)


def build_verbs_typos(out: Path, rate: float = 0.1) -> dict[str, int]:
    from tlops.data.build_wordnet import read_synsets
    from tlops.data.build_wordnet_shift import TARGET_PER_CLASS, _take
    from tlops.data.build_wordnet_shift import build as build_demo
    from tlops.data.dataset import write_split_csv

    counts = build_demo(out)  # the verb demo's classes and source (train/val); its target files are replaced below
    seen = {text.lower() for split in ("train", "val") for text in pd.read_csv(out / f"{split}.csv")["text"]}
    rank = lambda key: hashlib.sha256(f"tlops-verbs-typos-v1:{key}".encode()).hexdigest()
    by_class: dict[str, list[tuple[str, str]]] = {}
    for sid, lex, definition, _ in sorted(read_synsets(parts_of_speech=("verb",)), key=lambda r: rank(r[0])):
        by_class.setdefault(lex, []).append((definition, lex))
    rows: dict[str, list[tuple[str, str]]] = {"unlabeled": [], "test": []}
    total = sum(TARGET_PER_CLASS.values())
    for lex in sorted(by_class):
        target = _take(by_class[lex], total, seen)  # distinct definitions of synsets not in the source
        n_test = round(len(target) * TARGET_PER_CLASS["test"] / total)
        rows["test"] += target[:n_test]
        rows["unlabeled"] += target[n_test:]
    rng = np.random.default_rng(0)
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda r: rank(r[0]))  # classes interleaved, as in the demo's files
        noisy = [(typos(text, rate, rng), lex) for text, lex in split_rows]
        if split == "unlabeled":
            write_split_csv(out / "unlabeled.csv", ["text"], [(text,) for text, _ in noisy])
        else:
            write_split_csv(out / "test.csv", ["text", "label"], noisy)
        counts[split] = len(noisy)
    labels = (out / "dataset.yaml").read_text(encoding="utf-8").split("labels:", 1)[1]
    (out / "dataset.yaml").write_text(
        f"modality: text\nname: wordnet-verbs-definitions-{'typos' if rate else 'clean'}\n"
        "source: WordNet 3.0 (Debian wordnet-base) verb synsets; train/val = the verb shift demo's gloss definitions, "
        "unlabeled/test = gloss definitions of other synsets "
        f"{f'with keyboard typos (each letter at rate {rate:g})' if rate else 'without typos (the control)'}; "
        f"label = lexicographer file (verb supersense)\nlabels:{labels}", encoding="utf-8")
    return counts


def build(name: str) -> Path:
    """The shift's folder, built once (a folder with its dataset.yaml is reused)."""
    if name not in SHIFTS:
        raise SystemExit(f"bench.da_shifts: unknown shift {name!r}; the shifts are {', '.join(SHIFTS)}")
    out = ROOT / name
    if (out / "dataset.yaml").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if name == "keywords_noise":
        counts = build_keywords_noise(out)
    elif name == "nouns_examples":
        from tlops.data.build_wordnet_shift import build as build_wordnet_shift

        counts = build_wordnet_shift(out, pos="noun", min_with_examples=90)
    elif name in ("verbs_typos", "verbs_clean"):
        counts = build_verbs_typos(out, rate=0.1 if name == "verbs_typos" else 0.0)
    else:
        counts = build_fashion(out, _noise if name == "fashion_noise" else _contrast)
    print(f"wrote {out}: {counts}", flush=True)
    return out


if __name__ == "__main__":
    for n in sys.argv[1:] or list(SHIFTS):
        build(n)
