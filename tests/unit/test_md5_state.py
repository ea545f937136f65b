"""The md5 memory (`tlops.data.md5_state`): unchanged files are not read again, any change of size, mtime or inode
is hashed afresh, a file written in the last seconds is never remembered, and a memory that cannot be used only
costs speed."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time

import pytest

from tlops.data import md5_state
from tlops.data.versions import dir_md5


@pytest.fixture
def state(tmp_path, monkeypatch):
    db = tmp_path / "state" / "md5.sqlite"
    monkeypatch.setenv(md5_state.STATE_ENV, str(db))
    return db


def _old(path, content: bytes, age_s: float = 60) -> None:
    path.write_bytes(content)
    t = time.time() - age_s
    os.utime(path, (t, t))


def _forge(db, path, md5: str) -> None:
    with sqlite3.connect(db) as c:
        c.execute("UPDATE md5 SET md5 = ? WHERE path = ?", (md5, str(path)))


def test_unchanged_files_come_from_the_memory_and_changed_ones_are_hashed_again(tmp_path, state):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    a, b = data / "a.csv", data / "sub" / "b.csv"
    _old(a, b"text,label\nhello,x\n")
    _old(b, b"0123456789")
    assert md5_state.remembered_md5s([a, b]) == [hashlib.md5(a.read_bytes()).hexdigest(), hashlib.md5(b.read_bytes()).hexdigest()]
    before = dir_md5(data)

    _forge(state, a, "f" * 32)  # proof the memory is read: a forged entry for an unchanged file is returned
    assert md5_state.remembered_md5(a) == "f" * 32
    _old(a, b"text,label\nhellO,x\n", age_s=30)  # same size, new bytes, new mtime: hashed again
    assert md5_state.remembered_md5(a) == hashlib.md5(b"text,label\nhellO,x\n").hexdigest()
    assert dir_md5(data) != before

    fresh = data / "c.csv"
    fresh.write_bytes(b"just written")  # modified within RACY_S: hashed, never remembered
    assert md5_state.remembered_md5(fresh) == hashlib.md5(b"just written").hexdigest()
    with sqlite3.connect(state) as c:
        assert c.execute("SELECT count(*) FROM md5 WHERE path = ?", (str(fresh),)).fetchone()[0] == 0


def test_a_memory_that_cannot_be_used_only_costs_speed(tmp_path, monkeypatch):
    f = tmp_path / "x.bin"
    _old(f, b"abc")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the memory's folder would go")
    monkeypatch.setenv(md5_state.STATE_ENV, str(blocker / "md5.sqlite"))
    assert md5_state.remembered_md5(f) == hashlib.md5(b"abc").hexdigest()
    monkeypatch.setenv(md5_state.STATE_ENV, "off")
    assert md5_state.state_file() is None and md5_state.remembered_md5(f) == hashlib.md5(b"abc").hexdigest()
