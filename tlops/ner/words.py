"""The word splitter for raw text: what a NER model's `predict(texts)` and the demo data builder split with.

A word is a run of letters/digits joined by inner hyphens or apostrophes ("Jean-Paul", "O'Neill", "don't",
"1990s"); every other non-space character is a word of its own ("St. Louis" -> "St", ".", "Louis"). Each word
keeps its character offsets in the raw string, so predicted entities point back into the text as written.
Training files (CoNLL / JSONL) carry their own tokens; a model predicts best on raw text split the way its
training tokens were split, which is why the demo data is split with this same function.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*|\S")


class Word(NamedTuple):
    text: str
    start: int  # character offset in the raw string
    end: int  # exclusive


def split_words(text: str) -> list[Word]:
    """Words of `text` with their character offsets (text[w.start:w.end] == w.text)."""
    return [Word(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def normal_token(token: str) -> str:
    """A token as the model sees it: Unicode NFC (precomposed and combining accents read the same)."""
    return unicodedata.normalize("NFC", token)
