"""`tlops describe DATA_DIR`: rows per split and class, text lengths, duplicates within and across splits, inputs
with two labels and examples per class, with markup-looking labels and texts printed as written (issue 27, "Build")."""

from __future__ import annotations

import json
import os

from tests.cli import cli

WIDE = {**os.environ, "COLUMNS": "250"}


def _folder(tmp_path):
    d = tmp_path / "data [b]"
    d.mkdir()
    (d / "train.csv").write_text("text,label\n"
                                 "a cat [/bold] sat,[red]\n"
                                 "a dog ran,animal\n"
                                 "a dog ran,animal\n"          # repeated within train (and so is the next pair)
                                 "the same words,animal\n"
                                 "the same words,[red]\n"      # one input, two labels
                                 "bread and jam,food\n")
    (d / "test.csv").write_text("text,label\n"
                                "a dog ran,animal\n"           # also in train
                                "soup,food\n")
    return d


def test_describe_counts_rows_lengths_duplicates_and_conflicts(tmp_path):
    d = _folder(tmp_path)
    r = cli("describe", str(d), "--json", env=WIDE)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["modality"] == "text" and got["task"] == "classification" and got["input"] == "text"
    assert got["classes"] == {"[red]": {"train": 2}, "animal": {"train": 3, "test": 1}, "food": {"train": 1, "test": 1}}
    assert got["splits"]["train"] == {"rows": 6, "chars": {"min": 9, "median": 13.5, "max": 17}, "duplicate_rows": 2}
    assert got["splits"]["test"]["rows"] == 2 and got["splits"]["test"]["duplicate_rows"] == 0
    assert got["duplicates"] == {"train&test": 1}
    assert got["conflicting_labels"] == [{"input": "the same words", "labels": ["[red]", "animal"]}]
    assert got["examples"]["animal"] == ["a dog ran", "a dog ran", "the same words"]


def test_describe_prints_user_text_as_written(tmp_path):
    d = _folder(tmp_path)
    r = cli("describe", str(d), "--examples", "1", env=WIDE)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    for written in ("data [b]", "[red]", "a cat [/bold] sat", "train and test 1", "one input, labels '[red]', 'animal'"):
        assert written in r.stdout, (written, r.stdout)


def test_describe_names_a_folder_without_the_csv_layout(tmp_path):
    (tmp_path / "ner").mkdir()
    (tmp_path / "ner" / "train.conll").write_text("Ana B-PER\n")
    r = cli("describe", str(tmp_path / "ner"))
    assert r.returncode == 1 and "train.csv is missing (the folder holds train.conll)" in r.stderr, r.stderr
    missing = cli("describe", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "is not a folder" in missing.stderr, missing.stderr


def test_describe_reads_image_sizes_and_audio_seconds_and_finds_a_copied_file(tmp_path):
    import shutil

    from tests.helpers import make_audio_dataset, make_image_dataset

    images = make_image_dataset(tmp_path / "images")
    first = (images / "train.csv").read_text().splitlines()[1]  # path,label of one training image
    copy = images / "copy-of-a-train-image.png"
    shutil.copy(images / first.split(",")[0], copy)
    (images / "test.csv").write_text((images / "test.csv").read_text() + f"{copy.name},{first.split(',')[1]}\n")
    got = json.loads(cli("describe", str(images), "--json").stdout.strip().splitlines()[-1])
    assert got["modality"] == "image" and got["splits"]["train"]["sizes"] == {"28x28": 24}, got["splits"]
    assert got["duplicates"] == {"train&test": 1} and got["unreadable"] == []  # the same bytes under another name
    audio = json.loads(cli("describe", str(make_audio_dataset(tmp_path / "audio")), "--json").stdout.strip().splitlines()[-1])
    assert audio["modality"] == "audio" and audio["splits"]["train"]["seconds"]["min"] > 0 and audio["splits"]["train"]["sample_rates"]


def test_describe_counts_entities_of_a_token_classification_folder(tmp_path):
    d = tmp_path / "ner"
    d.mkdir()
    (d / "dataset.yaml").write_text("modality: text\ntask: token_classification\n")
    (d / "train.conll").write_text("-DOCSTART- O\n\nAna B-PER\nvisited O\nNew B-LOC\nYork I-LOC\n\n"
                                   "[/b] B-ORG\nhired O\nAna B-PER\n\nAna B-PER\nvisited O\nNew B-LOC\nYork I-LOC\n")
    (d / "test.jsonl").write_text('{"tokens": ["Rome", "is", "old"], "tags": ["S-LOC", "O", "O"]}\n'
                                  '{"tokens": ["[/b]", "hired", "Ana"], "tags": ["B-ORG", "O", "B-PER"]}\n')
    got = json.loads(cli("describe", str(d), "--json").stdout.strip().splitlines()[-1])
    assert got["task"] == "token_classification" and got["splits"]["train"]["rows"] == 3 and got["splits"]["train"]["tokens"] == 11
    assert got["splits"]["train"]["duplicate_rows"] == 1 and got["duplicates"] == {"train&test": 1}
    assert got["classes"] == {"LOC": {"train": 2, "test": 1}, "ORG": {"train": 1, "test": 1}, "PER": {"train": 3, "test": 1}}
    assert got["examples"] == {"LOC": ["New York"], "ORG": ["[/b]"], "PER": ["Ana"]}
    table = cli("describe", str(d), env=WIDE)
    assert table.returncode == 0 and "[/b]" in table.stdout and "sentences train 3, test 2" in table.stdout, table.stdout + table.stderr


def test_describe_counts_questions_of_an_extractive_qa_folder(tmp_path):
    d = tmp_path / "qa"
    d.mkdir()
    (d / "dataset.yaml").write_text("modality: text\ntask: extractive_qa\n")
    squad = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "Ana lives in [red] Rome.", "qas": [
        {"id": "1", "question": "Where does [/b] Ana live?", "answers": [{"text": "[red] Rome", "answer_start": 13}]},
        {"id": "2", "question": "Who is Bob?", "answers": [], "is_impossible": True}]}]}]}
    (d / "train.json").write_text(json.dumps(squad))
    (d / "test.json").write_text(json.dumps(squad))
    got = json.loads(cli("describe", str(d), "--json").stdout.strip().splitlines()[-1])
    assert got["splits"]["train"] == {"rows": 2, "unanswerable": 1, "contexts": 1, "context_chars": {"min": 24, "median": 24, "max": 24},
                                      "question_chars": {"min": 11, "median": 18.0, "max": 25}, "duplicate_rows": 0}
    assert got["classes"] == {"answerable": {"train": 1, "test": 1}, "unanswerable": {"train": 1, "test": 1}}
    assert got["duplicates"] == {"train&test": 2}
    assert got["examples"]["questions"][0] == {"question": "Where does [/b] Ana live?", "answer": "[red] Rome"}
    table = cli("describe", str(d), env=WIDE)
    assert table.returncode == 0 and "Where does [/b] Ana live?" in table.stdout and "[red] Rome" in table.stdout, table.stdout
    (d / "train.json").write_text('{"data": [{"title": "t"}]}')
    bad = cli("describe", str(d))
    assert bad.returncode == 1 and "train.json: not SQuAD JSON" in bad.stderr, bad.stderr
