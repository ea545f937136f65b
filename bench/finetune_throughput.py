"""Fine-tuning throughput: tlops `finetune` vs Hugging Face `Trainer`, same MiniLM backbone, same head
(ProbeHead on mean-pooled last hidden states), same WordNet demo train split, batch size, max length,
epochs, AdamW + linear warm-up/decay, gradient clipping at 1.0, dropout, and thread count. Both tokenise
before the clock starts; both time training only (no evaluation, no checkpoint writes, no model loading).

Pairs: tlops without length bucketing vs Trainer's default random sampler (like for like), and tlops with
bucketing (its default) vs Trainer's `group_by_length` sampler; tlops runs its batches as packed rows where the
model allows (issue 33), and `tlops_plain_padded` is the like-for-like run with packing off. Target (issue 33):
>= 1.5x Trainer's best sampler. `--rows N`: the first N rows of the train split (a loaded machine).
Run: `python -m bench.finetune_throughput [--epochs 1] [--repeat 3] [--rows N]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torch import nn

from bench.common import REPO, save
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.modules.heads import ProbeHead
from tlops.strategies.finetune import FinetuneConfig, finetune

MODEL = "hf:sentence-transformers/all-MiniLM-L6-v2"
BATCH, MAX_LEN, LR_HEAD, LR_BACKBONE = 32, 128, 1e-3, 5e-5


class Rows:
    """The demo dataset with its train split cut to the first `rows` rows (all when None)."""

    def __init__(self, ds, rows: int | None):
        self.ds, self.rows, self.labels = ds, rows, ds.labels

    def inputs(self, split: str) -> list[str]:
        items = self.ds.inputs(split)
        return list(items[: self.rows]) if split == "train" and self.rows else list(items)

    def label_ids(self, split: str):
        y = self.ds.label_ids(split)
        return y[: self.rows] if split == "train" and self.rows else y


def data(rows: int | None = None):
    ds = Rows(load_dataset(REPO / "data" / "text_wordnet"), rows)
    y = {s: ds.label_ids(s) for s in ("train", "val")}
    return ds, y


class Classifier(nn.Module):
    """The model Trainer trains: the same backbone forward + mean pooling + ProbeHead as tlops."""

    def __init__(self, backbone, n_classes: int):
        super().__init__()
        self.encoder = backbone.model
        self.head = ProbeHead(backbone.num_features, n_classes)

    def forward(self, input_ids, attention_mask, labels=None):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        logits = self.head((h * m).sum(1) / m.sum(1).clamp(min=1.0))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def run_trainer(ds, y, epochs: int, sampling: str) -> float:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    b = load_backbone(MODEL, max_length=MAX_LEN)
    torch.manual_seed(0)
    model = Classifier(b, len(ds.labels))
    enc = b.tokenizer(ds.inputs("train"), truncation=True, max_length=MAX_LEN)
    rows = [{"input_ids": ids, "attention_mask": am, "labels": int(l)} for ids, am, l in zip(enc["input_ids"], enc["attention_mask"], y["train"])]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=epochs, learning_rate=LR_BACKBONE,
                                 lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.01, max_grad_norm=1.0,
                                 save_strategy="no", eval_strategy="no", report_to=[], logging_strategy="no", seed=0,
                                 dataloader_num_workers=0, use_cpu=True, train_sampling_strategy=sampling, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(b.tokenizer))
        metrics = trainer.train().metrics
    return len(rows) * epochs / metrics["train_runtime"]


def run_tlops(ds, y, epochs: int, bucket: bool, packing: bool | None = None) -> float:
    b = load_backbone(MODEL, max_length=MAX_LEN)
    b.packing = packing  # None: packed rows where the model passes the check (the default); False: padded
    torch.manual_seed(0)
    head = ProbeHead(b.num_features, len(ds.labels))
    cfg = FinetuneConfig(epochs=epochs, batch_size=BATCH, head_lr=LR_HEAD, backbone_lr=LR_BACKBONE, schedule="linear",
                         warmup_ratio=0.0, weight_decay=0.01, max_grad_norm=1.0, bucket_by_length=bucket, augment=False,
                         patience=epochs + 1)
    # validate on a handful of rows: evaluation is outside the timed training loop anyway
    r = finetune(b, ds.inputs("train"), y["train"], ds.inputs("val")[:8], y["val"][:8], head, cfg, seed=0)
    return r.train_samples / r.train_seconds


def main(epochs: int = 1, repeat: int = 2, rows: int | None = None) -> dict:
    torch.set_num_threads(torch.get_num_threads())  # the same (default) thread count for every run
    ds, y = data(rows)
    load = [os.getloadavg()[0]]
    runs = {"tlops_plain": lambda: run_tlops(ds, y, epochs, bucket=False),
            "trainer_random": lambda: run_trainer(ds, y, epochs, "random"),
            "tlops_plain_padded": lambda: run_tlops(ds, y, epochs, bucket=False, packing=False),
            "tlops_bucketed": lambda: run_tlops(ds, y, epochs, bucket=True),
            "trainer_group_by_length": lambda: run_trainer(ds, y, epochs, "group_by_length")}
    samples = {k: [] for k in runs}
    for _ in range(repeat):  # interleaved, so drift in machine speed hits every variant alike
        for k, fn in runs.items():
            samples[k].append(fn())
        load.append(os.getloadavg()[0])
    best = {k: max(v) for k, v in samples.items()}
    med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    trainer_best = max(best["trainer_random"], best["trainer_group_by_length"])
    return save("finetune_throughput", {
        "model": MODEL, "train_rows": len(y["train"]), "batch_size": BATCH, "max_length": MAX_LEN, "epochs": epochs, "repeat": repeat,
        "samples_per_s_all": samples, "samples_per_s_best": best, "samples_per_s_median": med, "load_1min": load,
        "ratio_default_vs_trainer_best_sampler": best["tlops_bucketed"] / trainer_best,
        "ratio_packed_vs_padded_random_order": best["tlops_plain"] / best["tlops_plain_padded"],
        "ratio_like_for_like": best["tlops_plain"] / best["trainer_random"],
        "ratio_like_for_like_padded": best["tlops_plain_padded"] / best["trainer_random"],
        "ratio_bucketed_vs_trainer_group_by_length": best["tlops_bucketed"] / best["trainer_group_by_length"],
        "ratio_default_vs_trainer_default": best["tlops_bucketed"] / best["trainer_random"],
        "target": ">= 1.5x Trainer's best sampler"})


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--rows", type=int, default=None, help="the first N train rows (default: all)")
    a = p.parse_args()
    main(a.epochs, a.repeat, a.rows)
