"""Extractive QA on a Hugging Face text backbone: windows, a start/end head, training, decoding, save/load.

- Windows: question + context pairs through the fast tokenizer (`truncation="only_second"`, `max_length`,
  `stride` tokens of overlap, `return_overflowing_tokens`, `return_offsets_mapping`), so a context longer than one
  window is read in overlapping pieces; the question is cut to `max_query_length` tokens first. A training window
  whose context part holds the whole answer is labelled with the answer's first and last token; any other window
  (and an impossible question's) points at token 0 ([CLS]), the "no answer here" position.
- Head: `SpanHead`, one Linear(D, 2) on the per-token states of the backbone's chosen hidden layers (concatenated),
  after a standardisation it carries (fitted on the training tokens for a probe; identity for fine-tuning).
- Training, on the shared training loop (`tlops.training.loop.fit`: per-epoch rows, the best epoch kept with its
  checkpoint, early-stopping patience, resume, device and precision): `fit(..., mode="probe")` freezes the backbone,
  computes every window's token states once (`CachedStates`) and trains only the head; `mode="finetune"` trains
  backbone and head together (`WindowBackbone`: AdamW, a lower LR for the backbone, warm-up then decay). The loss is
  `SpanTask`'s, validation decodes val's answers and scores SQuAD F1 (which selects). Seeded: the same data and config
  give the same weights on CPU.
- Decoding: over all windows of a question, the (start, end) token pair with the highest start + end logit such
  that both lie in the context, end >= start and end - start < `max_answer_length`; mapped back to character
  offsets of the context through the offsets mapping. The score is that span's probability among all valid spans
  (and the null answer, for SQuAD v2.0 data). v2.0: the answer is "" when the null score ([CLS] start + end,
  the lowest over the windows) beats the best span by more than `null_threshold`, chosen on val with the official
  script's `find_best_thresh` (tlops.qa.metrics.best_threshold).
- `save(folder)` / `QAModel.load(folder, backbone=None)`: the head as safetensors and a JSON spec; a fine-tuned
  backbone is saved beside it (`backbone/`, a Hugging Face model folder), so the folder rebuilds the model offline.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tlops.qa.files import QAExample
from tlops.qa.metrics import best_threshold, squad_scores
from tlops.training.objectives import Batch, LoopTask, Objective

HEAD_FILE, SPEC_FILE, BACKBONE_DIR = "qa_head.safetensors", "qa.json", "backbone"
NEG = -1e4  # logit for padding positions (finite: a fully masked row still gives a finite loss)


@dataclass
class QAConfig:
    max_length: int = 192  # tokens per window: [CLS] question [SEP] context piece [SEP]
    stride: int = 64  # tokens of context shared by consecutive windows of one question
    max_query_length: int = 64  # the question is cut to this many tokens
    max_answer_length: int = 30  # the longest answer span decoded, in tokens
    layers: tuple[int, ...] = (-1,)  # hidden states fed to the head (concatenated); -1 = last layer
    batch_size: int = 16
    epochs: int = 2  # fine-tuning epochs
    lr: float = 5e-5  # backbone learning rate (fine-tuning)
    head_lr: float = 1e-3  # head learning rate (fine-tuning)
    probe_epochs: int = 30  # head-only epochs on cached token states
    probe_lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of fine-tuning steps with a linear LR warm-up
    schedule: str = "linear"  # after the warm-up: linear decay to 0, cosine decay to 0, or constant
    seed: int = 0

    def __post_init__(self):
        self.layers = tuple(int(l) for l in self.layers)
        if self.max_query_length + 4 > self.max_length:
            raise ValueError(f"max_length {self.max_length} leaves no room for the context after a question of up to "
                             f"{self.max_query_length} tokens; raise max_length or lower max_query_length")
        if not 0 <= self.stride < self.max_length - self.max_query_length - 3:
            raise ValueError(f"stride {self.stride} must be >= 0 and smaller than the context part of a window "
                             f"({self.max_length - self.max_query_length - 3} tokens); lower it")
        if self.max_answer_length < 1:
            raise ValueError(f"max_answer_length {self.max_answer_length} must be >= 1")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")


@dataclass
class Windows:
    """Tokenised windows of a list of (question, context) rows; window i belongs to row `row[i]`."""

    features: list[dict[str, list[int]]]  # input_ids (+ token_type_ids) per window, unpadded
    offsets: list[list[tuple[int, int] | None]]  # character span in the context of each token; None outside it
    row: list[int]
    start: list[int] = field(default_factory=list)  # training targets (token index; 0 = no answer in this window)
    end: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.row)


def encode_windows(tokenizer, questions: Sequence[str], contexts: Sequence[str], cfg: QAConfig,
                   answers: Sequence[tuple[int, int] | None] | None = None) -> Windows:
    """Overlapping windows of each (question, context); `answers` (char start, end) or None per row adds targets."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("extractive QA needs a fast (Rust) tokenizer for its offsets mapping; the model folder needs "
                         "a tokenizer.json")
    q = tokenizer(list(questions), add_special_tokens=False, truncation=True, max_length=cfg.max_query_length,
                  return_offsets_mapping=True)
    questions = [text[: offs[-1][1]] if offs else text for text, offs in zip(questions, q["offset_mapping"])]
    enc = tokenizer(questions, list(contexts), truncation="only_second", max_length=cfg.max_length, stride=cfg.stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    out = Windows(features=[], offsets=[], row=[])
    for i, r in enumerate(enc["overflow_to_sample_mapping"]):
        seq = enc.sequence_ids(i)
        offs = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i], seq)]
        out.features.append({k: enc[k][i] for k in keys})
        out.offsets.append(offs)
        out.row.append(int(r))
        if answers is not None:
            s, e = _targets(offs, answers[r])
            out.start.append(s)
            out.end.append(e)
    return out


def _targets(offs: list[tuple[int, int] | None], answer: tuple[int, int] | None) -> tuple[int, int]:
    """(first, last) token of the answer when this window's context part holds all of it, else (0, 0)."""
    if answer is None:
        return 0, 0
    a_start, a_end = answer
    ctx = [k for k, o in enumerate(offs) if o is not None]
    if not ctx or offs[ctx[0]][0] > a_start or offs[ctx[-1]][1] < a_end:
        return 0, 0
    first = max(k for k in ctx if offs[k][0] <= a_start)
    last = min(k for k in ctx if offs[k][1] >= a_end)
    return first, last


class SpanHead(nn.Module):
    """(h - mean) / std -> Linear(D, 2): a start and an end logit per token."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = in_dim
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.linear = nn.Linear(in_dim, 2)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear((h - self.mean) / self.std)
        return logits[..., 0], logits[..., 1]


def _pad(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(f["input_ids"]) for f in features)
    batch = {"attention_mask": torch.zeros(len(features), width, dtype=torch.long)}
    for k in features[0]:
        batch[k] = torch.full((len(features), width), pad_id if k == "input_ids" else 0, dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        for k, v in f.items():
            batch[k][i, :n] = torch.as_tensor(v)
        batch["attention_mask"][i, :n] = 1
    return batch


SCHEDULES = ("linear", "cosine", "constant")


def decode_spans(w: Windows, contexts: Sequence[str], logits, max_answer_length: int, null_threshold: float | None = None,
                 with_null: bool = False) -> list[dict[str, Any]]:
    """Per row of a question's windows `w` and their (start, end) `logits`: answer, start, end (character offsets into
    its context; -1 for no answer), score, and `null_margin` (null score - best span score: how strongly the model
    says "no answer"); with_null: the null answer competes (abstain when the margin beats `null_threshold`)."""
    L = max_answer_length
    best: dict[int, tuple[float, int, int]] = {}
    lse: dict[int, list[torch.Tensor]] = {}
    null: dict[int, float] = {}
    for j, (s, e) in enumerate(logits):
        r = w.row[j]
        ctx = torch.tensor([o is not None for o in w.offsets[j]])
        n = len(s)
        m = s[:, None] + e[None, :]
        ones = torch.ones(n, n, dtype=torch.bool)
        valid = ctx[:, None] & ctx[None, :] & torch.triu(ones) & ~torch.triu(ones, diagonal=L)
        m = m.masked_fill(~valid, -math.inf)
        flat = int(torch.argmax(m))
        score = float(m.view(-1)[flat])
        lse.setdefault(r, []).append(torch.logsumexp(m.view(-1), 0))
        null[r] = min(null.get(r, math.inf), float(s[0] + e[0]))
        if score > best.get(r, (-math.inf,))[0]:
            a, b = divmod(flat, n)
            best[r] = (score, w.offsets[j][a][0], w.offsets[j][b][1])
    out = []
    for r, context in enumerate(contexts):
        if r not in best or best[r][0] == -math.inf:
            out.append({"answer": "", "start": -1, "end": -1, "score": 0.0, "null_margin": math.inf})
            continue
        score, a, b = best[r]
        parts = torch.stack(lse[r])
        if with_null:
            parts = torch.cat([parts, torch.tensor([null[r]])])
        total = float(torch.logsumexp(parts, 0))
        margin = null[r] - score
        abstain = with_null and null_threshold is not None and margin > null_threshold
        if abstain:
            out.append({"answer": "", "start": -1, "end": -1, "score": math.exp(null[r] - total), "null_margin": margin})
        else:
            out.append({"answer": context[a:b], "start": a, "end": b, "score": math.exp(score - total),
                        "null_margin": margin})
    return out


def val_scores(val: Sequence[QAExample], val_w: Windows, logits, v2: bool, max_answer_length: int) -> dict[str, float]:
    """SQuAD exact/f1 (`val_exact`, `val_f1`) of the spans decoded from `logits`; v2: each at its best null threshold."""
    contexts = [ex.context for ex in val]
    preds = decode_spans(val_w, contexts, logits, max_answer_length)
    golds = {ex.id: [a.text for a in ex.answers] for ex in val}
    texts = {ex.id: p["answer"] for ex, p in zip(val, preds)}
    if v2:  # the val score of an epoch is the one at its best null threshold
        f1, _ = best_threshold(golds, texts, {ex.id: p["null_margin"] for ex, p in zip(val, preds)}, "f1")
        ex_, _ = best_threshold(golds, texts, {ex.id: p["null_margin"] for ex, p in zip(val, preds)}, "exact")
        return {"val_exact": ex_, "val_f1": f1}
    s = squad_scores(golds, texts)
    return {"val_exact": s["exact"], "val_f1": s["f1"]}


class WindowData:
    """Windows of one split for the training loop: model-ready batches of question/context windows (padded per batch),
    each window's (start, end) target. `index`: each window's row in a `CachedStates` (the probe's states)."""

    def __init__(self, w: Windows, pad_id: int, index: Sequence[int] | None = None):
        self.w, self.pad_id, self.index = w, pad_id, list(index) if index is not None else None
        self.lengths = [len(f["input_ids"]) for f in w.features]
        self.targets = np.arange(len(w))  # window ids (the targets are token positions: `batch`)

    def __len__(self) -> int:
        return len(self.w)

    def order(self, seed: int, epoch: int, batch_size: int, bucket_by_length: bool) -> list[list[int]]:
        from tlops.training.batching import epoch_batches

        return epoch_batches(len(self), batch_size, seed, epoch, self.lengths if bucket_by_length else None)

    def inputs(self, idx: Sequence[int]) -> Any:
        if self.index is not None:  # rows of the cached states, and their lengths (the padding mask)
            return {"rows": torch.as_tensor([self.index[j] for j in idx]), "attention_mask": _pad_mask([self.lengths[j] for j in idx])}
        return _pad([self.w.features[j] for j in idx], self.pad_id)

    def batch(self, idx: Sequence[int], g: torch.Generator | None = None, flip: bool = True) -> Batch:
        w = self.w
        return Batch(self.inputs(idx), torch.tensor([[w.start[j], w.end[j]] if w.start else [0, 0] for j in idx]))


def _json_line(row: dict) -> str:
    """An epoch row for a progress log: its numbers rounded to 4 digits, as JSON."""
    return json.dumps({k: round(v, 4) for k, v in row.items() if isinstance(v, (int, float))})


def _pad_mask(lengths: Sequence[int]) -> torch.Tensor:
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return mask


class WindowBackbone:
    """A `QAModel`'s backbone as the training loop trains it: `token_states` of the model's layers on padded windows,
    and the backbone's parameter groups (input to output); `encode`/`collate`/`embed` let `FeatureGroups` find the
    groups the states depend on."""

    def __init__(self, qa: QAModel):
        self.qa, self.model = qa, qa.backbone.model

    def parameter_groups(self) -> list:
        groups = getattr(self.qa.backbone, "parameter_groups", None)
        return groups() if groups is not None else [list(self.model.parameters())]

    def encode(self, features: list) -> list:
        return list(features)

    def collate(self, features: list) -> dict[str, torch.Tensor]:
        return _pad(list(features), self.qa.tokenizer.pad_token_id or 0)

    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.qa.token_states(batch)

    embed = token_states


class CachedStates:
    """Frozen token states computed once, as the loop's backbone for a head-only run: no parameters of its own;
    `token_states` of a batch is its rows' states, padded."""

    def __init__(self, states: list[torch.Tensor]):
        self.states, self.model = states, nn.Module()

    def parameter_groups(self) -> list:
        return []

    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = [self.states[int(i)].float() for i in batch["rows"]]
        return nn.utils.rnn.pad_sequence(rows, batch_first=True).to(batch["attention_mask"].device)


class SpanTask(LoopTask):
    """The span loss (cross-entropy of the answer's start and end position over the window's tokens, padding masked,
    averaged) and the epoch's validation: SQuAD F1 and exact match of the decoded answers of `val` (v2.0: each at its
    best null threshold); `val_f1` selects (higher is better)."""

    selection_metric = "val_f1"
    maximize = True

    def __init__(self, val: Sequence[QAExample], v2: bool, max_answer_length: int):
        self.val, self.v2, self.max_answer_length = list(val), v2, max_answer_length

    def span_loss(self, s: torch.Tensor, e: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        s = s.float().masked_fill(mask == 0, NEG)
        e = e.float().masked_fill(mask == 0, NEG)
        ce = nn.functional.cross_entropy
        return (ce(s, targets[:, 0]) + ce(e, targets[:, 1])) / 2

    def validate(self, net, data: WindowData, evaluation) -> dict[str, float]:
        from tlops.training.batching import to_device

        logits: list = [None] * len(data)
        evaluation.eval()
        order = sorted(range(len(data)), key=lambda j: -data.lengths[j])
        with torch.inference_mode(), evaluation.autocast():
            for k in range(0, len(order), evaluation.batch_size):
                idx = order[k:k + evaluation.batch_size]
                s, e = net(to_device(data.inputs(idx), evaluation.device))
                s, e = s.float().cpu(), e.float().cpu()
                for b, j in enumerate(idx):
                    logits[j] = (s[b, :data.lengths[j]].clone(), e[b, :data.lengths[j]].clone())
        got = val_scores(self.val, data.w, logits, self.v2, self.max_answer_length)
        return {"val_f1": got["val_f1"], "val_exact_match": got["val_exact"]}


class SpanObjective(Objective):
    """The span loss of a batch (the padding of its windows masked), plus regularisers (L2-SP) as named terms."""

    def __init__(self, task: SpanTask, regularisers: dict[str, nn.Module] | None = None):
        super().__init__()
        self.task = task
        self.regularisers = nn.ModuleDict(regularisers or {})

    def forward(self, net, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        s, e = net(batch.inputs)
        terms = {"task": self.task.span_loss(s, e, batch.inputs["attention_mask"], batch.targets)}
        for name, reg in self.regularisers.items():
            terms[name] = reg()
        return terms


class QAModel:
    """A start/end head on a text backbone (anything with `.tokenizer`, a fast HF tokenizer, and `.model`, a
    transformers AutoModel; `tlops.backbones.hf.HFTextBackbone` is one)."""

    def __init__(self, backbone, cfg: QAConfig | None = None, head: SpanHead | None = None):
        self.backbone = backbone
        self.cfg = cfg or QAConfig()
        n_hidden = getattr(backbone.model.config, "num_hidden_layers", None)
        if n_hidden is not None:
            bad = [l for l in self.cfg.layers if not -(n_hidden + 1) <= l <= n_hidden]
            if bad:
                raise ValueError(f"layers {bad} out of range; this model has hidden states 0..{n_hidden}")
        dim = int(backbone.model.config.hidden_size) * len(self.cfg.layers)
        if head is None:
            torch.manual_seed(self.cfg.seed)
            head = SpanHead(dim)
        self.head = head
        self.null_threshold: float | None = None  # set for SQuAD v2.0 data: abstain above it
        self.fine_tuned = False
        self.history: list[dict[str, float]] = []

    # -- features -------------------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.backbone.tokenizer

    def windows(self, questions: Sequence[str], contexts: Sequence[str], answers=None) -> Windows:
        return encode_windows(self.tokenizer, questions, contexts, self.cfg, answers)

    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, L, D) per-token hidden states of the configured layers, concatenated."""
        only_last = self.cfg.layers == (-1,)
        out = self.backbone.model(**batch, output_hidden_states=not only_last)
        states = [out.last_hidden_state] if only_last else [out.hidden_states[l] for l in self.cfg.layers]
        return torch.cat(states, dim=-1)

    def _batches(self, w: Windows, order: Sequence[int]):
        pad = self.tokenizer.pad_token_id or 0
        for i in range(0, len(order), self.cfg.batch_size):
            idx = list(order[i: i + self.cfg.batch_size])
            yield idx, _pad([w.features[j] for j in idx], pad)

    @torch.no_grad()
    def _logits(self, w: Windows) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(start, end) logits per window (unpadded length), backbone and head in eval mode."""
        self.backbone.model.eval()
        self.head.eval()
        out = []
        for idx, batch in self._batches(w, range(len(w))):
            s, e = self.head(self.token_states(batch).float())
            for k, j in enumerate(idx):
                n = len(w.features[j]["input_ids"])
                out.append((s[k, :n].clone(), e[k, :n].clone()))
        return out

    # -- decoding ---------------------------------------------------------------------------------------------------
    def decode(self, w: Windows, contexts: Sequence[str], logits, with_null: bool | None = None) -> list[dict[str, Any]]:
        """Per row: answer, start, end (character offsets into its context; -1 for no answer), score, and
        `null_margin` (null score - best span score: how strongly the model says "no answer")."""
        with_null = self.null_threshold is not None if with_null is None else with_null
        return decode_spans(w, contexts, logits, self.cfg.max_answer_length, self.null_threshold, with_null)

    def predict(self, rows: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
        """`rows`: [{"question", "context"}] -> [{"answer", "start", "end", "score"}]: the answer text, its character
        offsets in the context (`context[start:end] == answer`; -1, -1 and "" when the model abstains) and its
        probability among the spans it considered."""
        if not rows:
            return []
        questions = [str(r["question"]) for r in rows]
        contexts = [str(r["context"]) for r in rows]
        w = self.windows(questions, contexts)
        return [{k: p[k] for k in ("answer", "start", "end", "score")} for p in self.decode(w, contexts, self._logits(w))]

    def evaluate(self, examples: Sequence[QAExample]) -> dict[str, float]:
        """SQuAD exact/f1 (fractions) of this model's predictions on labelled examples."""
        preds = self.predict([{"question": ex.question, "context": ex.context} for ex in examples])
        return squad_scores({ex.id: [a.text for a in ex.answers] for ex in examples},
                            {ex.id: p["answer"] for ex, p in zip(examples, preds)})

    # -- training ---------------------------------------------------------------------------------------------------
    def _train_windows(self, examples: Sequence[QAExample]) -> Windows:
        answers = [None if ex.is_impossible else (ex.answers[0].start, ex.answers[0].end) for ex in examples]
        return self.windows([ex.question for ex in examples], [ex.context for ex in examples], answers)

    def fit(self, train: Sequence[QAExample], val: Sequence[QAExample] = (), mode: str = "finetune",
            log: Callable[[str], None] | None = None, opts: Any = None, checkpoint_dir: Path | None = None,
            callbacks: Sequence[Any] = (), cache=None) -> list[dict[str, float]]:
        """Train on `train` on the shared training loop (`tlops.training.loop.fit`): "probe": the head alone on the
        frozen backbone's token states, computed once; "finetune": backbone and head. Keeps the epoch with the best val
        F1 (train's when no `val` is given; the loop's early stop, checkpoints and device as for any task); for SQuAD
        v2.0 data (any impossible question) chooses the null threshold on val. `opts`: the loop's options (a run's
        `FinetuneConfig`, or `LoopOptions`; None: from this model's `QAConfig`). Returns the loop's per-epoch rows
        (epoch, train_loss, val_f1, val_exact_match, and the older names loss, val_exact, seconds); `loop` keeps the
        loop's result. `cache`: a feature cache (`tlops.cache.FeatureCache`) for the probe's frozen token states."""
        if mode not in ("probe", "finetune"):
            raise ValueError(f"unknown mode {mode!r}; use 'probe' or 'finetune'")
        if not train:
            raise ValueError("no training examples")
        from tlops.training.callbacks import epoch_rows
        from tlops.training.loop import TokenNet
        from tlops.training.loop import fit as loop_fit

        torch.manual_seed(self.cfg.seed)
        val = list(val)
        v2 = any(ex.is_impossible for ex in (*train, *val))
        w = self._train_windows(train)
        scored = val or list(train)  # what selects the kept epoch
        val_w = self.windows([ex.question for ex in scored], [ex.context for ex in scored])
        opts = opts if opts is not None else self.loop_options(mode)
        pad = self.tokenizer.pad_token_id or 0
        if mode == "probe":
            for p in self.backbone.model.parameters():
                p.requires_grad_(False)
            from tlops.cache import CacheStats

            self.cache_stats = CacheStats()  # windows whose states the cache held (hits) or the backbone computed (misses)
            states = self._states(w, cache, self.cache_stats)
            flat = torch.cat(states).float()
            self.head.mean.copy_(flat.mean(0))
            self.head.std.copy_(flat.std(0).clamp(min=1e-6))
            del flat
            backbone: Any = CachedStates(states + self._states(val_w, cache, self.cache_stats))
            train_data = WindowData(w, pad, index=list(range(len(w))))
            val_data = WindowData(val_w, pad, index=list(range(len(w), len(w) + len(val_w))))
        else:
            from tlops.training.feature_groups import FeatureGroups

            for p in self.backbone.model.parameters():
                p.requires_grad_(True)
            backbone = FeatureGroups(WindowBackbone(self), w.features[:2])  # `trainable: N` counts groups the states use
            train_data, val_data = WindowData(w, pad), WindowData(val_w, pad)
        from tlops.training.parts import l2sp_regularisers

        regularisers = l2sp_regularisers(backbone, getattr(opts, "l2sp", 0)) if mode == "finetune" else {}
        task = SpanTask(scored, v2, self.cfg.max_answer_length)
        self.loop = loop_fit(TokenNet(backbone, self.head), SpanObjective(task, regularisers), train_data, val_data, opts,
                             seed=self.cfg.seed, task=task, checkpoint_dir=checkpoint_dir,
                             callbacks=[*callbacks, *epoch_rows((lambda row: log(_json_line(row))) if log else None)])
        self.history = [{**row, "loss": row["train_loss"], "val_exact": row["val_exact_match"],
                         "seconds": row["epoch_train_seconds"]} for row in self.loop.state.history]
        self.backbone.model.eval()
        self.head.eval()
        if mode == "finetune":
            self.fine_tuned = True
            if hasattr(self.backbone, "fine_tuned"):
                self.backbone.fine_tuned = True
        self.null_threshold = None
        if v2:
            self.null_threshold = self._choose_threshold(val, self.windows([ex.question for ex in val], [ex.context for ex in val])) if val else 0.0
        return self.history

    def loop_options(self, mode: str):
        """The loop's options (`LoopOptions`) for this model's `QAConfig`: fine-tuning at `lr` (backbone) and
        `head_lr`, AdamW, `warmup` then `schedule`, gradients clipped at norm 1; the probe at `probe_lr` for
        `probe_epochs`, constant LR, batches of at least 32 windows. No early stop, no resume (a bare `fit`)."""
        from tlops.training.loop import LoopOptions

        c = self.cfg
        if mode == "probe":
            return LoopOptions(epochs=c.probe_epochs, batch_size=max(c.batch_size, 32), head_lr=c.probe_lr, weight_decay=c.weight_decay,
                                  schedule="constant", warmup_ratio=0.0, max_grad_norm=None, patience=c.probe_epochs, resume=False)
        return LoopOptions(epochs=c.epochs, batch_size=c.batch_size, backbone_lr=c.lr, head_lr=c.head_lr, weight_decay=c.weight_decay,
                              warmup_ratio=c.warmup, schedule=c.schedule, patience=c.epochs, resume=False)

    def _val_scores(self, val, val_w, logits, v2: bool) -> dict[str, float]:
        return val_scores(val, val_w, logits, v2, self.cfg.max_answer_length)

    def _choose_threshold(self, val, val_w) -> float:
        preds = self.decode(val_w, [ex.context for ex in val], self._logits(val_w), with_null=False)
        golds = {ex.id: [a.text for a in ex.answers] for ex in val}
        _, thresh = best_threshold(golds, {ex.id: p["answer"] for ex, p in zip(val, preds)},
                                   {ex.id: p["null_margin"] for ex, p in zip(val, preds)}, "f1")
        return float(thresh)

    def state_identity(self) -> dict | None:
        """The feature cache's identity of this model's token states (`tlops.cache`): the backbone's, the level
        (`token`: one row per sub-word token of a window) and the layers read; None for a backbone without an identity."""
        identity = getattr(self.backbone, "identity", None)
        return {**identity(), "level": "token", "layers": list(self.cfg.layers)} if identity is not None else None

    @torch.no_grad()
    def _states(self, w: Windows, cache=None, stats=None) -> list[torch.Tensor]:
        """Each window's (L, D) token states from the frozen backbone, kept in float16 (half the memory). With a feature
        `cache` (`tlops.cache.FeatureCache`), a window's states are read from it when all its rows are there (one row per
        token, keyed by the window's model input and the token's position) and the others are computed and stored;
        `stats` (a `CacheStats`) counts the windows read (hits) and computed (misses)."""
        identity = self.state_identity() if cache is not None else None
        if identity is None:
            return self._compute_states(w, range(len(w)))
        from tlops.cache import CacheStats, item_hash, namespace_of, row_key

        ns, stats = namespace_of(identity), stats if stats is not None else CacheStats()
        base = [item_hash(json.dumps(f, sort_keys=True)) for f in w.features]
        keys = [[row_key(b, t) for t in range(len(f["input_ids"]))] for b, f in zip(base, w.features)]
        found = cache.lookup(ns, [k for ks in keys for k in ks], stats)
        todo = [j for j, ks in enumerate(keys) if any(k not in found for k in ks)]
        computed = dict(zip(todo, self._compute_states(w, todo, half=False)))
        if computed:
            cache.put(ns, [k for j in computed for k in keys[j]], torch.cat(list(computed.values())).numpy(), meta=identity)
        stats.hits, stats.misses = stats.hits + len(w) - len(todo), stats.misses + len(todo)
        return [computed[j].to(torch.float16) if j in computed else torch.from_numpy(np.stack([found[k] for k in keys[j]])).to(torch.float16)
                for j in range(len(w))]

    def _compute_states(self, w: Windows, order: Sequence[int], half: bool = True) -> list[torch.Tensor]:
        """The states of windows `order` (in that order): float16, or float32 (`half=False`, what the cache stores)."""
        self.backbone.model.eval()
        out = []
        for idx, batch in self._batches(w, list(order)):
            h = self.token_states(batch)
            for k, j in enumerate(idx):
                row = h[k, : len(w.features[j]["input_ids"])]
                out.append(row.to(torch.float16) if half else row.float().clone())
        return out

    # -- persistence ------------------------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """`qa_head.safetensors` + `qa.json` (config, null threshold); a fine-tuned backbone in `backbone/`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(folder / HEAD_FILE))
        spec = {"format": 1, "config": asdict(self.cfg), "in_dim": self.head.in_dim,
                "null_threshold": self.null_threshold, "fine_tuned": self.fine_tuned}
        (folder / SPEC_FILE).write_text(json.dumps(spec, indent=1, sort_keys=True))
        if self.fine_tuned:
            bdir = folder / BACKBONE_DIR
            if hasattr(self.backbone, "export"):
                self.backbone.export(bdir)
            else:
                self.backbone.model.save_pretrained(bdir, safe_serialization=True)
                self.tokenizer.save_pretrained(bdir)
        return folder

    @classmethod
    def load(cls, folder: Path, backbone=None) -> "QAModel":
        """The model saved in `folder`. A fine-tuned one brings its backbone (`backbone/`); a probe needs the
        frozen backbone it was trained on (`backbone`)."""
        folder = Path(folder)
        spec = json.loads((folder / SPEC_FILE).read_text())
        cfg = QAConfig(**{**spec["config"], "layers": tuple(spec["config"]["layers"])})
        if spec["fine_tuned"]:
            from tlops.backbones.hf import HFTextBackbone

            backbone = HFTextBackbone(str(folder / BACKBONE_DIR), layers=list(cfg.layers))
        elif backbone is None:
            raise ValueError(f"{folder} holds a probe head: pass the frozen backbone it was trained on")
        head = SpanHead(spec["in_dim"])
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        model = cls(backbone, cfg, head.eval())
        model.null_threshold = spec["null_threshold"]
        model.fine_tuned = spec["fine_tuned"]
        backbone.model.eval()
        return model
