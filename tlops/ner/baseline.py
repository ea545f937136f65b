"""The skeptic's baseline for NER: a memorising gazetteer.

It remembers every entity string of train (its exact token sequence, case included) with its most frequent type
(ties: the type first in sorted order), then tags new text by longest match, left to right. It knows nothing it
has not seen: what a transferred model gains over it on test is what the pretrained backbone brings to names never
seen in training.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Sequence

from tlops.ner.files import Sentence
from tlops.ner.metrics import NerScores, entity_scores
from tlops.ner.tags import Span, check_scheme, spans, to_tags
from tlops.ner.words import normal_token, split_words


@dataclass
class Gazetteer:
    entries: dict[tuple[str, ...], str]  # token sequence -> entity type
    scheme: str = "IOB2"
    longest: int = field(init=False, default=0)

    def __post_init__(self):
        self.scheme = check_scheme(self.scheme)
        self.longest = max((len(k) for k in self.entries), default=0)

    @classmethod
    def fit(cls, train: Sequence[Sentence], scheme: str = "IOB2") -> Gazetteer:
        counts: dict[tuple[str, ...], Counter] = {}
        for s in train:
            for sp in spans(s.tags):
                counts.setdefault(tuple(s.tokens[sp.start:sp.end]), Counter())[sp.type] += 1
        return cls({k: min(c, key=lambda t: (-c[t], t)) for k, c in counts.items()}, scheme)

    def find(self, tokens: Sequence[str]) -> list[Span]:
        """Longest matches, left to right, without overlap."""
        out, i = [], 0
        while i < len(tokens):
            for n in range(min(self.longest, len(tokens) - i), 0, -1):
                kind = self.entries.get(tuple(tokens[i:i + n]))
                if kind is not None:
                    out.append(Span(i, i + n, kind))
                    i += n
                    break
            else:
                i += 1
        return out

    def predict_tags(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        return [to_tags(self.find([normal_token(w) for w in s]), len(s), self.scheme) for s in sentences]

    def evaluate(self, sentences: Sequence[Sentence]) -> NerScores:
        return entity_scores([s.tags for s in sentences], self.predict_tags([s.tokens for s in sentences]), self.scheme)

    def predict(self, texts: Sequence[str]) -> list[list[dict]]:
        """Same output as `NerModel.predict` (score 1.0: a gazetteer match is all or nothing)."""
        out = []
        for text in texts:
            ws = split_words(text)
            out.append([{"start": ws[s.start].start, "end": ws[s.end - 1].end, "type": s.type,
                         "text": text[ws[s.start].start:ws[s.end - 1].end], "score": 1.0}
                        for s in self.find([normal_token(w.text) for w in ws])])
        return out
