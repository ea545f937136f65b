"""The model card (tlops/model_card.py): every section present, user strings escaped, plots embedded as real
PNGs, strategy-specific record parts shown; and (slow) what a person sees in headless Chromium."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import pytest

from tlops.evaluate import classification_metrics, confusion_png, curves_png, per_class_report
from tlops.model_card import CardFacts, card_facts, png_data_uri, render_model_card
from tlops.records import (AdaptationSummary, CacheTotals, Candidate, Check, Evaluation, FeatureSet, FewShotReport, Gate, HeadResult,
                           LoopSummary, ShotScore, ValidationReport)

NASTY = "<b>&"  # a label that breaks a page that does not escape


def card_records(tmp_path: Path, *, with_extras: bool = True, epochs: int = 3) -> dict:
    """The records of a small run, made by the core's own evaluation functions (real plots, real report)."""
    labels = ["animal", NASTY, "vehicle"]
    y_true = ["animal"] * 4 + [NASTY] * 4 + ["vehicle"] * 4
    y_pred = ["animal"] * 3 + [NASTY] + [NASTY] * 4 + ["vehicle"] + ["animal"] * 3  # vehicle: the weakest class
    ev_dir = tmp_path / "eval"
    report_path = ev_dir / "classification_report.json"
    cm = confusion_png(y_true, y_pred, labels, ev_dir / "confusion_matrix.png")
    report_path.write_text(json.dumps(per_class_report(y_true, y_pred, labels)))
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "val_macro_f1": 0.5 + 0.1 * e} for e in range(epochs)]
    curves = curves_png(history, ev_dir / "learning_curves.png", [], "val_macro_f1")
    evaluation = Evaluation(metrics=classification_metrics(y_true, y_pred, labels), report_path=str(report_path),
                            plots=[str(p) for p in (cm, curves) if p is not None], n_test=len(y_true))
    features = FeatureSet(dir=str(tmp_path / "features"), splits=["train", "val", "test"], labels=labels, num_features=32,
                          identity={"kind": "hf", "name": "tiny-bert", "pooling": "mean"}, found_via="local folder",
                          cache=CacheTotals(hits=10, misses=26), seconds=1.25)
    extras = {}
    if with_extras:
        cand = Candidate(trade_off=0.3, best_epoch=2, criterion=0.41, val_metrics={"macro_f1": 0.8}, oracle_test_macro_f1=0.77)
        extras = {
            "loop": LoopSummary(best_epoch=2, epochs_run=3, stopped_early=False, device="cpu", precision="fp32",
                                checkpoint_dir="/tmp/scratch-ckpt", train_samples_per_s=123.4),
            "adaptation": AdaptationSummary(method="dann", mode="unsupervised", criterion="dev_risk", chosen=cand, candidates=[cand]),
            "few_shot": FewShotReport(split="test", queries=15, model=[ShotScore(ways=5, shots=1, episodes=200, accuracy=0.6123, ci95=0.01)],
                                      baselines={"protonet0": [ShotScore(ways=5, shots=1, episodes=200, accuracy=0.5012, ci95=0.012)]},
                                      support_classes=labels),
        }
    train = HeadResult(strategy="finetune", history=history, val_metrics={"macro_f1": 0.7}, seconds=12.5, head_path=str(tmp_path / "head.pt"),
                       spec={"kind": "linear"}, **extras)
    validation = ValidationReport(success=True, dataset=str(tmp_path / "data"), rows={"train": 42, "val": 12, "test": 12}, checks=[
        Check(split="train", file="train.csv", rule="labels_known", expectation="every label known", success=True, observed=NASTY, fix="-"),
        Check(split="test", file="test.csv", rule="no_empty_inputs", expectation="no empty text", success=True, fix="-")])
    gate = Gate(promoted=False, reason="challenger macro_f1=0.7 does not beat champion 0.8 + margin 0.0; champion unchanged",
                metric="macro_f1", challenger=evaluation.metrics["macro_f1"], champion_version="3", champion_metric=0.8,
                champion_scored_via="package on this run's test split", margin=0.0, version="4")
    facts = CardFacts(model_name="tiny-<text>", version="4", run_id="abc123", experiment="tests", modality="text",
                      dataset=str(tmp_path / "data"), data_version="0123456789abcdef0123456789abcdef.dir", rows={"train": 42, "val": 12, "test": 12},
                      git_commit="deadbeef", git_dirty=False, backbone="hf:tiny-bert",
                      settings={"strategy.epochs": "3", "strategy.lr": "2e-05"}, seed=0)
    return {"facts": facts, "features": features, "train": train, "evaluation": evaluation, "validation": validation, "gate": gate}


def _text(page: str) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S)))
    return " ".join(text.split())


def test_card_has_every_section_and_the_numbers(tmp_path):
    r = card_records(tmp_path)
    page = render_model_card(**r)
    for anchor in ("task", "data", "training", "metrics", "per-class", "confusion", "curves", "details", "gate", "use"):
        assert f'<section id="{anchor}">' in page, anchor
    text = _text(page)
    ev, gate = r["evaluation"], r["gate"]
    assert f"{ev.metrics['macro_f1']:.4f}" in text and f"{ev.metrics['accuracy']:.4f}" in text
    assert "data version 0123456789ab (DVC md5 of the folder: 0123456789abcdef0123456789abcdef.dir )" in text and "deadbeef" in text and "train 42, val 12, test 12" in text
    assert "2/2 checks passed" in text
    assert "not promoted" in text and gate.reason in text and "version 3: 0.8000" in text
    assert "tlops predict models:/tiny-<text>/4" in text
    assert "strategy.epochs=3" in text and "strategy.lr=2e-05" in text
    # per-class rows: the report's F1 of each class, the weakest named
    report = json.loads(Path(ev.report_path).read_text())
    for label in ("animal", NASTY, "vehicle"):
        assert f"{report[label]['f1-score']:.4f}" in text
    assert f"weakest class by F1: vehicle ({report['vehicle']['f1-score']:.4f})" in text
    assert "vehicle 1.0000 0.2500 0.4000 4 " in text  # support is a count
    # strategy-specific parts, generically: episodic accuracies with the baseline, the adaptation's chosen candidate
    assert "0.6123" in text and "protonet0" in text and "0.5012" in text and "dev_risk" in text and "0.4100" in text
    assert "/tmp/scratch-ckpt" not in text  # scratch paths are gone after the run: not shown


def test_card_escapes_user_strings(tmp_path):
    page = render_model_card(**card_records(tmp_path))
    assert NASTY not in page and "<text>" not in page  # never raw: not as a label, model name or check value
    assert html.escape(NASTY) in page and "tiny-&lt;text&gt;" in page


def test_card_embeds_its_plots_as_png(tmp_path):
    from PIL import Image

    r = card_records(tmp_path)
    page = render_model_card(**r)
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 2  # confusion matrix and learning curves
    for data in uris:
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        assert img.format == "PNG" and img.size[0] > 100
    assert not re.search(r'src="(?!data:)', page)  # nothing points at a file the run deletes


def test_card_without_optional_parts(tmp_path):
    """A 1-epoch fit, no strategy extras, written before the gate: its one point is still a curve; without any
    history row the card says no curve was drawn; nothing crashes."""
    r = card_records(tmp_path, with_extras=False, epochs=1)
    del r["gate"]
    page = render_model_card(**r)
    text = _text(page)
    assert "pending" in text and "no curve" not in text
    assert '<section id="details">' not in page
    assert len(re.findall(r"data:image/png", page)) == 2  # confusion matrix and the 1-point curve
    none = card_records(tmp_path / "none", with_extras=False, epochs=0)
    del none["gate"]
    assert "no curve was drawn (0 history row(s))" in _text(render_model_card(**none))


def test_card_facts_show_only_settings_that_apply(tmp_path, text_dataset):
    """A logistic-regression probe on text: its C and the text backbone's max_length, not an MLP's epochs or an image size."""
    from tests.helpers import tiny_config
    from tlops.config import config_from_dict

    cfg = config_from_dict(tiny_config(tmp_path, text_dataset, tmp_path / "bert"), "test")
    tags = {"data.dataset_md5": "m", "data.version_md5": "v.dir", "git.commit": "c", "git.dirty": "False"}
    facts = card_facts(cfg, run_id="r1", modality="text", task="classification", rows={"train": 42}, tags=tags)
    assert facts.settings["strategy.C"] == "1.0" and facts.settings["backbone.max_length"] == "32"
    assert not {"strategy.epochs", "strategy.hidden", "backbone.image_size", "backbone.clip_seconds"} & set(facts.settings)
    cfg.strategy.head = "mlp"  # an MLP probe on classes: no regression loss in its settings; on numbers: its loss
    mlp = lambda task: card_facts(cfg, run_id="r1", modality="text", task=task, rows={"train": 42}, tags=tags).settings  # noqa: E731
    assert "strategy.loss" not in mlp("classification") and mlp("regression")["strategy.loss"] == "mse"
    assert (facts.data_version, facts.git_commit, facts.git_dirty, facts.version) == ("v.dir", "c", False, None)


def test_card_shows_identity_as_lines_and_epochs_as_whole_numbers(tmp_path):
    """Issue 27 item 10: the backbone identity as `key: value` lines (not a JSON blob), nested keys dotted; an epoch
    stored as a float (0.0) shown as 0, not 0.0000; scores keep their 4 decimals."""
    r = card_records(tmp_path, with_extras=False)
    r["features"] = r["features"].model_copy(update={"identity": {"kind": "hf", "name": "tiny-<bert>", "files": {"model.safetensors": "ab12"},
                                                                  "layers": [1, 2]}})
    r["train"] = r["train"].model_copy(update={"history": [{"epoch": float(e), "train_loss": 0.5, "val_macro_f1": 0.25} for e in range(3)]})
    page = render_model_card(**r)
    training = page[page.index('<section id="training">'):page.index('<section id="metrics">')]
    assert "{" not in training and "&quot;kind&quot;" not in training  # no JSON
    assert "<code>kind</code>: hf<br><code>name</code>: tiny-&lt;bert&gt;<br><code>files.model.safetensors</code>: ab12" in training
    assert "<code>layers</code>: 1, 2" in training
    epochs = page[page.index("per-epoch history"):page.index('<section id="gate">')]
    assert "<td>0</td><td>0.5000</td><td>0.2500</td>" in epochs and "<td>2</td>" in epochs and "0.0000" not in epochs


def test_learning_curve_size_ticks_do_not_run_together(tmp_path, monkeypatch):
    """Issue 27 item 10: the log-scale training-rows panel labels the measured sizes (12, 25, ...), and no minor tick
    (3x10^1, 4x10^1, ...: they ran into each other); epoch panels keep whole-number ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    history = [{"epoch": float(e), "train_loss": 1 / (e + 1), "val_macro_f1": 0.5} for e in range(12)]
    sizes = [{"train_rows": n, "val_macro_f1": 0.5} for n in (12, 25, 50, 101, 203)]
    assert curves_png(history, tmp_path / "c.png", sizes, "val_macro_f1") is not None
    fig = figs[-1]
    fig.canvas.draw()
    *epoch_axes, size_ax = fig.axes
    assert [t.get_text() for t in size_ax.get_xticklabels()] == ["12", "25", "50", "101", "203"]
    assert not [t.get_text() for t in size_ax.xaxis.get_minorticklabels() if t.get_text()]
    for ax in epoch_axes:
        assert all(float(x).is_integer() for x in ax.get_xticks())
    plt.close("all")


def test_png_data_uri_refuses_other_files(tmp_path):
    bad = tmp_path / "plot.png"
    bad.write_text("not a png")
    with pytest.raises(ValueError, match="plot.png is not a PNG"):
        png_data_uri(bad)
