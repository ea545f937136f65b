"""The speech-recognition CSV reader: normalised transcripts, train's alphabet, and every row problem named with its
file, line and value (empty transcript, characters train never shows, audio too short for its transcript, a missing
or undecodable file, a path outside the folder); a missing column is one DataError naming the file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tlops.data import load_dataset
from tlops.errors import DataError
from tlops.task_types import task_type


def _write(root: Path, rows: dict[str, list[tuple[str, str]]], seconds: float = 1.0) -> Path:
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    (root / "dataset.yaml").write_text("modality: audio\ntask: speech_recognition\n")
    for split, body in rows.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "text"])
            for path, text in body:
                if path.startswith("wav/") and "missing" not in path and not (root / path).exists():
                    sf.write(root / path, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
                w.writerow([path, text])
    return root


def test_transcripts_are_normalised_and_the_alphabet_is_trains(tmp_path):
    root = _write(tmp_path, {"train": [("wav/a.wav", "  One TWO "), ("wav/b.wav", "three\tone")],
                             "val": [("wav/c.wav", "two")], "test": [("wav/d.wav", "one  two")]})
    ds = load_dataset(root)
    assert ds.task == "speech_recognition" and ds.texts("train") == ["one two", "three one"] and ds.texts("test") == ["one two"]
    assert ds.alphabet == sorted(set("one two three one"))
    assert not ds.problems and task_type(ds.task).reader_checks(ds) == []
    assert ds.inputs("test") == [str(root / "wav/d.wav")] and ds.seconds("test") == [pytest.approx(1.0)]


def test_every_row_problem_is_a_failed_check_naming_file_line_and_value(tmp_path):
    (tmp_path / "wav").mkdir()
    (tmp_path / "wav/broken.wav").write_bytes(b"not a wav at all")
    root = _write(tmp_path, {
        "train": [("wav/a.wav", "one two"), ("wav/b.wav", "   "), ("wav/missing.wav", "one"), ("wav/broken.wav", "two"),
                  ("../outside.wav", "one")],
        "val": [("wav/c.wav", "one")],
        "test": [("wav/d.wav", "one, two!"), ("wav/e.wav", "one two one two one two one two one two one two one two one two")],
    })
    ds = load_dataset(root)
    checks = {c.rule: c for c in task_type(ds.task).reader_checks(ds)}
    train, test = str(root / "train.csv"), str(root / "test.csv")
    expect = {"speech CSV: empty transcript": (train, [3]), "speech CSV: audio file not found": (train, [4]),
              "speech CSV: audio file could not be decoded": (train, [5]),
              "speech CSV: audio path outside the dataset folder": (train, [6]),
              "speech CSV: transcript has characters train never shows": (test, [2]),
              "speech CSV: audio too short for its transcript": (test, [3])}
    assert set(checks) == set(expect), sorted(checks)
    for rule, (file, lines) in expect.items():
        c = checks[rule]
        assert (c.file, c.rows, c.success) == (file, lines, False) and c.values and c.fix, c
    assert "',!'" in checks["speech CSV: transcript has characters train never shows"].values[0]
    assert "1.00 s holds 50 CTC symbols" in checks["speech CSV: audio too short for its transcript"].values[0]


def test_a_missing_text_column_is_one_error_naming_the_file(tmp_path):
    root = _write(tmp_path, {"train": [("wav/a.wav", "one")], "val": [("wav/b.wav", "one")], "test": [("wav/c.wav", "one")]})
    (root / "test.csv").write_text("path,label\nwav/c.wav,one\n")
    with pytest.raises(DataError, match=r"test\.csv lacks column\(s\) \['text'\]"):
        load_dataset(root)


def test_init_recognises_a_speech_folder_and_writes_the_asr_starter(tmp_path):
    import yaml

    from tlops.config import load_config
    from tlops.init import init

    root = _write(tmp_path / "said", {"train": [(f"wav/t{i}.wav", ["one two", "two", "three one"][i % 3]) for i in range(8)],
                                      "test": [("wav/x.wav", "two one")]})
    (root / "dataset.yaml").unlink()  # recognised by its path,text CSV
    r = init(root, tmp_path / "said.yaml")
    assert r.starter == "audio_asr_linear_probe" and r.wrote_dataset_yaml and r.folder.task == "speech_recognition"
    assert yaml.safe_load((root / "dataset.yaml").read_text()) == {"modality": "audio", "task": "speech_recognition"}
    assert r.folder.rows == {"train": 7, "val": 1, "test": 1} and r.folder.counts["test"] == {"clips": 1, "words": 2}
    assert "transcribed clips (0.1 min of training audio; alphabet of 8 characters: space and 'ehnortw')" in r.folder.summary()
    cfg = load_config(tmp_path / "said.yaml")
    assert cfg.registry.metric == "wer" and cfg.strategy.name == "linear_probe" and cfg.strategy.head == "mlp"
    assert init(root, tmp_path / "ft.yaml", kind="finetune").starter == "audio_asr_finetune"
    (root / "dataset.yaml").unlink()
    (root / "train.csv").write_text("path,text,label\nwav/t0.wav,one,a\n")  # a label column: the classification contract
    assert task_type("speech_recognition").recognise(root) is None
