"""The pure rules of alias moves (tlops/aliases.py): where an alias pointed when a command started."""

from __future__ import annotations

from tlops.aliases import AliasMove, alias_as_of


def _move(frm, to, when, applied=True, alias="champion"):
    return AliasMove(model="m", alias=alias, from_version=frm, to_version=to, expected=frm, applied=applied, kind="promote",
                     reason="r", actor="a@h", when_ms=when)


def test_the_alias_as_of_a_moment_is_what_the_first_later_move_moved_it_from():
    moves = [_move(None, "1", 100), _move("1", "2", 200), _move("2", "9", 250, applied=False), _move("2", "3", 300),
             _move(None, "5", 350, alias="challenger")]
    assert alias_as_of(moves, "champion", "3", 150) == "1"  # started between v1 and v2: expected v1
    assert alias_as_of(moves, "champion", "3", 200) == "2"  # a move at the same millisecond came before the start
    assert alias_as_of(moves, "champion", "3", 260) == "2"  # a refused attempt moved nothing
    assert alias_as_of(moves, "champion", "3", 400) == "3"  # nothing moved it since (the challenger move at 350 is not the champion): the alias now
    assert alias_as_of(moves, "champion", "3", None) == "3"  # no start known: the alias now
    assert alias_as_of(moves, "challenger", "5", 10) is None  # challenger: nothing until its move at 350
    assert alias_as_of([], "champion", None, 10) is None
