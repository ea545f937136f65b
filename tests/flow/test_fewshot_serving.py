"""Few-shot serving (issue 12): a registered meta-transfer model adapts to a support set given at predict time
(new classes, no retraining, no new version), through `tlops predict --support` (a fresh process:
tests/system/test_fresh_process.py); bad support sets and bad inputs (issue 14: blank, NUL) give one clear line.

The model is the zoo's Meta-SGD model (tests/zoo.py), meta-trained on the tiny random-weight BERT (a code path, NOT
a pretrained model) by the core pipeline, then logged and registered by the pipeline's own register task."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch

from tests.helpers import tiny_config
from tests.cli import cli
from tlops.config import RunConfig
from tlops.errors import DataError

NAME = "tiny-fewshot-serving"


# classes the model never saw (its meta-training, val and test topics are animals, food, vehicles, instruments, plants)
NEW = {"kettle": "kettle", "volcano": "volcano", "lantern": "lantern"}


PLACES = ["river", "market", "garden", "station", "harbor", "forest"]


def _support_rows(shots: int = 3) -> list[dict]:
    return [{"text": f"a {w} seen near the {PLACES[i]}", "label": label} for label, w in NEW.items() for i in range(shots)]


QUERIES = [(f"a {w} seen near the {p}", label) for label, w in NEW.items() for p in PLACES[3:]]


def test_the_package_holds_what_adapting_needs_and_reproduces_the_registered_head(zoo):
    """Re-adapting to the packaged support set from the packaged encoder + alphas gives the registered head."""
    from tlops.package import Predictor

    core = zoo.fewshot.results[0]
    p = Predictor(core.package)
    few = p.meta["few_shot"]
    assert few["algorithm"] == "meta_sgd" and few["inner_steps"] == 2 and few["support_labels"] == p.labels
    assert any(k.startswith("alpha.") for k in p.few_shot.learner.state_dict()), "Meta-SGD's alphas are packaged"
    x, y = p.few_shot.registered_support()
    assert len(x) == 5 * 5 and sorted(set(y.tolist())) == list(range(5))  # 5 carved support rows per test class
    again = p.few_shot.head(x, y, len(p.labels)).state_dict()
    for k, v in p.head.state_dict().items():
        assert torch.allclose(again[k], v, atol=1e-5), k
    # issue 30: the package records the candidates and its choice on the registered support set, and `head` above chose
    # the same way (it reproduced the registered head); a new support set is chosen for again, on its own rows
    from tlops.selection_record import SelectionRecord

    record = SelectionRecord.load(p.root / "selection.json")
    assert record.family == "meta_transfer" and record.chosen in [c.name for c in record.candidates]
    assert set(p.predict([q for q, _ in QUERIES], support=p.support(_support_rows()))) <= set(NEW)
    new = SelectionRecord.model_validate(p.few_shot.last_selection)
    assert new.criterion == "support_loo_accuracy, credibility-scaled, with the validation favourite as prior" and new.chosen in [c.name for c in new.candidates]
    assert "on the 9 support rows" in new.why and "3 folds" in new.why, new.why  # 3 new classes x 3 rows
    # the alphas were meta-learned: no longer all at inner_lr
    alphas = torch.cat([a.flatten() for a in p.few_shot.learner.alpha.values()])
    assert not torch.allclose(alphas, torch.full_like(alphas, 0.05))


def _write_support_csv(path, rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_tlops_predict_with_a_support_csv(zoo, tmp_path):
    from tlops.support_set import support_rows_from_csv

    uri, tmp = zoo.fewshot.uri, tmp_path
    good, bad = tmp / "support.csv", tmp / "bad-support.csv"
    _write_support_csv(good, _support_rows())
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    ok = cli("predict", f"models:/{NAME}@champion", *[q for q, _ in QUERIES[:3]], "--support", str(good), "--proba", "--json", env=env)
    assert ok.returncode == 0, ok.stderr[-2000:]
    rows = json.loads(ok.stdout.strip().splitlines()[-1])["predictions"]
    assert [r["label"] for r in rows] == [label for _, label in QUERIES[:3]] and set(rows[0]["proba"]) == set(NEW)
    # the command reads the CSV with this function before loading the model 
    _write_support_csv(bad, _support_rows()[:4] + [{"text": "a lantern\nnear the sea", "label": "lantern"}, {"text": "", "label": "lantern"}])
    with pytest.raises(DataError, match=f"{bad} line 8 is empty or only whitespace"):  # the quoted row spans lines 6-7
        support_rows_from_csv(bad)
    (tmp / "layout.csv").write_text("text,category\na kettle,kettle\n")
    with pytest.raises(DataError, match=r"has columns \['text', 'category'\]; a support CSV has 'label' and one of 'text'"):
        support_rows_from_csv(tmp / "layout.csv")
    (tmp / "header-only.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="has a header but no rows"):
        support_rows_from_csv(tmp / "header-only.csv")


def test_predict_refuses_blank_and_nul_inputs_and_support_sets_for_every_model(tmp_path, text_dataset, tiny_bert):
    """A linear probe (not meta-trained): blank and NUL inputs are refused too, and a support set is refused with the reason."""
    from tlops.package import Predictor
    from tlops.pipeline import run_core

    core = run_core(RunConfig.model_validate(tiny_config(tmp_path, text_dataset, tiny_bert)), tmp_path / "work")
    p = Predictor(core.package)
    assert len(p.predict(["a small dog that barks at the moon"])) == 1
    for items, message in ((["ok", "\t "], r"input row 2 is empty or only whitespace \('\\t '\)"), (["a\x00b"], "input row 1 holds a NUL byte"),
                           (["ok", None], r"input row 2 is missing \(None\)"), ([float("nan")], r"input row 1 is missing \(nan\)")):
        with pytest.raises(DataError, match=message):
            p.predict(items)
    with pytest.raises(DataError, match="strategy linear_probe. was not meta-trained, so it cannot adapt to a support set"):
        p.support(_support_rows())
    assert np.allclose(p.predict_proba(["a red car parked by the sea"]).sum(1), 1.0)


def test_support_rows_of_the_wrong_modality_are_refused_by_row():
    from tlops.support_set import support_from_rows

    both = [{"text": "a", "path": "a.png", "label": "x"}]
    with pytest.raises(DataError, match=r"support row 1 has both 'text' and 'path'; give only 'path' \(this is an image model\)"):
        support_from_rows(both, "image")
    texts = [{"text": "a beep", "label": "x"}, {"text": "a hiss", "label": "y"}]
    with pytest.raises(DataError, match=r"support row 1 gives 'text' but this is an audio model: its support rows need 'path' \(audio file"):
        support_from_rows(texts, "audio")
    s = support_from_rows([{"path": "b.wav", "label": " y "}, {"path": "a.wav", "label": "x"}], "audio")
    assert s.classes() == ["x", "y"] and s.labels == ("y", "x")  # labels stripped like training's; classes sorted
