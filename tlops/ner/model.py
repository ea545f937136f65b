"""Token classification on a Hugging Face text backbone: word -> sub-word alignment, a linear token head (frozen
probe here; fine-tuned with the backbone on the shared loop in `tlops.ner.training`), decoding that always yields a valid tag sequence, entity spans on raw text,
and save/load of the head.

Alignment: the words go through the backbone's fast tokenizer as pre-split words (`is_split_into_words`); each
word is represented by its FIRST sub-token (its tag is learnt and predicted there), the other sub-tokens get the
ignore label -100. A sentence longer than the backbone's `max_length` sub-tokens is cut: the words past the cut are
not seen by the model, predicted 'O', and counted (`Aligned.truncated_sentences` / `words_cut`).

Decoding: the head gives per-word tag probabilities; a Viterbi pass picks the most probable sequence that is valid
in the scheme (no `I-PER` after `O` or after `B-LOC`; in IOBES no entity left open), so a weak model's stray
`I-` tags are repaired by its own probabilities instead of by a fixed rule. An entity's score is the mean
probability of its words' chosen tags.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tlops.backbones import backbone_from_export
from tlops.errors import BackboneError, DataError
from tlops.ner.files import Sentence
from tlops.ner.metrics import NerScores, entity_scores
from tlops.ner.tags import OUTSIDE, allowed, check_scheme, may_end, spans
from tlops.ner.words import normal_token, split_words

IGNORE = -100  # label of the sub-tokens after a word's first (cross-entropy's ignore_index)
HEAD_FILE = "ner_head.safetensors"
SPEC_FILE = "ner_head.json"
BACKBONE_DIR = "backbone"
FORMAT = 1


# ---- alignment ---------------------------------------------------------------------------------------------------

@dataclass
class Aligned:
    input_ids: list[list[int]]  # per sentence, with the model's special tokens, at most max_length
    first: list[list[int]]  # per sentence, per word: the position of its first sub-token; -1: not seen (cut or empty)
    labels: list[list[int]] | None = None  # per sub-token: the word's tag id at its first sub-token, else IGNORE
    truncated_sentences: int = 0  # sentences cut at max_length
    words_cut: int = 0  # words past the cut (predicted 'O')


def word_tokenizer(backbone: Any):
    """The backbone's fast tokenizer, able to take pre-split words (byte-level BPE needs add_prefix_space=True)."""
    tok = backbone.tokenizer
    if not getattr(tok, "is_fast", False):
        raise BackboneError(f"{backbone.identity()['source']}: token classification needs a fast (Rust) tokenizer to map "
                            "sub-words back to words (word_ids); use a model folder with a tokenizer.json")
    try:
        tok(["a"], is_split_into_words=True)
    except ValueError as e:
        if "add_prefix_space" not in str(e):
            raise
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(backbone.folder, add_prefix_space=True, trust_remote_code=False)
    return tok


def align(tokenizer, sentences: Sequence[Sequence[str]], max_length: int,
          tag_ids: Sequence[Sequence[int]] | None = None) -> Aligned:
    """Sub-word ids of pre-split sentences, each word's first sub-token, and (given `tag_ids`) sub-token labels."""
    out = Aligned(input_ids=[], first=[], labels=[] if tag_ids is not None else None)
    if not sentences:
        return out
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length)
    for i, words in enumerate(sentences):
        word_ids = enc.word_ids(i)
        first = [-1] * len(words)
        prev = None
        for j, w in enumerate(word_ids):
            if w is not None and w != prev:
                first[w] = j
            prev = w
        seen = [w for w in word_ids if w is not None]
        last = max(seen) if seen else -1
        cut = len(words) - 1 - last
        if cut > 0:
            out.truncated_sentences += 1
            out.words_cut += cut
        out.input_ids.append(list(enc["input_ids"][i]))
        out.first.append(first)
        if tag_ids is not None:
            labels = [IGNORE] * len(word_ids)
            for w, j in enumerate(first):
                if j >= 0:
                    labels[j] = int(tag_ids[i][w])
            out.labels.append(labels)
    return out


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Sentence indices in batches of similar length (longest first), so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def word_states(backbone: Any, aligned: Aligned, batch_size: int = 32) -> list[torch.Tensor]:
    """Per sentence, (n_words, num_features) first-sub-token states; zeros for words the model did not see.
    Runs the backbone as it is (call under torch.inference_mode() with a frozen backbone)."""
    out: list[torch.Tensor | None] = [None] * len(aligned.input_ids)
    for idx in _batches([len(x) for x in aligned.input_ids], batch_size):
        batch = backbone.collate([aligned.input_ids[i] for i in idx])
        states = backbone.token_states(batch)
        for b, i in enumerate(idx):
            first = torch.as_tensor(aligned.first[i], dtype=torch.long)
            rows = states[b, first.clamp(min=0)]
            out[i] = torch.where((first >= 0).unsqueeze(-1), rows, torch.zeros_like(rows))
    return out  # type: ignore[return-value]


# ---- decoding ----------------------------------------------------------------------------------------------------

def transition_masks(tags: Sequence[str], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start_ok (K,), trans_ok (K, K) [prev, next], end_ok (K,)) for valid sequences of `scheme`."""
    k = len(tags)
    start = np.array([allowed(None, t, scheme) for t in tags])
    trans = np.array([[allowed(a, b, scheme) for b in tags] for a in tags]).reshape(k, k)
    end = np.array([may_end(t, scheme) for t in tags])
    return start, trans, end


def viterbi(log_probs: np.ndarray, masks: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[int]:
    """The most probable valid tag-id sequence for (n_words, K) log probabilities."""
    n = log_probs.shape[0]
    if n == 0:
        return []
    start, trans, end = masks
    neg = -1e9
    trans_pen = np.where(trans, 0.0, neg)
    score = log_probs[0] + np.where(start, 0.0, neg)
    back = np.zeros((n, log_probs.shape[1]), dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + trans_pen  # [prev, next]
        back[t] = cand.argmax(0)
        score = cand.max(0) + log_probs[t]
    score = score + np.where(end, 0.0, neg)
    best = [int(score.argmax())]
    for t in range(n - 1, 0, -1):
        best.append(int(back[t, best[-1]]))
    return best[::-1]


def decode_words(log_probs: Sequence[np.ndarray], aligned: Aligned, tags: Sequence[str],
                 masks: tuple[np.ndarray, np.ndarray, np.ndarray]) -> TagPrediction:
    """Per sentence (n_words, K) tag log probabilities -> the most probable valid sequence of each; a word the model
    did not see (cut at max_length) is 'O' with certainty."""
    pred = TagPrediction(tags=[], scores=[], truncated_sentences=aligned.truncated_sentences, words_cut=aligned.words_cut)
    o = list(tags).index(OUTSIDE)
    for lp, first in zip(log_probs, aligned.first):
        unseen = np.array(first, dtype=np.int64) < 0
        lp = lp.copy()
        lp[unseen] = -1e9
        lp[unseen, o] = 0.0
        ids = viterbi(lp, masks)
        pred.tags.append([tags[k] for k in ids])
        pred.scores.append([float(math.exp(lp[t, k])) for t, k in enumerate(ids)])
    return pred


@dataclass
class TagPrediction:
    tags: list[list[str]]  # per sentence, per word: a valid sequence of the model's scheme
    scores: list[list[float]]  # per word: the probability of its chosen tag
    truncated_sentences: int = 0
    words_cut: int = 0


# ---- the model ---------------------------------------------------------------------------------------------------

@dataclass
class NerModel:
    """A text backbone + a linear token head over its `token_states`, with the tag set and scheme."""

    backbone: Any
    head: torch.nn.Linear
    tags: list[str]
    scheme: str
    history: list[dict] = field(default_factory=list)  # fine-tuning: per epoch train loss and val F1

    def __post_init__(self):
        self.scheme = check_scheme(self.scheme)
        if self.head.out_features != len(self.tags) or self.head.in_features != self.backbone.num_features:
            raise ValueError(f"head {self.head.in_features}->{self.head.out_features} does not fit "
                             f"{self.backbone.num_features} features and {len(self.tags)} tags")
        self._masks = transition_masks(self.tags, self.scheme)
        self._tokenizer = None

    @property
    def types(self) -> list[str]:
        return sorted({t[2:] for t in self.tags if t != OUTSIDE})

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = word_tokenizer(self.backbone)
        return self._tokenizer

    def word_features(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> tuple[list[torch.Tensor], Aligned]:
        """Per sentence, (n_words, num_features) first-sub-token states of the backbone in eval mode (zeros for words
        cut at max_length), and the alignment; what `decode` takes."""
        aligned = align(self.tokenizer, [[normal_token(w) for w in s] for s in sentences], self.backbone.max_length)
        self.backbone.model.eval()
        with torch.inference_mode():
            return word_states(self.backbone, aligned, batch_size), aligned

    def decode(self, states: Sequence[torch.Tensor], aligned: Aligned) -> TagPrediction:
        """The head's tag probabilities per word -> the most probable valid sequence per sentence."""
        with torch.inference_mode():
            log_probs = [torch.log_softmax(self.head(s), dim=-1).numpy() for s in states]
        return decode_words(log_probs, aligned, self.tags, self._masks)

    def predict_tags(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> TagPrediction:
        """Tags of pre-split sentences (words as in a CoNLL file)."""
        keep = [i for i, s in enumerate(sentences) if s]
        got = self.decode(*self.word_features([sentences[i] for i in keep], batch_size))
        tags, scores = [[] for _ in sentences], [[] for _ in sentences]
        for i, t, sc in zip(keep, got.tags, got.scores):
            tags[i], scores[i] = t, sc
        return TagPrediction(tags, scores, got.truncated_sentences, got.words_cut)

    def evaluate(self, sentences: Sequence[Sentence], batch_size: int = 32) -> NerScores:
        pred = self.predict_tags([s.tokens for s in sentences], batch_size)
        return entity_scores([s.tags for s in sentences], pred.tags, self.scheme)

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[list[dict]]:
        """Entities in raw strings: per text, `{"start", "end", "type", "text", "score"}` with character offsets
        into that text (text[start:end] == "text"), in order. Words are split by `tlops.ner.words.split_words`."""
        words = [split_words(t) for t in texts]
        pred = self.predict_tags([[w.text for w in ws] for ws in words], batch_size)
        out = []
        for text, ws, tags, scores in zip(texts, words, pred.tags, pred.scores):
            ents = []
            for s in spans(tags):
                start, end = ws[s.start].start, ws[s.end - 1].end
                ents.append({"start": start, "end": end, "type": s.type, "text": text[start:end],
                             "score": float(np.mean(scores[s.start:s.end]))})
            out.append(ents)
        return out

    def save(self, folder: Path, with_backbone: bool = True) -> None:
        """The head (safetensors) and ner_head.json (tags, scheme, sizes); with_backbone: also the backbone's export
        under backbone/ (the fine-tuned weights when it was fine-tuned), so `load(folder)` needs nothing else."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.head.weight.detach().contiguous(), "bias": self.head.bias.detach().contiguous()},
                  str(folder / HEAD_FILE))
        spec = {"format": FORMAT, "tags": self.tags, "scheme": self.scheme, "num_features": self.backbone.num_features,
                "max_length": self.backbone.max_length, "backbone": self.backbone.identity()["source"],
                "fine_tuned": bool(getattr(self.backbone, "fine_tuned", False))}
        (folder / SPEC_FILE).write_text(json.dumps(spec, indent=1))
        if with_backbone:
            self.backbone.export(folder / BACKBONE_DIR)

    @classmethod
    def load(cls, folder: Path, backbone: Any = None) -> NerModel:
        """Rebuild a saved model offline: the given backbone, else the one exported under backbone/."""
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            spec = json.loads((folder / SPEC_FILE).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{folder / SPEC_FILE}: cannot read the NER head's spec ({e}); save the model with NerModel.save") from None
        if spec.get("format") != FORMAT:
            raise DataError(f"{folder / SPEC_FILE}: format {spec.get('format')!r}, this tlops reads format {FORMAT}")
        if backbone is None:
            backbone = backbone_from_export(folder / BACKBONE_DIR, {})
        if backbone.num_features != spec["num_features"]:
            raise BackboneError(f"{folder}: the head takes {spec['num_features']} features, the backbone gives "
                                f"{backbone.num_features}; load it with the backbone it was trained on")
        weights = load_file(str(folder / HEAD_FILE))
        head = torch.nn.Linear(spec["num_features"], len(spec["tags"]))
        with torch.no_grad():
            head.weight.copy_(weights["weight"])
            head.bias.copy_(weights["bias"])
        return cls(backbone=backbone, head=head.eval(), tags=list(spec["tags"]), scheme=spec["scheme"])


def _tag_ids(sentences: Sequence[Sentence], tags: Sequence[str]) -> list[list[int]]:
    index = {t: i for i, t in enumerate(tags)}
    try:
        return [[index[t] for t in s.tags] for s in sentences]
    except KeyError as e:
        raise DataError(f"tag {e.args[0]!r} is not in the model's tag set {list(tags)}") from None


# ---- the frozen probe ----------------------------------------------------------------------------------------------

def fit_probe(backbone: Any, train: Sequence[Sentence], tags: Sequence[str], scheme: str,
              C: float | Sequence[float] = 1.0, val: Sequence[Sentence] | None = None, class_weight: str | None = None,
              batch_size: int = 32, max_iter: int = 1000) -> NerModel:
    """Linear probe: logistic regression on the frozen backbone's first-sub-token states of train's words
    (standardised; the scaling is folded into the linear head). The backbone is not changed. Several `C` values:
    the one with the best `val` entity F1 is kept (states are computed once); `history` lists each C's val F1."""
    tags = list(tags)
    cs = [float(C)] if isinstance(C, (int, float)) else [float(c) for c in C]
    if len(cs) > 1 and not val:
        raise ValueError("several C values need val sentences to choose between them")
    aligned = align(word_tokenizer(backbone), [s.tokens for s in train], backbone.max_length, _tag_ids(train, tags))
    backbone.model.eval()
    with torch.inference_mode():
        states = word_states(backbone, aligned, batch_size)
    x = torch.cat([s[torch.as_tensor(f, dtype=torch.long) >= 0] for s, f in zip(states, aligned.first)]).double().numpy()
    y = np.array([tags.index(t) for s, f in zip(train, aligned.first) for t, j in zip(s.tags, f) if j >= 0])
    mean, std = x.mean(0), x.std(0)
    std = np.where(std < 1e-6, 1.0, std)
    val_features = None
    best: tuple[float, NerModel] | None = None
    history = []
    for c in cs:
        model = NerModel(backbone=backbone, head=_logistic_head((x - mean) / std, y, mean, std, len(tags), c, class_weight, max_iter),
                         tags=tags, scheme=scheme)
        if val:
            if val_features is None:
                val_features = model.word_features([s.tokens for s in val], batch_size)
            f1 = entity_scores([s.tags for s in val], model.decode(*val_features).tags, scheme).f1
            history.append({"C": c, "val_entity_f1": f1})
            if best is None or f1 > best[0]:
                best = (f1, model)
        else:
            best = (0.0, model)
    best[1].history = history
    return best[1]


def _logistic_head(z: np.ndarray, y: np.ndarray, mean: np.ndarray, std: np.ndarray, n_tags: int, C: float,
                   class_weight: str | None, max_iter: int) -> torch.nn.Linear:
    """Multinomial logistic regression on standardised features z, as a linear layer on the raw features."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight)
    clf.fit(z, y)
    coef, icpt = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:  # binary: sklearn keeps one row, the second class's logit against the first
        coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
    weight = np.zeros((n_tags, z.shape[1]))
    bias = np.full(n_tags, -30.0)  # a tag train never shows: never chosen where a seen one is allowed
    weight[clf.classes_] = coef / std
    bias[clf.classes_] = icpt - (coef * mean / std).sum(1)
    head = torch.nn.Linear(z.shape[1], n_tags)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return head.eval()
