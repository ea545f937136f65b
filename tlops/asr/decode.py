"""CTC decoding: greedy, and a prefix beam search with an optional word n-gram language model.

Greedy: the most probable symbol of every slot, repeats merged, blanks dropped.

Beam search (the CTC prefix beam search of Hannun et al. 2014, "First-pass large vocabulary continuous speech recognition
using bi-directional recurrent DNNs", in log space): every prefix keeps the probability of the paths that end in a blank
and of those that end in its last character, so paths that collapse to the same text are summed, not competing. At each
slot only symbols with log-probability above `prune` (natural log) are tried, then the `beam` best prefixes are kept by

    score = log P_ctc(prefix) + alpha * log P_lm(complete words of prefix) + beta * (number of words)

A word is complete when a space follows it, and at the end (where the end-of-sentence probability is added too). Without
a language model alpha is 0 and beta does nothing. With `lexicon` (a closed vocabulary: the LM's words), a prefix may only
grow into a word of the vocabulary: a character is tried only when the word so far stays a prefix of a vocabulary word,
a space only after a whole vocabulary word, and the transcript must end on one (as a lexicon decoder such as
pocketsphinx's or flashlight's does); with no such path left the unconstrained best is returned.

Language model (`WordLM`): a word n-gram model of the training transcripts with interpolated absolute discounting
(discount 0.75) down to a unigram that is itself interpolated with a uniform distribution over the vocabulary plus one
unknown word, so a word never seen in train (a misspelling) gets a small, finite probability.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tlops.asr.text import BLANK

BOS, EOS = "<s>", "</s>"
NEG = -1e30


def greedy(log_probs: np.ndarray, alphabet: Sequence[str]) -> str:
    """(slots, 1 + len(alphabet)) log-probabilities -> text: argmax per slot, repeats merged, blanks dropped."""
    ids = np.asarray(log_probs).argmax(axis=1)
    out, prev = [], BLANK
    for i in ids:
        if i != prev and i != BLANK:
            out.append(alphabet[i - 1])
        prev = i
    return "".join(out)


def _logsumexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b <= NEG:
        return a
    return a + math.log1p(math.exp(b - a))


class WordLM:
    """A word n-gram model (`order` words; 2: bigrams) with interpolated absolute discounting; see the module's docstring."""

    def __init__(self, counts: dict[int, dict[tuple, int]], order: int, discount: float = 0.75):
        self.order, self.d = order, discount
        self.counts = counts  # n -> {ngram tuple: count}
        self.vocab = sorted({w for (w,) in counts.get(1, {}) if w not in (BOS, EOS)})
        self._ctx: dict[int, dict[tuple, tuple[int, int]]] = {}
        for n in range(2, order + 1):  # context -> (total count, distinct followers)
            agg: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
            for g, c in counts.get(n, {}).items():
                agg[g[:-1]][0] += c
                agg[g[:-1]][1] += 1
            self._ctx[n] = {k: (v[0], v[1]) for k, v in agg.items()}
        uni = counts.get(1, {})
        self._uni_total = sum(uni.values())
        self._uni_types = len(uni)
        self._cache: dict[tuple, float] = {}

    @classmethod
    def fit(cls, texts: Sequence[str], order: int = 2, discount: float = 0.75) -> WordLM:
        counts: dict[int, Counter] = {n: Counter() for n in range(1, order + 1)}
        for t in texts:
            words = [BOS] * (order - 1) + t.split() + [EOS]
            for i in range(order - 1, len(words)):
                for n in range(1, order + 1):
                    counts[n][tuple(words[i - n + 1:i + 1])] += 1
        return cls({n: dict(c) for n, c in counts.items()}, order, discount)

    def to_json(self) -> dict:
        return {"order": self.order, "discount": self.d,
                "ngrams": {str(n): [[*g, c] for g, c in sorted(cs.items())] for n, cs in self.counts.items()}}

    @classmethod
    def from_json(cls, spec: dict) -> WordLM:
        counts = {int(n): {tuple(r[:-1]): int(r[-1]) for r in rows} for n, rows in spec["ngrams"].items()}
        return cls(counts, int(spec["order"]), float(spec["discount"]))

    def _p(self, word: str, context: tuple) -> float:
        if not context:
            uni = self.counts.get(1, {})
            base = 1.0 / (len(self.vocab) + 2)  # the vocabulary, </s> and one unknown word
            if not self._uni_total:
                return base
            lam = self.d * self._uni_types / self._uni_total
            return max(uni.get((word,), 0) - self.d, 0) / self._uni_total + lam * base
        n = len(context) + 1
        lower = self._p(word, context[1:])
        total, types = self._ctx.get(n, {}).get(context, (0, 0))
        if not total:
            return lower
        c = self.counts.get(n, {}).get(context + (word,), 0)
        return max(c - self.d, 0) / total + self.d * types / total * lower

    def log_prob(self, word: str, history: tuple) -> float:
        """ln P(word | the last order-1 words of `history`, <s>-padded)."""
        ctx = ((BOS,) * (self.order - 1) + tuple(history))[-(self.order - 1):] if self.order > 1 else ()
        key = ctx + (word,)
        if key not in self._cache:
            self._cache[key] = math.log(self._p(word, ctx))
        return self._cache[key]

    def sentence_log_prob(self, words: Sequence[str], end: bool = True) -> float:
        lp = sum(self.log_prob(w, tuple(words[:i])) for i, w in enumerate(words))
        return lp + (self.log_prob(EOS, tuple(words)) if end else 0.0)


@dataclass(frozen=True)
class BeamSettings:
    beam: int = 16
    alpha: float = 0.0  # LM weight (0: no LM)
    beta: float = 0.0  # per-word bonus
    prune: float = -8.0  # symbols below this log-probability at a slot are not tried
    lexicon: bool = False  # words only from the LM's vocabulary (needs an LM)


def beam_search(log_probs: np.ndarray, alphabet: Sequence[str], settings: BeamSettings = BeamSettings(),
                lm: WordLM | None = None) -> str:
    """The best transcript of one utterance's (slots, 1 + len(alphabet)) log-probabilities (see the module's docstring)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    space = alphabet.index(" ") + 1 if " " in alphabet else -1
    use_lm = lm is not None and settings.alpha != 0.0
    lm_cache: dict[tuple, tuple[float, int]] = {(): (0.0, 0)}
    words = set(lm.vocab) if (settings.lexicon and lm is not None) else None
    stems = {w[:i] for w in words for i in range(len(w) + 1)} if words is not None else None

    partials: dict[tuple, str] = {}

    def partial(prefix: tuple) -> str:
        """The word being spelled at the end of `prefix` ("" right after a space)."""
        if prefix not in partials:
            partials[prefix] = "".join(alphabet[i - 1] for i in prefix).rsplit(" ", 1)[-1]
        return partials[prefix]

    def words_score(prefix: tuple) -> tuple[float, int]:
        """(LM log-prob of the complete words of `prefix`, their number): words followed by a space."""
        if prefix in lm_cache:
            return lm_cache[prefix]
        if not use_lm and settings.beta == 0.0:
            return (0.0, 0)  # nothing to score: no LM weight, no word bonus
        text = "".join(alphabet[i - 1] for i in prefix)
        complete = text.split(" ")[:-1] if text.endswith(" ") or " " in text else []
        complete = [w for w in complete if w]
        score = lm.sentence_log_prob(complete, end=False) if use_lm else 0.0
        lm_cache[prefix] = (score, len(complete))
        return lm_cache[prefix]

    def total(prefix: tuple, pb: float, pnb: float) -> float:
        s, n = words_score(prefix)
        return _logsumexp(pb, pnb) + settings.alpha * s + settings.beta * n

    beams: dict[tuple, tuple[float, float]] = {(): (0.0, NEG)}
    for t in range(lp.shape[0]):
        row = lp[t]
        cands = sorted({BLANK, int(row.argmax()), *(int(c) for c in np.nonzero(row > settings.prune)[0])})  # the blank always: a
        # lexicon may refuse every character, and a prefix must still be able to wait
        nxt: dict[tuple, list[float]] = defaultdict(lambda: [NEG, NEG])
        for prefix, (pb, pnb) in beams.items():
            whole = _logsumexp(pb, pnb)
            last = prefix[-1] if prefix else None
            for c in cands:
                p = row[c]
                if c == BLANK:
                    e = nxt[prefix]
                    e[0] = _logsumexp(e[0], whole + p)
                    continue
                if c == space and (not prefix or last == space):
                    e = nxt[prefix]  # no leading or doubled spaces: the space is absorbed
                    e[1] = _logsumexp(e[1], whole + p)
                    continue
                if words is not None:
                    word = partial(prefix)
                    if (c == space and word not in words) or (c != space and c != last and word + alphabet[c - 1] not in stems):
                        continue
                    if c == last and c != space and word + alphabet[c - 1] not in stems:  # only the merge is allowed
                        same = nxt[prefix]
                        same[1] = _logsumexp(same[1], pnb + p)
                        continue
                ext = prefix + (c,)
                e = nxt[ext]
                if c == last:
                    e[1] = _logsumexp(e[1], pb + p)  # a repeat needs a blank between
                    same = nxt[prefix]
                    same[1] = _logsumexp(same[1], pnb + p)  # merged into the last character
                else:
                    e[1] = _logsumexp(e[1], whole + p)
        ranked = heapq.nlargest(settings.beam, nxt.items(), key=lambda kv: total(kv[0], kv[1][0], kv[1][1]))
        beams = {k: (v[0], v[1]) for k, v in ranked} or beams

    def final(prefix: tuple, pb: float, pnb: float) -> float:
        text = "".join(alphabet[i - 1] for i in prefix).strip()
        words = text.split()
        lm_score = lm.sentence_log_prob(words) if use_lm else 0.0
        return _logsumexp(pb, pnb) + settings.alpha * lm_score + settings.beta * len(words)

    ended = {k: v for k, v in beams.items() if words is None or partial(k) in words or not partial(k)}
    best = max((ended or beams).items(), key=lambda kv: final(kv[0], *kv[1]))[0]
    return "".join(alphabet[i - 1] for i in best).strip()


def decode(log_probs: np.ndarray, alphabet: Sequence[str], how: dict | None = None, lm: WordLM | None = None) -> str:
    """One utterance by the decoder a package records: {"kind": "greedy"} or {"kind": "beam", beam, alpha, beta, lexicon};
    spaces normalised (none at the ends, one between words), as the training transcripts are."""
    how = how or {"kind": "greedy"}
    if how.get("kind", "greedy") == "greedy":
        text = greedy(log_probs, alphabet)
    else:
        settings = BeamSettings(beam=int(how.get("beam", 16)), alpha=float(how.get("alpha", 0.0)), beta=float(how.get("beta", 0.0)),
                                lexicon=bool(how.get("lexicon", False)))
        text = beam_search(log_probs, alphabet, settings, lm if (settings.alpha or settings.lexicon) else None)
    return " ".join(text.split())  # spaces as the transcripts have them (normalised): none at the ends, one between words


def align(log_probs: np.ndarray, text: str, alphabet: Sequence[str]) -> list[int]:
    """CTC forced alignment (Viterbi): per slot, the index of `text`'s character it emits, or -1 for a blank. The most
    probable path that spells exactly `text`; raises ValueError when there are too few slots for it."""
    from tlops.asr.text import ctc_slots_needed

    lp = np.asarray(log_probs, dtype=np.float64)
    ids = [alphabet.index(c) + 1 for c in text]
    if ctc_slots_needed(text) > lp.shape[0]:
        raise ValueError(f"{lp.shape[0]} slots cannot hold {text!r}")
    ext = [BLANK]
    for i in ids:
        ext += [i, BLANK]
    n, t_len = len(ext), lp.shape[0]
    dp = np.full((t_len, n), -np.inf)
    back = np.zeros((t_len, n), dtype=np.int64)
    dp[0, 0] = lp[0, ext[0]]
    if n > 1:
        dp[0, 1] = lp[0, ext[1]]
    skip = np.array([s >= 2 and ext[s] != BLANK and ext[s] != ext[s - 2] for s in range(n)])
    for t in range(1, t_len):
        stay = dp[t - 1]
        prev = np.concatenate([[-np.inf], dp[t - 1, :-1]])
        prev2 = np.where(skip, np.concatenate([[-np.inf, -np.inf], dp[t - 1, :-2]]), -np.inf)
        choices = np.stack([stay, prev, prev2])
        back[t] = choices.argmax(0)
        dp[t] = choices.max(0) + lp[t, ext]
    s = n - 1 if n == 1 or dp[-1, n - 1] >= dp[-1, n - 2] else n - 2
    states = [0] * t_len
    for t in range(t_len - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    return [(st - 1) // 2 if ext[st] != BLANK else -1 for st in states]


def word_timings(log_probs: np.ndarray, text: str, alphabet: Sequence[str], seconds_per_slot: float) -> list[dict]:
    """Per word of `text` (a run of non-space characters): {"word", "start", "end"} in seconds, from the CTC alignment
    (start: the first slot emitting its first character; end: the end of the last slot emitting its last character)."""
    if not text:
        return []
    slots = align(log_probs, text, alphabet)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t, c in enumerate(slots):
        if c >= 0:
            first.setdefault(c, t)
            last[c] = t
    return [{"word": m.group(), "start": round(first[m.start()] * seconds_per_slot, 3),
             "end": round((last[m.end() - 1] + 1) * seconds_per_slot, 3)} for m in re.finditer(r"[^ ]+", text)]
