"""tlops.tuning: the search: section's parser and checks (each refusal names the file, the key's line and the fix), the
pruning path (Optuna's median and successive-halving pruners stopping a toy objective's bad trials on their per-epoch reports through the
loop's callback) and the best config written back as
the user wrote it. The SQLite study resumed after a SIGKILL is tests/flow/test_tune.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_config
from tlops.config import load_config
from tlops.errors import ConfigError
from tlops.tuning import (Param, Pruned, ReportToPruner, Study, best_config_text, check_space, new_study, parse_pruner,
                          parse_search, run_search, study_key, trial_config)

SPACE = """\
search:
  strategy.C: loguniform(1e-3, 10)
  strategy.max_iter: int(100, 500)
  strategy.head: [logreg, mlp]
  strategy.dropout: uniform(0, 0.5)
  strategy.hidden: choice(16, 32)
"""


def _config(tmp_path: Path, search: str) -> Path:
    cfg = tiny_config(tmp_path, tmp_path / "data", tmp_path / "bert")
    cfg["data"]["path"] = "data"  # relative: the written best config must keep it pointing at the same folder
    path = tmp_path / "cfg" / "tune.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False) + search)
    return path


def test_parser_reads_every_form_and_checks_each_value_against_the_config(tmp_path):
    path = _config(tmp_path, SPACE)
    cfg = load_config(path)
    params = parse_search(cfg.search, str(path), path.read_text())
    by_key = {p.key: p for p in params}
    assert by_key["strategy.C"] == Param("strategy.C", "float", 1e-3, 10, log=True, where=by_key["strategy.C"].where)
    assert by_key["strategy.max_iter"].kind == "int" and (by_key["strategy.max_iter"].low, by_key["strategy.max_iter"].high) == (100, 500)
    assert by_key["strategy.head"].choices == ("logreg", "mlp") and by_key["strategy.hidden"].choices == (16, 32)
    assert not by_key["strategy.dropout"].log and by_key["strategy.dropout"].high == 0.5
    lines = [int(p.where.split(" line ")[1].split()[0]) for p in params]
    assert lines == sorted(lines) and len(set(lines)) == 5  # each key's own line in the file
    check_space(cfg, params, str(path))
    trial = trial_config(cfg, {"strategy.C": 0.5, "strategy.head": "mlp"})
    assert (trial.strategy.C, trial.strategy.head, trial.search) == (0.5, "mlp", None)


@pytest.mark.parametrize("line, expect", [
    ("strategy.C: loguniform(0, 10)", "low must be > 0"),
    ("strategy.C: loguniform(10, 1)", "needs low < high"),
    ("strategy.C: lognormal(1, 2)", "is not a distribution"),
    ("strategy.C: uniform(1)", "takes two numbers"),
    ("strategy.max_iter: int(1.5, 8)", "takes whole numbers"),
    ("strategy.head: []", "empty list of choices"),
    ("registry.margin: uniform(0, 1)", "only strategy.* and backbone.* keys"),
    ("C: uniform(0, 1)", "dotted config key"),
    ("pruner: median", "names no key to tune"),
])
def test_a_bad_distribution_names_its_line_and_the_fix(tmp_path, line, expect):
    path = _config(tmp_path, "search:\n  " + line + "\n")
    cfg = load_config(path)
    with pytest.raises(ConfigError) as e:
        parse_search(cfg.search, str(path), path.read_text())
    n = len(path.read_text().splitlines())
    assert expect in str(e.value) and f"tune.yaml line {n} column 3" in str(e.value), str(e.value)


def test_the_pruner_option_is_read_refused_with_its_line_and_names_another_study(tmp_path):
    path = _config(tmp_path, "search:\n  strategy.C: loguniform(1e-3, 10)\n  pruner: successive_halving\n")
    cfg = load_config(path)
    assert parse_pruner(cfg.search, str(path), path.read_text()) == "successive_halving"
    assert [p.key for p in parse_search(cfg.search, str(path), path.read_text())] == ["strategy.C"]  # an option, not a key
    median = load_config(path, ["search.pruner=median"])
    assert parse_pruner(median.search) == "median" and parse_pruner({"strategy.C": "uniform(0, 1)"}) == "median"
    space = parse_search(cfg.search)
    assert study_key(cfg, space) != study_key(median, space)  # a resumed study keeps the pruner it ran with
    bad = _config(tmp_path / "bad", "search:\n  strategy.C: loguniform(1e-3, 10)\n  pruner: hyperband\n")
    with pytest.raises(ConfigError) as e:
        parse_pruner(load_config(bad).search, str(bad), bad.read_text())
    n = len(bad.read_text().splitlines())
    assert f"tune.yaml line {n} column 11: search.pruner: 'hyperband' is not a pruner" in str(e.value), str(e.value)
    assert "median, successive_halving" in str(e.value)


def test_a_value_the_config_refuses_is_caught_before_any_trial(tmp_path):
    for i, (line, expect) in enumerate([("strategy.max_iter: int(1, 50)", "includes 1"),  # max_iter >= 10
                         ("strategy.trainable: [0, 1]", "unknown key"),  # linear_probe has no trainable
                         ("strategy.head: [logreg, knn]", "includes 'knn'")]):
        path = _config(tmp_path / str(i), "search:\n  " + line + "\n")
        cfg = load_config(path)
        with pytest.raises(ConfigError) as e:
            check_space(cfg, parse_search(cfg.search, str(path), path.read_text()), str(path))
        n = len(path.read_text().splitlines())
        assert expect in str(e.value) and f"tune.yaml line {n} column 3: search." in str(e.value), str(e.value)


def _toy(trial, values, curves: dict, calls: list):
    """A loop's epochs: a trial's validation value rises with its `x` (better trials higher at every epoch)."""
    pruner = ReportToPruner(trial, "val_score")
    for epoch in range(6):
        calls.append((trial.number, epoch))
        pruner.on_epoch_end(None, {"epoch": epoch, "val_score": values["strategy.x"] * (epoch + 1) / 6})
    return values["strategy.x"]


def test_median_pruning_stops_trials_behind_the_median_at_the_same_epoch(tmp_path):
    st = Study(new_study(None, maximize=True, seed=0, trials=12), tmp_path, maximize=True, metric="score")  # in memory: the
    # SQLite study costs seconds here (the resume through it: tests/flow/test_tune.py)
    space = [Param("strategy.x", "float", 0.0, 1.0)]
    calls: list = []
    outcomes = run_search(st, space, 12, lambda t, v: _toy(t, v, {}, calls))
    states = [o.state for o in outcomes]
    assert len(outcomes) == 12 and states[:3] == ["complete"] * 3  # MedianPruner(n_startup_trials=3)
    pruned = [o for o in outcomes if o.state == "pruned"]
    assert pruned, states
    done = [o.value for o in outcomes if o.state == "complete"]
    # each pruned trial stopped after its second epoch or later (warm-up 1), below the median of the earlier trials then
    last_epoch = {o.number: max(e for n, e in calls if n == o.number) for o in pruned}
    assert all(1 <= last_epoch[o.number] < 5 and o.params["strategy.x"] < max(done) for o in pruned), (last_epoch, done)
    assert st.best.value == max(done)


def test_successive_halving_stops_trials_at_its_rungs_unless_in_the_top_quarter_there(tmp_path):
    st = Study(new_study(None, maximize=True, seed=0, trials=16, pruner="successive_halving"), tmp_path, maximize=True, metric="score")
    calls: list = []
    outcomes = run_search(st, [Param("strategy.x", "float", 0.0, 1.0)], 16, lambda t, v: _toy(t, v, {}, calls))
    assert len(outcomes) == 16 and outcomes[0].state == "complete"  # the first finished trial sets min_resource (1 epoch)
    pruned = [o for o in outcomes if o.state == "pruned"]
    assert len(pruned) >= 4, [o.state for o in outcomes]
    trials = {t.number: t for t in st.study.get_trials(deepcopy=False)}
    for o in pruned:  # (at least 4: asserted above) stopped at a rung (epoch index 1, then 4: reduction factor 4) ...
        last = max(e for n, e in calls if n == o.number)
        assert last in (1, 4), (o.number, last)
        rung = f"completed_rung_{0 if last == 1 else 1}"
        there = sorted((t.system_attrs[rung] for n, t in trials.items() if n <= o.number and rung in t.system_attrs), reverse=True)
        keep = there[max(1, len(there) // 4) - 1]  # ... where its value was below the top quarter of the trials that got there
        assert o.params["strategy.x"] * (last + 1) / 6 < keep, (o.number, there)
    done = [o for o in outcomes if o.state == "complete"]
    assert st.best.value == max(o.value for o in done) and len(calls) < 16 * 6


def test_a_pruned_exception_carries_its_epoch():
    p = Pruned(2, 0.25)
    assert (p.epoch, p.value) == (2, 0.25) and "epoch 3" in str(p)


def test_best_config_is_the_file_as_written_with_the_values_set_and_paths_still_right(tmp_path):
    path = _config(tmp_path, SPACE)
    out = tmp_path / "elsewhere" / "best.yaml"
    out.parent.mkdir()
    tree = yaml.safe_load(best_config_text(path, ["strategy.max_iter=200"], {"strategy.C": 0.25, "strategy.head": "mlp"}, out))
    assert "search" not in tree and tree["strategy"]["C"] == 0.25 and tree["strategy"]["head"] == "mlp"
    assert tree["strategy"]["max_iter"] == 200
    assert (out.parent / tree["data"]["path"]).resolve() == (path.parent / "data").resolve()
