"""Speech-recognition datasets: dataset.yaml (`modality: audio`, `task: speech_recognition`) and per split a CSV with
columns `path,text` (`train.csv`, optional `val.csv` (else a seeded 15% of train's rows), `test.csv`): `path` an audio
file inside the dataset folder (any format libsndfile reads), `text` its transcript, normalised by
`tlops.asr.text.normalise` (NFC, lower case, whitespace runs -> one space).

The CSV's structure (header, quoting) is read by the same reader as every tlops CSV; each row's problems are then
collected, all at once, each with the file, line, value and fix (`Problem`): an empty transcript, a missing or
undecodable audio file or one outside the folder, a transcript with characters outside train's alphabet (val/test: the
model could never write them), and audio too short for its transcript (CTC emits `SLOTS_PER_SECOND` symbols a second at
least, one per character plus a blank between equal neighbours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tlops.asr.text import (
    SLOTS_PER_SECOND,
    alphabet_of,
    ctc_slots_needed,
    normalise,
    outside,
)

SPLITS = ("train", "val", "test")
COLUMNS = ["path", "text"]


@dataclass(frozen=True)
class Problem:
    split: str
    file: str
    line: int
    rule: str
    value: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.rule} ({self.value}); {self.fix}"


def audio_seconds(path: Path) -> float:
    """The clip's duration from its header (no decoding); raises on a file libsndfile cannot read."""
    import soundfile as sf

    info = sf.info(str(path))
    if info.frames <= 0 or info.samplerate <= 0:
        raise ValueError("no audio frames")
    return info.frames / info.samplerate


def read_splits(root: Path, seed: int = 0, val_fraction: float = 0.15):
    """(frames by split with columns path, text (normalised), seconds, line; carved: val came from train; problems).
    Structural CSV errors (a missing file or column, a broken quote) raise DataError naming the file and line."""
    import numpy as np
    import pandas as pd

    from tlops.data.dataset import _read_csv, csv_line
    from tlops.errors import DataError

    root = Path(root)
    raw = {}
    for split in ("train", "test"):
        f = root / f"{split}.csv"
        if not f.is_file():
            raise DataError(f"{f} is missing; a speech-recognition dataset needs {split}.csv with columns path,text "
                            "(an audio file inside the folder, its transcript)")
        raw[split] = _read_csv(f, COLUMNS)
    carved = not (root / "val.csv").is_file()
    if not carved:
        raw["val"] = _read_csv(root / "val.csv", COLUMNS)
    frames, problems = {}, []
    for split, df in raw.items():
        file = df.attrs["source"]
        rows = []
        for i, (path, text) in enumerate(zip(df["path"], df["text"])):
            line = csv_line(df, i)
            rows.append(_row(split, file, line, root, path, text, problems))
        frames[split] = pd.DataFrame(rows, columns=["path", "text", "seconds", "line"])
        frames[split].attrs["source"] = file
    if carved:
        train = frames["train"]
        rng = np.random.default_rng(seed)
        n = int(round(len(train) * val_fraction)) if len(train) > 1 else 0
        val_idx = sorted(rng.choice(len(train), size=n, replace=False).tolist()) if n else []
        frames["val"] = train.iloc[val_idx].reset_index(drop=True)
        frames["train"] = train.drop(index=val_idx).reset_index(drop=True)
        for s in ("train", "val"):
            frames[s].attrs["source"] = train.attrs["source"]
    alphabet = alphabet_of(t for t in frames["train"]["text"])
    for split in ("val", "test"):
        df = frames[split]
        for text, line in zip(df["text"], df["line"]):
            odd = outside(text, alphabet)
            if odd and text:
                problems.append(Problem(split, df.attrs["source"], int(line), "transcript has characters train never shows",
                                        f"{''.join(odd)!r} in {text[:60]!r}",
                                        "the model writes only train's characters: add train rows that use them, or respell "
                                        "the transcript with train's alphabet"))
    for split in SPLITS:
        if len(frames[split]) == 0:
            where = frames[split].attrs.get("source", f"{split}.csv")
            problems.append(Problem(split, where, 1, "split has no rows", "0 rows",
                                    "add rows path,text" if not (split == "val" and carved) else
                                    "val is carved from train (15%) and train is too small: add a val.csv, or more train rows"))
    return frames, carved, alphabet, problems


def _row(split: str, file: str, line: int, root: Path, path: str, text: str, problems: list) -> tuple:
    norm = normalise(text)
    seconds = float("nan")
    if not norm:
        problems.append(Problem(split, file, line, "empty transcript", repr(text),
                                "give the row the words spoken in its clip, or remove the row"))
    p = Path(path)
    full = (root / p).resolve()
    if not path.strip():
        problems.append(Problem(split, file, line, "empty audio path", repr(path), "give the clip's path relative to the dataset folder"))
    elif p.is_absolute() or root.resolve() not in full.parents:
        problems.append(Problem(split, file, line, "audio path outside the dataset folder", repr(path),
                                "copy the clip into the dataset folder and give its relative path"))
    elif not full.is_file():
        problems.append(Problem(split, file, line, "audio file not found", repr(path),
                                "fix the path (relative to the dataset folder) or remove the row"))
    else:
        try:
            seconds = audio_seconds(full)
        except Exception as e:  # libsndfile's reason, named
            problems.append(Problem(split, file, line, "audio file could not be decoded", f"{path!r}: {str(e)[:80]}",
                                    "replace it with a WAV/FLAC/OGG file or remove the row"))
    if norm and math.isfinite(seconds):
        need, have = ctc_slots_needed(norm), int(SLOTS_PER_SECOND * seconds)
        if need > have:
            problems.append(Problem(split, file, line, "audio too short for its transcript",
                                    f"{seconds:.2f} s holds {have} CTC symbols, {norm[:60]!r} needs {need}",
                                    f"check the transcript belongs to this clip; CTC emits {SLOTS_PER_SECOND} symbols a second, "
                                    f"so this transcript needs at least {need / SLOTS_PER_SECOND:.2f} s of audio"))
    return (path, norm, seconds, line)
