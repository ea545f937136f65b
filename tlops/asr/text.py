"""Transcripts: the normalisation rule, the character alphabet and what CTC needs of a clip's length.

Normalisation (applied to every transcript read, and so to what the model learns to write): Unicode NFC, lower-cased
(`str.lower`), every run of whitespace (spaces, tabs, newlines) made one space, leading and trailing whitespace
removed. Nothing else changes: punctuation and digits stay characters, so a character the model never saw in train is
reported by validation instead of being dropped silently.

Alphabet: the sorted distinct characters of train's normalised transcripts; CTC's blank is index 0, character i of the
alphabet is index i + 1.

Length: the CTC head emits at least `SLOTS_PER_SECOND` symbols per second of audio (`tlops.asr.model`); a transcript
needs one slot per character plus one blank between two equal neighbouring characters ("ee" in "three"), so a clip of
`s` seconds can hold a transcript when `ctc_slots_needed(text) <= floor(SLOTS_PER_SECOND * s)`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

SLOTS_PER_SECOND = 50  # the CTC head's least output rate (one symbol every 20 ms)
BLANK = 0
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The documented rule: NFC, lower case, whitespace runs -> one space, stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text).lower()).strip()


def alphabet_of(texts: Iterable[str]) -> list[str]:
    """Sorted distinct characters of the (normalised) transcripts."""
    return sorted({c for t in texts for c in t})


def ctc_slots_needed(text: str) -> int:
    """CTC output slots a transcript needs: its characters plus a blank between each pair of equal neighbours."""
    return len(text) + sum(1 for a, b in zip(text, text[1:]) if a == b)


def encode(text: str, alphabet: list[str]) -> list[int]:
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    return [index[c] for c in text]


def outside(text: str, alphabet: list[str]) -> list[str]:
    """The distinct characters of `text` not in `alphabet`, in order of appearance."""
    known, seen = set(alphabet), []
    for c in text:
        if c not in known and c not in seen:
            seen.append(c)
    return seen
