"""`make data` (tlops/data/make_data.py) rebuilds only the demo sets whose files differ from what data.dvc records:
a second `make test` does not rebuild anything, a changed or missing set is rebuilt, and without the recorded file
list (a fresh clone) every set is."""

from __future__ import annotations

import json

from tlops.data import make_data
from tlops.data.versions import _object_path, dir_entries, dir_md5


def _sets(root):
    for name, rows in (("a", "x,1\n"), ("b", "y,2\n")):
        (root / name).mkdir(parents=True)
        (root / name / "train.csv").write_text("text,label\n" + rows)
    return root


def _record(data, cache):
    """What `dvc add data` leaves: the folder's `.dir` object (every file's md5) in the DVC cache."""
    entries = dir_entries(data)
    md5 = dir_md5(data, entries)
    obj = _object_path(cache, md5)
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_text(json.dumps(entries))
    return md5


def test_only_sets_that_differ_from_the_recorded_files_are_rebuilt(tmp_path):
    data, cache = _sets(tmp_path / "data"), tmp_path / "cache"
    md5 = _record(data, cache)
    recorded = make_data.recorded_entries(md5, cache)
    assert recorded == dir_entries(data)
    assert make_data.stale_sets(data, ["a", "b"], recorded) == []  # the second `make data`: nothing to build
    (data / "b" / "train.csv").write_text("text,label\ny,3\n")
    assert make_data.stale_sets(data, ["a", "b"], recorded) == ["b"]
    (data / "a" / "extra.csv").write_text("stray\n")
    assert make_data.stale_sets(data, ["a", "b"], recorded) == ["a", "b"]
    import shutil

    shutil.rmtree(data / "a")
    assert make_data.stale_sets(data, ["a"], recorded) == ["a"]
    # a fresh clone: the recorded version is not in this machine's DVC cache, so every set is built
    assert make_data.recorded_entries("0" * 32 + ".dir", cache) is None
    assert make_data.stale_sets(data, ["a", "b"], None) == ["a", "b"]


def test_every_demo_set_has_one_builder_module(tmp_path):
    import importlib.util

    assert len(set(make_data.BUILDERS.values())) == len(make_data.BUILDERS)
    for module in make_data.BUILDERS.values():
        assert importlib.util.find_spec(module) is not None, module


def test_an_unknown_set_is_refused_with_the_known_ones(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert make_data.main(["no_such_set"]) == 2
    err = capsys.readouterr().err
    assert "unknown demo set(s) no_such_set" in err and "text_wordnet" in err
