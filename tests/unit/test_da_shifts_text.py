"""bench.da_shifts' keyboard typos (the verbs_typos shift's corruption): the stated rate, QWERTY neighbours only,
non-letters never edited, deterministic for a seed."""

import numpy as np

from bench.da_shifts import NEIGHBOURS, typos

TEXT = "move fast by using one's feet, with one foot off the ground at any given time"


def test_typos_rate_and_determinism():
    assert typos(TEXT, 0.0, np.random.default_rng(0)) == TEXT
    assert typos(TEXT, 0.1, np.random.default_rng(3)) == typos(TEXT, 0.1, np.random.default_rng(3))
    assert typos(" ,'-. 123", 1.0, np.random.default_rng(0)) == " ,'-. 123"
    # a lone letter is edited with probability 0.1; 3 of the 4 edits change it (a swap has no next character):
    # 0.075 expected, binomial std 0.004 over 4,000 draws
    rng = np.random.default_rng(0)
    changed = np.mean([typos("g", 0.1, rng) != "g" for _ in range(4000)])
    assert 0.06 < changed < 0.09, changed


def test_typos_edits_with_neighbours_only():
    rng = np.random.default_rng(1)
    outs = {typos("g", 1.0, rng) for _ in range(300)}  # always edited: a neighbour, deleted, g + a neighbour, g kept
    assert outs == {"", "g"} | set(NEIGHBOURS["g"]) | {"g" + k for k in NEIGHBOURS["g"]}
    assert typos("ab", 1.0, np.random.default_rng(5)) != "ab"
    assert NEIGHBOURS["g"] == "tyfhvb" and NEIGHBOURS["q"] == "wa" and set(NEIGHBOURS) == set("abcdefghijklmnopqrstuvwxyz")
