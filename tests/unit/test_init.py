"""`tlops init`: a starter config per modality that loads and passes validation on the folder it was written for,
limits scaled to the data, refusals that name the file and the fix, the shipped starters (and that they agree
with the demo configs), and config-relative paths. Regression folders (dataset.yaml `task: regression`) get the
ridge, fine-tuning, domain-adaptation and few-shot (MAML on `group:` tasks) starters. No flow run, no model:
init only writes names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.cli import cli
from tests.helpers import REPO, TEXTS, make_audio_dataset, make_image_dataset, make_text_dataset
from tlops.config import load_config
from tlops.errors import ConfigError, DataError, ValidationFailed
from tlops.init import init, starter_names
from tlops.pipeline import validate_step

MAKERS = {"text": make_text_dataset, "image": make_image_dataset, "audio": make_audio_dataset}


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_init_writes_a_config_that_loads_and_validates_its_folder(modality, tmp_path, monkeypatch):
    data = MAKERS[modality](tmp_path / "My Sounds_2024")
    if modality != "audio":  # text, image: init finds the modality from the columns and file types and writes dataset.yaml
        (data / "dataset.yaml").unlink()
    out = tmp_path / "configs" / "mine.yaml"
    r = init(data, out)
    assert r.starter == f"{modality}_linear_probe" and r.wrote_dataset_yaml == (modality != "audio")
    assert yaml.safe_load((data / "dataset.yaml").read_text())["modality"] == modality
    monkeypatch.chdir(tmp_path / "configs")  # neither the data's folder nor the config's parent's
    cfg = load_config(out)
    assert Path(cfg.data.path) == data.resolve()
    assert yaml.safe_load(out.read_text())["data"]["path"] == "../My Sounds_2024"  # written relative to the config
    demo = load_config(REPO / "configs" / f"{modality}_linear_probe.yaml")
    assert cfg.backbone == demo.backbone and cfg.strategy == demo.strategy
    assert cfg.registry.model_name == cfg.tracking.experiment == "my-sounds-2024"
    report = validate_step(cfg)  # raises ValidationFailed with the failed rules otherwise
    assert report.success and report.rows["train"] > 0


def test_min_per_class_is_scaled_to_the_smallest_class_after_the_val_carve(tmp_path):
    data = make_text_dataset(tmp_path / "small", n_train=14, with_val=False)  # 14 rows per class, 2 carved as val
    r = init(data, tmp_path / "small.yaml")
    assert r.folder.val_carved and set(r.folder.counts["train"].values()) == {12}
    assert r.validation["min_per_class"] == 6
    cfg = load_config(tmp_path / "small.yaml")
    assert validate_step(cfg).success
    demo_limit = load_config(tmp_path / "small.yaml", ["validation.min_per_class=20"])  # what a copied demo config said
    with pytest.raises(ValidationFailed, match="at least 20 training rows"):
        validate_step(demo_limit)
    text = (tmp_path / "small.yaml").read_text()
    assert "12 training rows after the val carve" in text and "min_per_class: 6\n" in text


def _few_shot_folder(root: Path, rows: int = 12) -> Path:
    """15 classes of distinct sentences: 5 meta-train classes, 5 novel val classes, 5 novel test classes."""
    root.mkdir(parents=True)
    classes = {"train": "ABCDE", "val": "FGHIJ", "test": "KLMNO"}
    for split, names in classes.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([f"sentence number {i} about the topic {c}", f"topic-{c}"] for c in names for i in range(rows))
    return root


def test_few_shot_layout_gets_the_fewshot_starter_with_episodes_that_fit(tmp_path):
    data = _few_shot_folder(tmp_path / "novel")
    r = init(data, tmp_path / "novel.yaml")
    assert r.starter == "text_fewshot" and r.folder.few_shot
    # test: 12 rows - 5 carved for the support set - 5 shots leaves 2 queries
    assert r.strategy_changes == {"queries": 2, "ways": 5}
    cfg = load_config(tmp_path / "novel.yaml")
    assert cfg.strategy.name == "protonet" and cfg.strategy.queries == 2 and cfg.registry.metric == "accuracy"
    assert validate_step(cfg).success
    with pytest.raises(DataError, match="few-shot layout"):
        init(data, tmp_path / "other.yaml", kind="linear_probe")


def test_refusals_name_the_file_and_the_fix_and_write_nothing(tmp_path):
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"notes/train\.csv is missing; found readme\.csv.*text,label"):
        init(empty, tmp_path / "c.yaml")
    with pytest.raises(DataError, match="is not a folder"):
        init(tmp_path / "nope", tmp_path / "c.yaml")

    odd = make_image_dataset(tmp_path / "odd", per_split=(2, 1, 1))
    (odd / "dataset.yaml").unlink()
    with open(odd / "train.csv", "a") as f:
        f.write("img/scan.pdf,blob\n")
    with pytest.raises(DataError, match=r"train\.csv line 8: path 'img/scan\.pdf' is neither an image"):
        init(odd, tmp_path / "c.yaml")
    (odd / "train.csv").write_text("file,label\nimg/a.png,blob\n")
    with pytest.raises(DataError, match=r"train\.csv line 1: no 'text' or 'path' column \(header: file, label\)"):
        init(odd, tmp_path / "c.yaml")
    assert not (tmp_path / "c.yaml").exists() and not (odd / "dataset.yaml").exists()

    text = make_text_dataset(tmp_path / "t")
    with pytest.raises(DataError, match="unlabeled.csv is missing"):
        init(text, tmp_path / "c.yaml", kind="domain_adapt")
    init(text, tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="exists; pass --out"):
        init(text, tmp_path / "c.yaml")


def test_starters_ship_in_the_package_and_agree_with_the_demo_configs():
    names = starter_names()
    kinds = ("linear_probe", "finetune", "domain_adapt", "fewshot", "regression", "fewshot_regression")
    own = {"text_ner_linear_probe", "text_ner_finetune", "text_qa_linear_probe", "text_qa_finetune"}  # task types' own files
    own |= {f"image_{t}_{k}" for t in ("detection", "segmentation") for k in ("linear_probe", "finetune")}
    own |= {"audio_asr_linear_probe", "audio_asr_finetune"}
    assert set(names) == {f"{m}_{k}" for m in ("text", "image", "audio") for k in kinds} | own
    from tlops.init import STARTERS

    for name in names:
        starter = yaml.safe_load(STARTERS.joinpath(f"{name}.yaml").read_text())
        modality, kind = name.split("_", 1)
        # few-shot regression has one demo (image): the others pair its strategy with their modality's regression backbone
        demos = {"backbone": f"{modality}_regression", "strategy": "image_fewshot_regression"} if kind == "fewshot_regression" \
            and not (REPO / "configs" / f"{name}.yaml").is_file() else {"backbone": name, "strategy": name}
        if name.endswith("_linear_probe") and not (REPO / "configs" / f"{name}.yaml").is_file():  # text_ner_probe's starter
            demos = {k: name.replace("_linear_probe", "_probe") for k in demos}
        for section, demo_name in demos.items():
            demo = yaml.safe_load((REPO / "configs" / f"{demo_name}.yaml").read_text())
            assert starter[section] == demo[section], f"starter {name} and configs/{demo_name}.yaml differ in {section}: change both"


def test_cli_init_and_list(tmp_path):
    make_text_dataset(tmp_path / "reviews")
    listed = cli("init", "--list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "text_linear_probe" in json.loads(listed.stdout)["starters"]
    made = cli("init", "reviews", "--strategy", "finetune", "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    got = json.loads(made.stdout)
    assert got["config"] == "reviews.yaml" and got["starter"] == "text_finetune" and got["classes"] == ["animal", "food", "vehicle"]
    assert load_config(tmp_path / "reviews.yaml").strategy.name == "finetune"
    bad = cli("init", "missing", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "missing is not a folder" in bad.stderr


def test_config_paths_resolve_against_the_config_file_and_set_against_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "project" / "configs").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    f = tmp_path / "project" / "configs" / "c.yaml"
    f.write_text(yaml.safe_dump({"data": {"path": "../data/set", "dvc_cache": "../dvc"}, "backbone": {"name": "hf:x"},
                                 "features": {"cache_dir": ".tlops/cache"}, "registry": {"model_name": "m"}}))
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(f)
    assert cfg.data.path == str(tmp_path / "project" / "data" / "set")
    assert cfg.data.dvc_cache == str(tmp_path / "project" / "dvc")
    assert cfg.features.cache_dir == ".tlops/cache"  # working state: the directory tlops runs in, as mlruns/
    typed = load_config(f, ["data.path=mine", "data.dvc_cache=/abs/cache"])
    assert typed.data.path == str(tmp_path / "elsewhere" / "mine") and typed.data.dvc_cache == "/abs/cache"


_DEPTH_YAML = """modality: text
name: wordnet-noun-depth
task: regression
target: depth
bounds: [1, 30]
"""


def _regression_folder(root: Path, rows=(40, 10, 15), with_val: bool = True) -> Path:
    """A folder laid out like the text regression demo (text,depth with dataset.yaml's target and bounds), built here so
    the unit tier needs no demo data."""
    root.mkdir(parents=True)
    start = 0
    for split, n in zip(("train", "val", "test"), rows):
        body = [(t, 1 + len(t.split()) % 30) for t in TEXTS[start : start + n]]
        start += n
        if split == "val" and not with_val:
            continue
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("text", "depth"), *body])
    (root / "dataset.yaml").write_text(_DEPTH_YAML, encoding="utf-8")
    return root


def _as_numbers(root: Path) -> Path:
    """A classification folder's labels replaced by varying numbers: a regression on the `label` column (the default target)."""
    for split in ("train", "val", "test"):
        with open(root / f"{split}.csv", newline="") as f:
            rows = list(csv.reader(f))
        for i, row in enumerate(rows[1:]):
            row[1] = f"{i * 0.5:g}"
        with open(root / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
    modality = yaml.safe_load((root / "dataset.yaml").read_text())["modality"]
    (root / "dataset.yaml").write_text(f"modality: {modality}\ntask: regression\n")
    return root


def test_regression_folder_gets_the_ridge_starter_that_loads_and_validates(tmp_path):
    data = _regression_folder(tmp_path / "depth")
    r = init(data, tmp_path / "depth.yaml")
    assert r.starter == "text_regression" and not r.wrote_dataset_yaml and r.folder.classes == []
    assert r.validation == {"min_chars": 3, "max_chars": 2000} and r.strategy_changes == {}
    cfg = load_config(tmp_path / "depth.yaml")
    demo = load_config(REPO / "configs" / "text_regression.yaml")
    assert cfg.backbone == demo.backbone and cfg.strategy == demo.strategy and cfg.strategy.head == "ridge"
    assert cfg.registry.metric == "mae"
    assert validate_step(cfg).success
    text = (tmp_path / "depth.yaml").read_text()
    assert "every row's 'depth' must be a finite number" in text and "within dataset.yaml's bounds [1, 30]" in text
    assert "min_per_class" not in text and "(lower is better)" in text

    carved = init(_regression_folder(tmp_path / "carved", with_val=False), tmp_path / "carved.yaml")
    assert carved.folder.val_carved and carved.folder.rows == {"train": 34, "val": 6, "test": 15}  # a plain 15% sample
    assert "after the val carve" in (tmp_path / "carved.yaml").read_text()
    assert validate_step(load_config(tmp_path / "carved.yaml")).success


def test_regression_finetune_and_domain_adapt_starters_change_what_reads_classes(tmp_path):
    data = _as_numbers(make_image_dataset(tmp_path / "sizes", per_split=(4, 2, 2)))
    train_paths = [row[0] for row in csv.reader(open(data / "train.csv"))][1:7]
    (data / "unlabeled.csv").write_text("path\n" + "".join(f"{p}\n" for p in train_paths))  # target-domain inputs: none of test's
    r = init(data, tmp_path / "da.yaml")  # unlabeled.csv: domain adaptation by default
    assert r.starter == "image_domain_adapt" and r.strategy_changes == {"selection": "dev"}  # im reads class probabilities
    cfg = load_config(tmp_path / "da.yaml")
    assert cfg.strategy.method == "adabn" and cfg.strategy.selection == "dev" and cfg.registry.metric == "mae"
    assert validate_step(cfg).success  # the config fits a regression dataset as a run checks it
    assert "selection: dev              # picks among them without target labels (DEV: importance-weighted source val error; " \
           "im needs class probabilities)" in (tmp_path / "da.yaml").read_text()

    r = init(data, tmp_path / "ft.yaml", kind="finetune")
    assert r.starter == "image_finetune" and r.strategy_changes == {"augment": False}
    cfg = load_config(tmp_path / "ft.yaml")
    assert cfg.strategy.name == "finetune" and cfg.strategy.augment is False and cfg.registry.metric == "mae"
    assert validate_step(cfg).success
    text = (tmp_path / "ft.yaml").read_text()
    assert "\n# validation: the defaults (file checks). Regression:" in text and "add `bounds: [lo, hi]`" in text


def _task_folder(root: Path, tasks: dict[str, tuple[str, int]]) -> Path:
    """Few-shot regression: split -> (task names, rows per task); target 'score' varies within each task."""
    root.mkdir(parents=True)
    for split, (names, rows) in tasks.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "item", "score"])
            w.writerows([f"view number {i} of the object {t}", t, i * 1.5] for t in names for i in range(rows))
    (root / "dataset.yaml").write_text("modality: text\ntask: regression\ntarget: score\ngroup: item\n")
    return root


def test_few_shot_regression_layout_gets_the_maml_starter_with_queries_that_fit(tmp_path):
    data = _task_folder(tmp_path / "poses", {"train": ("ABCDE", 12), "val": ("FG", 12), "test": ("HI", 10)})
    r = init(data, tmp_path / "poses.yaml")
    # test: 10 rows per task (one of them gives 5 to the support set) - 5 shots leaves 5 queries
    assert r.starter == "text_fewshot_regression" and r.strategy_changes == {"queries": 5}
    cfg = load_config(tmp_path / "poses.yaml")
    demo = load_config(REPO / "configs" / "image_fewshot_regression.yaml")
    assert cfg.strategy == demo.strategy.model_copy(update={"queries": 5}) and cfg.registry.metric == "mae"
    assert validate_step(cfg).success
    assert "5 tasks ('item')" in (tmp_path / "poses.yaml").read_text()
    assert init(data, tmp_path / "ridge.yaml", kind="linear_probe").starter == "text_regression"  # one ridge over all tasks

    one = _task_folder(tmp_path / "one", {"train": ("ABCDE", 12), "val": ("FG", 12), "test": ("H", 9)})
    with pytest.raises(DataError, match=r"one/test\.csv: its largest task has 4 rows once 5 rows of one task leave it"):
        init(one, tmp_path / "c.yaml")
    shared = _task_folder(tmp_path / "shared", {"train": ("ABCDE", 12), "val": ("FG", 12), "test": ("AH", 10)})
    with pytest.raises(DataError, match=r"shared/test\.csv shares 1 task\(s\) with train\.csv \('item' A\)"):
        init(shared, tmp_path / "c.yaml")
    (data / "val.csv").unlink()
    with pytest.raises(DataError, match=r"poses/val\.csv is missing; few-shot validation needs its own new tasks"):
        init(data, tmp_path / "c.yaml", kind="fewshot")
    assert not (tmp_path / "c.yaml").exists()


def test_regression_refusals_name_the_file_line_and_fix(tmp_path):
    words = make_text_dataset(tmp_path / "words")  # class names in the label column
    (words / "dataset.yaml").write_text("modality: text\ntask: regression\n")
    with pytest.raises(DataError, match=r"words/train\.csv line 2: 'label' is 'animal', not a finite number; .*write a number "
                                        r"\(e\.g\. 3\.5\).*remove `task: regression`"):
        init(words, tmp_path / "c.yaml")

    numbers = _as_numbers(make_text_dataset(tmp_path / "numbers"))
    lines = (numbers / "test.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",inf"
    (numbers / "test.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"numbers/test\.csv line 4: 'label' is 'inf', not a finite number"):
        init(numbers, tmp_path / "c.yaml")

    same = _as_numbers(make_text_dataset(tmp_path / "same"))
    rows = [r[:1] + ["3"] for r in csv.reader(open(same / "train.csv"))][1:]
    with open(same / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([["text", "label"], *rows])
    with pytest.raises(DataError, match=r"same/train\.csv: every training row has 'label' 3; a regressor needs targets that vary"):
        init(same, tmp_path / "c.yaml")

    depth = _regression_folder(tmp_path / "depth")
    (depth / "dataset.yaml").write_text("modality: text\ntask: regression\ntarget: size\n")
    with pytest.raises(DataError, match=r"depth/train\.csv line 1: no 'size' column \(header: text, depth\); name the column of "
                                        r"numbers 'size' \(dataset.yaml `target:`\)"):
        init(depth, tmp_path / "c.yaml")
    (depth / "dataset.yaml").write_text("modality: text\ntask: regression\ntarget: depth\ngroup: item\n")
    with pytest.raises(DataError, match=r"depth/train\.csv line 1: columns \['text', 'depth'\]; the text layout needs "
                                        r"text,depth,item \(dataset.yaml `group: item` names the task column\)"):
        init(depth, tmp_path / "c.yaml")
    (depth / "dataset.yaml").write_text("modality: text\ntask: regression\ntarget: depth\n")
    with pytest.raises(DataError, match=r"depth/dataset\.yaml names no `group:` column; few-shot regression learns from tasks"):
        init(depth, tmp_path / "c.yaml", kind="fewshot")
    with pytest.raises(DataError, match="unlabeled.csv is missing"):
        init(depth, tmp_path / "c.yaml", kind="domain_adapt")
    assert not (tmp_path / "c.yaml").exists()


def test_cli_init_on_a_regression_folder(tmp_path):
    _regression_folder(tmp_path / "depth")
    made = cli("init", "depth", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "depth: text, regression on 'depth' (train " in made.stdout and "smallest class" not in made.stdout
    assert "wrote depth.yaml from starter text_regression" in made.stdout


def test_init_applies_validations_label_rules_before_counting_classes(tmp_path):
    """'apache ' beside 'apache' used to count as two classes (and set min_per_class from the bogus one)."""
    for bad, match in ((" noun", r"train\.csv line 2: label 'animal ' has surrounding whitespace or is empty, which validation refuses"),
                       ("case", r"test\.csv line \d+: label 'ANIMAL' differs only by case from 'animal' \(.*train\.csv line 2\)")):
        data = make_text_dataset(tmp_path / bad.strip())
        if bad == "case":
            (data / "test.csv").write_text((data / "test.csv").read_text().replace(",animal\n", ",ANIMAL\n", 1))
        else:
            (data / "train.csv").write_text((data / "train.csv").read_text().replace(",animal\n", ",animal \n", 1))
        with pytest.raises(DataError, match=match):
            init(data, tmp_path / "c.yaml")
        assert not (tmp_path / "c.yaml").exists()


# ---- task types with their own files: CoNLL/JSON lines (token classification), SQuAD JSON (extractive QA) ----

NER_TRAIN = [(["Alan", "Turing", "visited", "Rome", "."], ["B-PER", "I-PER", "O", "B-LOC", "O"]),
             (["Ada", "Lovelace", "wrote", "in", "London"], ["B-PER", "I-PER", "O", "O", "B-LOC"])] * 6
NER_TEST = [(["Grace", "Hopper", "left", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"])]


def _ner_folder(root: Path) -> Path:
    root.mkdir()
    (root / "train.conll").write_text("".join(f"{t} {g}\n" for tokens, tags in NER_TRAIN for t, g in zip(tokens, tags))
                                      .replace(". O\n", ". O\n\n").replace("London B-LOC\n", "London B-LOC\n\n"))
    (root / "test.conll").write_text("".join(f"{t} {g}\n" for t, g in zip(*NER_TEST[0])) + "\n")
    return root


def _qa_folder(root: Path, n_articles: int = 6) -> Path:
    root.mkdir()

    def doc(arts):
        return json.dumps({"version": "1.1", "data": [{"title": t, "paragraphs": [{"context": c, "qas": [
            {"id": f"{t}-q", "question": "Which number?", "answers": [{"text": a, "answer_start": c.index(a)}]}]}]}
            for t, c, a in arts]})

    (root / "train.json").write_text(doc([(f"T{i}", f"Context number {i} is here.", str(i)) for i in range(n_articles)]))
    (root / "test.json").write_text(doc([("Rome", "Rome is a city in Italy.", "Rome")]))
    return root


def test_init_recognises_a_conll_folder_and_writes_the_ner_starter_with_its_task(tmp_path):
    data = _ner_folder(tmp_path / "people")
    r = init(data, tmp_path / "people.yaml")
    assert r.starter == "text_ner_linear_probe" and r.wrote_dataset_yaml and r.folder.task == "token_classification"
    assert yaml.safe_load((data / "dataset.yaml").read_text()) == {"modality": "text", "task": "token_classification"}
    assert r.folder.counts["train"] == {"PER": 10, "LOC": 10}  # the val carve took 2 of 12 sentences
    assert r.folder.rows == {"train": 10, "val": 2, "test": 1} and r.folder.classes == []
    assert "entities of 2 types (LOC, PER; IOB2 tags)" in r.folder.summary()
    cfg = load_config(tmp_path / "people.yaml")
    assert cfg.strategy.name == "linear_probe" and cfg.registry.metric == "f1"
    assert cfg.strategy == load_config(REPO / "configs" / "text_ner_probe.yaml").strategy
    assert init(data, tmp_path / "ft.yaml", kind="finetune").starter == "text_ner_finetune"
    with pytest.raises(ConfigError, match="'fewshot' does not train token classification; starters for it: finetune, linear_probe"):
        init(data, tmp_path / "few.yaml", kind="fewshot")
    assert not (tmp_path / "few.yaml").exists()


def test_init_recognises_a_squad_folder_and_defaults_to_fine_tuning(tmp_path):
    data = _qa_folder(tmp_path / "faq")
    r = init(data, tmp_path / "faq.yaml")
    assert r.starter == "text_qa_finetune" and r.folder.task == "extractive_qa"  # the frozen probe trails the lexical baseline
    assert yaml.safe_load((data / "dataset.yaml").read_text())["task"] == "extractive_qa"
    assert r.folder.rows["test"] == 1 and r.folder.val_carved and r.folder.counts["test"] == {"answerable": 1}
    cfg = load_config(tmp_path / "faq.yaml")
    assert cfg.strategy == load_config(REPO / "configs" / "text_qa_finetune.yaml").strategy
    assert init(data, tmp_path / "probe.yaml", kind="linear_probe").starter == "text_qa_linear_probe"


def test_init_on_a_bad_conll_file_names_the_file_line_and_fix_and_writes_nothing(tmp_path):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "train.conll").write_text("John B-PER\nlives I-LOC\n\n")
    (data / "test.conll").write_text("a O\n")
    with pytest.raises(DataError, match=r"train\.conll line 2: .*'I-LOC' continues an entity, but it follows 'B-PER'; start the entity "
                                        r"with 'B-LOC'"):
        init(data, tmp_path / "bad.yaml")
    assert sorted(p.name for p in data.iterdir()) == ["test.conll", "train.conll"] and not (tmp_path / "bad.yaml").exists()
