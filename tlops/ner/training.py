"""Fine-tuning a token-classification model on the shared training loop (`tlops.training.loop.fit`).

What the loop needs from token classification, and nothing else: sentences as model-ready batches with a label per
sub-token (`SentenceData`: a word's tag at its first sub-token, the ignore label -100 elsewhere), the token loss and
the epoch's validation (`TokenTask`: cross-entropy over the labelled sub-tokens; validation decodes each val sentence's
most probable *valid* tag sequence (Viterbi) and scores entities with seqeval, strict: `val_f1` selects). The net is
`TokenNet` (a linear head on the backbone's `token_states`), so the loop gives token classification what it gives an
item task: per-epoch rows, the best epoch kept with its checkpoint, early-stopping patience, resume after a crash,
the device and precision, live progress, backbone groups (`trainable`, gradual unfreezing, `layer_decay`) and L2-SP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from tlops.ner.files import Sentence
from tlops.ner.metrics import entity_scores
from tlops.ner.model import (
    IGNORE,
    Aligned,
    NerModel,
    _batches,
    _tag_ids,
    align,
    decode_words,
    transition_masks,
    word_tokenizer,
)
from tlops.ner.words import normal_token
from tlops.training.batching import epoch_batches, to_device
from tlops.training.objectives import Batch, LoopTask


class SentenceData:
    """Sentences of one split for the loop: sub-word ids (aligned once), each sentence's sub-token labels, and the
    sentences themselves (validation scores their gold tags)."""

    def __init__(self, backbone: Any, sentences: Sequence[Sentence], tags: Sequence[str], tokenizer=None):
        self.backbone, self.sentences = backbone, list(sentences)
        tokenizer = tokenizer or word_tokenizer(backbone)
        self.aligned: Aligned = align(tokenizer, [[normal_token(w) for w in s.tokens] for s in self.sentences],
                                      backbone.max_length, _tag_ids(self.sentences, tags))
        self.lengths = [len(x) for x in self.aligned.input_ids]
        self.targets = np.arange(len(self.sentences))  # row ids (the labels are per sub-token: `labels`)

    def __len__(self) -> int:
        return len(self.sentences)

    def order(self, seed: int, epoch: int, batch_size: int, bucket_by_length: bool) -> list[list[int]]:
        return epoch_batches(len(self), batch_size, seed, epoch, self.lengths if bucket_by_length else None)

    def inputs(self, idx: Sequence[int]) -> Any:
        return self.backbone.collate([self.aligned.input_ids[i] for i in idx])

    def labels(self, idx: Sequence[int], width: int) -> torch.Tensor:
        out = torch.full((len(idx), width), IGNORE, dtype=torch.long)
        for b, i in enumerate(idx):
            out[b, : len(self.aligned.labels[i])] = torch.as_tensor(self.aligned.labels[i])
        return out

    def batch(self, idx: Sequence[int], g: torch.Generator | None = None, flip: bool = True) -> Batch:
        inputs = self.inputs(idx)  # text: no augmentation
        return Batch(inputs, self.labels(idx, inputs["input_ids"].shape[1]))


class TokenTask(LoopTask):
    """Cross-entropy on each word's first sub-token; validation: entity precision/recall/F1 (seqeval, strict) of the
    Viterbi-valid tag sequences and token accuracy; `val_f1` selects (higher is better)."""

    selection_metric = "val_f1"
    maximize = True

    def __init__(self, tags: Sequence[str], scheme: str):
        self.tags, self.scheme = list(tags), scheme
        self.masks = transition_masks(self.tags, scheme)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float().reshape(-1, len(self.tags)), targets.reshape(-1), ignore_index=IGNORE)

    def log_probs(self, net, data: SentenceData, evaluation) -> list[np.ndarray]:
        """Per sentence, (n_words, K) tag log probabilities at each word's first sub-token (zeros' row for a cut word)."""
        out: list[np.ndarray | None] = [None] * len(data)
        evaluation.eval()
        with torch.inference_mode(), evaluation.autocast():
            for idx in _batches(data.lengths, evaluation.batch_size):
                logits = net(to_device(data.inputs(idx), evaluation.device)).float().cpu()
                for b, i in enumerate(idx):
                    first = torch.as_tensor(data.aligned.first[i], dtype=torch.long)
                    out[i] = torch.log_softmax(logits[b, first.clamp(min=0)], dim=-1).numpy()
        return out  # type: ignore[return-value]

    def validate(self, net, data: SentenceData, evaluation) -> dict[str, float]:
        pred = decode_words(self.log_probs(net, data, evaluation), data.aligned, self.tags, self.masks)
        s = entity_scores([x.tags for x in data.sentences], pred.tags, self.scheme)
        return {"val_f1": s.f1, "val_precision": s.precision, "val_recall": s.recall, "val_token_accuracy": s.accuracy}


def fit_tokens(backbone: Any, train: Sequence[Sentence], val: Sequence[Sentence], tags: Sequence[str], scheme: str, opts,
               seed: int = 0, checkpoint_dir: Path | None = None, callbacks: Sequence = ()):
    """Fine-tune `backbone` with a linear token head on the shared loop (`opts`: a `FinetuneConfig`). Returns (the
    loop's result, the head (a linear `ProbeHead` over word states)), the best epoch by val entity F1 loaded into both,
    on the CPU; sets `backbone.fine_tuned`."""
    from tlops.modules.heads import ProbeHead
    from tlops.training.feature_groups import FeatureGroups
    from tlops.training.loop import TokenNet, fit
    from tlops.training.objectives import SupervisedObjective
    from tlops.training.parts import l2sp_regularisers

    tags = list(tags)
    tokenizer = word_tokenizer(backbone)
    train_data = SentenceData(backbone, train, tags, tokenizer)
    val_data = SentenceData(backbone, val, tags, tokenizer)
    torch.manual_seed(seed)
    head = ProbeHead(backbone.num_features, len(tags), kind="linear")  # identity scaler: a linear layer on the states
    trained = FeatureGroups(backbone, [" ".join(s.tokens) for s in train])  # `trainable: N` counts groups that change the states
    regularisers = l2sp_regularisers(trained, opts.l2sp)
    task = TokenTask(tags, scheme)
    result = fit(TokenNet(trained, head), SupervisedObjective(task, regularisers), train_data, val_data, opts, seed=seed, task=task,
                 checkpoint_dir=checkpoint_dir, callbacks=callbacks)
    backbone.fine_tuned = True
    return result, head


def finetune(backbone: Any, train: Sequence[Sentence], tags: Sequence[str], scheme: str,
             val: Sequence[Sentence] | None = None, epochs: int = 3, lr: float = 5e-5, head_lr: float = 1e-3,
             batch_size: int = 16, weight_decay: float = 0.01, warmup: float = 0.1, seed: int = 0,
             log: Callable[[dict], None] | None = None, **options) -> NerModel:
    """A `NerModel` fine-tuned on the shared loop (`fit_tokens`) with the given settings: every backbone group at `lr`,
    the head at `head_lr`, AdamW, linear warm-up (`warmup` of the steps) then linear decay, gradients clipped at norm
    1, no early stop; `options`: other loop options (`tlops.training.loop.LoopOptions`). With `val`, the epoch with the
    best val entity F1 is kept (else the best on train). `history`: the loop's epoch rows, each with `val_entity_f1`
    (= `val_f1`); `log` gets each row as it ends. Sets `backbone.fine_tuned`."""
    from tlops.training.callbacks import epoch_rows
    from tlops.training.loop import LoopOptions

    opts = LoopOptions(**{"epochs": epochs, "backbone_lr": lr, "head_lr": head_lr, "batch_size": batch_size,
                             "weight_decay": weight_decay, "warmup_ratio": warmup, "schedule": "linear", "patience": epochs,
                             "resume": False, **options})
    r, head = fit_tokens(backbone, train, val or train, tags, scheme, opts, seed=seed, callbacks=epoch_rows(log))
    linear = torch.nn.Linear(backbone.num_features, len(tags))
    with torch.no_grad():
        linear.weight.copy_(head.net[0].weight)
        linear.bias.copy_(head.net[0].bias)
    model = NerModel(backbone=backbone, head=linear.eval(), tags=list(tags), scheme=scheme)
    model.history = [{**row, "val_entity_f1": row["val_f1"]} for row in r.state.history]
    return model
