"""Extractive QA on a Hugging Face text backbone: windows, a start/end head, training, decoding, save/load.

- Windows: question + context pairs through the fast tokenizer (`truncation="only_second"`, `max_length`,
  `stride` tokens of overlap, `return_overflowing_tokens`, `return_offsets_mapping`), so a context longer than one
  window is read in overlapping pieces; the question is cut to `max_query_length` tokens first. A training window
  whose context part holds the whole answer is labelled with the answer's first and last token; any other window
  (and an impossible question's) points at token 0 ([CLS]), the "no answer here" position.
- Head: `SpanHead`, one Linear(D, 2) on the per-token states of the backbone's chosen hidden layers (concatenated),
  after a standardisation it carries (fitted on the training tokens for a probe; identity for fine-tuning).
- Training: `fit(..., mode="probe")` freezes the backbone, computes every window's token states once and trains
  only the head; `mode="finetune"` trains backbone and head together (AdamW, a lower LR for the backbone, linear
  warm-up then decay). Seeded: the same data and config give the same weights on CPU. The epoch with the best val
  F1 is kept when val is given.
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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tlops.qa.files import QAExample
from tlops.qa.metrics import best_threshold, squad_scores

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


def _lr_lambda(total: int, warmup: float, schedule: str = "linear") -> Callable[[int], float]:
    """The LR factor of a step: a linear warm-up over the first `warmup` fraction of steps, then linear or cosine
    decay to 0 at the last step, or constant."""
    w = max(1, int(warmup * total))

    def factor(step: int) -> float:
        if step < w:
            return (step + 1) / w
        if schedule == "constant":
            return 1.0
        done = (step - w) / max(1, total - w)
        return max(0.0, 1.0 - done) if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))

    return factor


def _decays(name: str) -> bool:
    """AdamW's weight decay applies to weights, not to biases and normalisation parameters (BERT's recipe)."""
    return not (name.endswith("bias") or "norm" in name.lower())


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
        L = self.cfg.max_answer_length
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
            abstain = with_null and self.null_threshold is not None and margin > self.null_threshold
            if abstain:
                out.append({"answer": "", "start": -1, "end": -1, "score": math.exp(null[r] - total), "null_margin": margin})
            else:
                out.append({"answer": context[a:b], "start": a, "end": b, "score": math.exp(score - total),
                            "null_margin": margin})
        return out

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
            log: Callable[[str], None] | None = None) -> list[dict[str, float]]:
        """Train on `train` ("probe": head only on frozen states; "finetune": backbone and head); keeps the epoch
        with the best val F1 when `val` is given; for SQuAD v2.0 data (any impossible question) chooses the null
        threshold on val. Returns per-epoch records (epoch, loss, seconds, val_exact, val_f1)."""
        if mode not in ("probe", "finetune"):
            raise ValueError(f"unknown mode {mode!r}; use 'probe' or 'finetune'")
        if not train:
            raise ValueError("no training examples")
        torch.manual_seed(self.cfg.seed)
        v2 = any(ex.is_impossible for ex in (*train, *val))
        w = self._train_windows(train)
        val_w = self.windows([ex.question for ex in val], [ex.context for ex in val]) if val else None
        if mode == "probe":
            self.history = self._fit_probe(w, val, val_w, v2, log)
        else:
            self.history = self._fit_finetune(w, val, val_w, v2, log)
        self.null_threshold = None
        if v2:
            self.null_threshold = self._choose_threshold(val, val_w) if val else 0.0
        return self.history

    def _val_scores(self, val, val_w, logits, v2: bool) -> dict[str, float]:
        contexts = [ex.context for ex in val]
        preds = self.decode(val_w, contexts, logits, with_null=False)
        golds = {ex.id: [a.text for a in ex.answers] for ex in val}
        texts = {ex.id: p["answer"] for ex, p in zip(val, preds)}
        if v2:  # the val score of an epoch is the one at its best null threshold
            f1, _ = best_threshold(golds, texts, {ex.id: p["null_margin"] for ex, p in zip(val, preds)}, "f1")
            ex_, _ = best_threshold(golds, texts, {ex.id: p["null_margin"] for ex, p in zip(val, preds)}, "exact")
            return {"val_exact": ex_, "val_f1": f1}
        s = squad_scores(golds, texts)
        return {"val_exact": s["exact"], "val_f1": s["f1"]}

    def _choose_threshold(self, val, val_w) -> float:
        preds = self.decode(val_w, [ex.context for ex in val], self._logits(val_w), with_null=False)
        golds = {ex.id: [a.text for a in ex.answers] for ex in val}
        _, thresh = best_threshold(golds, {ex.id: p["answer"] for ex, p in zip(val, preds)},
                                   {ex.id: p["null_margin"] for ex, p in zip(val, preds)}, "f1")
        return float(thresh)

    def _loss(self, s: torch.Tensor, e: torch.Tensor, mask: torch.Tensor, idx, w: Windows) -> torch.Tensor:
        s = s.masked_fill(mask == 0, NEG)
        e = e.masked_fill(mask == 0, NEG)
        ys = torch.tensor([w.start[j] for j in idx])
        ye = torch.tensor([w.end[j] for j in idx])
        ce = nn.functional.cross_entropy
        return (ce(s, ys) + ce(e, ye)) / 2

    def _fit_finetune(self, w, val, val_w, v2, log) -> list[dict[str, float]]:
        model = self.backbone.model
        for p in model.parameters():
            p.requires_grad_(True)
        named = list(model.named_parameters())
        groups = [
            {"params": [p for n, p in named if _decays(n)], "lr": self.cfg.lr, "weight_decay": self.cfg.weight_decay},
            {"params": [p for n, p in named if not _decays(n)], "lr": self.cfg.lr, "weight_decay": 0.0},
            {"params": list(self.head.linear.parameters()), "lr": self.cfg.head_lr, "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups)
        steps = self.cfg.epochs * math.ceil(len(w) / self.cfg.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps, self.cfg.warmup, self.cfg.schedule))
        gen = torch.Generator().manual_seed(self.cfg.seed)
        history, best, best_state = [], -1.0, None
        for epoch in range(1, self.cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            self.head.train()
            total, n = 0.0, 0
            for idx, batch in self._batches(w, torch.randperm(len(w), generator=gen).tolist()):
                s, e = self.head(self.token_states(batch))
                loss = self._loss(s, e, batch["attention_mask"], idx, w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                n += len(idx)
            rec = {"epoch": epoch, "loss": total / n, "seconds": time.perf_counter() - t0}
            if val:
                rec.update(self._val_scores(val, val_w, self._logits(val_w), v2))
                if rec["val_f1"] > best:
                    best = rec["val_f1"]
                    best_state = ({k: v.clone() for k, v in model.state_dict().items()},
                                  {k: v.clone() for k, v in self.head.state_dict().items()}) if epoch < self.cfg.epochs else None
                    best_epoch = epoch
            history.append(rec)
            if log:
                log(json.dumps({k: round(v, 4) for k, v in rec.items()}))
        if val and best_epoch != self.cfg.epochs and best_state is not None:
            model.load_state_dict(best_state[0])
            self.head.load_state_dict(best_state[1])
        model.eval()
        self.head.eval()
        self.fine_tuned = True
        if hasattr(self.backbone, "fine_tuned"):
            self.backbone.fine_tuned = True
        return history

    @torch.no_grad()
    def _states(self, w: Windows) -> list[torch.Tensor]:
        """Each window's (L, D) token states from the frozen backbone, kept in float16 (half the memory)."""
        self.backbone.model.eval()
        out = []
        for idx, batch in self._batches(w, range(len(w))):
            h = self.token_states(batch)
            for k, j in enumerate(idx):
                out.append(h[k, : len(w.features[j]["input_ids"])].to(torch.float16))
        return out

    def _fit_probe(self, w, val, val_w, v2, log) -> list[dict[str, float]]:
        for p in self.backbone.model.parameters():
            p.requires_grad_(False)
        states = self._states(w)
        val_states = self._states(val_w) if val else []
        flat = torch.cat(states).float()
        self.head.mean.copy_(flat.mean(0))
        self.head.std.copy_(flat.std(0).clamp(min=1e-6))
        del flat
        opt = torch.optim.AdamW(self.head.linear.parameters(), lr=self.cfg.probe_lr, weight_decay=self.cfg.weight_decay)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        bs = max(self.cfg.batch_size, 32)
        history, best, best_state = [], -1.0, None
        for epoch in range(1, self.cfg.probe_epochs + 1):
            t0 = time.perf_counter()
            self.head.train()
            total, n = 0.0, 0
            order = torch.randperm(len(w), generator=gen).tolist()
            for i in range(0, len(order), bs):
                idx = order[i: i + bs]
                h = nn.utils.rnn.pad_sequence([states[j].float() for j in idx], batch_first=True)
                mask = nn.utils.rnn.pad_sequence([torch.ones(len(states[j]), dtype=torch.long) for j in idx], batch_first=True)
                s, e = self.head(h)
                loss = self._loss(s, e, mask, idx, w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                n += len(idx)
            rec = {"epoch": epoch, "loss": total / n, "seconds": time.perf_counter() - t0}
            if val:
                self.head.eval()
                with torch.no_grad():
                    logits = [self.head(h.float()) for h in val_states]
                rec.update(self._val_scores(val, val_w, logits, v2))
                if rec["val_f1"] > best:
                    best = rec["val_f1"]
                    best_state = {k: v.clone() for k, v in self.head.state_dict().items()}
            history.append(rec)
            if log:
                log(json.dumps({k: round(v, 4) for k, v in rec.items()}))
        if best_state is not None:
            self.head.load_state_dict(best_state)
        self.head.eval()
        return history

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
