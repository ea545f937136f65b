"""The skeptic's baseline for extractive QA: a sliding-window lexical match, no learning beyond word counts.

After the sliding-window baseline of Richardson et al. 2013 (MCTest, "SW" with the distance tie-break of "SW+D")
as Rajpurkar et al. 2016 (SQuAD, section 5) adapt it to span selection. Exactly:

1. Words are runs of `\\w` characters (Unicode), compared lower-cased; a stop word is one of scikit-learn's
   English stop words. The question's content words Q are its non-stop words.
2. `fit(contexts)` counts, per word, the contexts that hold it (document frequency over distinct contexts) and
   sets idf(w) = log((1 + N) / (1 + df(w))) + 1 (scikit-learn's smooth idf); words never seen get the largest
   value. Unfitted, the idf comes from the contexts being predicted.
3. The context is cut into sentences (after . ! ? followed by whitespace). A candidate answer is any run of 1 to
   `max_words` consecutive words inside one sentence that holds no question word, and whose first and last words
   are not stop words.
4. A candidate's score is the sum of idf(q) over the distinct q in Q that occur within `window` words before
   its first word or after its last word, in the same sentence (the sliding window, centred on the candidate).
5. Ties go to the candidate whose matched question words lie closest (smallest summed distance, in words; SW+D),
   then to the shorter candidate, then to the earlier one. No candidate (a context without any) answers "".

The answer is the context's characters from the first word's start to the last word's end, so `context[start:end]
== answer`. It never abstains (a v2.0 impossible question always scores 0 for it).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Iterable, Sequence

WORD = re.compile(r"\w+", re.UNICODE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def words(text: str) -> list[tuple[str, int, int]]:
    """(lower-cased word, start, end) for each word of the text."""
    return [(m.group().lower(), m.start(), m.end()) for m in WORD.finditer(text)]


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the text's sentences."""
    out, start = [], 0
    for m in SENTENCE_END.finditer(text):
        out.append((start, m.start()))
        start = m.end()
    out.append((start, len(text)))
    return [(a, b) for a, b in out if b > a]


class SlidingWindowBaseline:
    def __init__(self, window: int = 8, max_words: int = 10):
        self.window = window
        self.max_words = max_words
        self.stop = _stop_words()
        self.df: Counter[str] = Counter()
        self.n_docs = 0

    def fit(self, contexts: Iterable[str]) -> "SlidingWindowBaseline":
        """Document frequencies over the distinct contexts (e.g. the training split's)."""
        distinct = list(dict.fromkeys(contexts))
        self.df = Counter(w for c in distinct for w in {t for t, _, _ in words(c)})
        self.n_docs = len(distinct)
        return self

    def idf(self, word: str) -> float:
        return math.log((1 + self.n_docs) / (1 + self.df.get(word, 0))) + 1.0

    def answer(self, question: str, context: str) -> dict[str, Any]:
        q = {w for w, _, _ in words(question)} - self.stop
        best: tuple | None = None
        for s_start, s_end in sentences(context):
            toks = [(w, a + s_start, b + s_start) for w, a, b in words(context[s_start:s_end])]
            for i in range(len(toks)):
                if toks[i][0] in q or toks[i][0] in self.stop:
                    continue
                for j in range(i, min(len(toks), i + self.max_words)):
                    if toks[j][0] in q:
                        break  # a candidate holds no question word: no longer run from i does either
                    if toks[j][0] in self.stop:
                        continue
                    near: dict[str, int] = {}
                    for k in range(max(0, i - self.window), i):
                        if toks[k][0] in q:
                            near[toks[k][0]] = min(near.get(toks[k][0], 10**9), i - k)
                    for k in range(j + 1, min(len(toks), j + 1 + self.window)):
                        if toks[k][0] in q:
                            near[toks[k][0]] = min(near.get(toks[k][0], 10**9), k - j)
                    score = sum(self.idf(w) for w in near)
                    key = (score, -sum(near.values()), -(j - i), -toks[i][1])
                    if best is None or key > best[0]:
                        best = (key, toks[i][1], toks[j][2])
        if best is None:
            return {"answer": "", "start": -1, "end": -1, "score": 0.0}
        (score, *_), a, b = best
        return {"answer": context[a:b], "start": a, "end": b, "score": score}

    def predict(self, rows: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
        """[{"question", "context"}] -> [{"answer", "start", "end", "score"}] (score: the window's idf sum)."""
        model = self
        if self.n_docs == 0:  # unfitted: idf from these contexts, without changing this object
            model = SlidingWindowBaseline(self.window, self.max_words).fit(str(r["context"]) for r in rows)
        return [model.answer(str(r["question"]), str(r["context"])) for r in rows]
