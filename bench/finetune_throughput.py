"""Fine-tuning throughput: tlops `finetune` vs Hugging Face `Trainer`, same MiniLM backbone, same head
(ProbeHead on mean-pooled last hidden states), same WordNet demo train split, batch size, max length,
epochs, AdamW + linear warm-up/decay, gradient clipping at 1.0, dropout, and thread count. Both tokenise
before the clock starts; both time training only (no evaluation, no checkpoint writes, no model loading).

Variants (interleaved per repeat, every other repeat in reverse order, so drift in machine speed hits all alike):
tlops with length bucketing (its default; packed rows where the model allows, issue 33) vs Trainer's default random
sampler and its `group_by_length` sampler, each in fp32 and in bf16 (tlops `precision: bf16`, Trainer `bf16=True`: both
CPU bf16 autocast), and tlops fp32 with `compile: true` (torch.compile; its compile time is inside the timed steps).
`--more`: also tlops in random order, packed and padded (the like-for-like pairs of the first run). tlops variants
validate on the whole val split after training (outside the clock): val macro-F1 per variant, so a faster lever can
be checked for unchanged metrics. Target (issue 33): >= 1.5x Trainer's best sampler, fp32 vs fp32 and bf16 vs bf16.
`--rows N`: the first N train rows.
Run: `python -m bench.finetune_throughput [--epochs 1] [--repeat 3] [--rows N] [--threads N] [--more] [--no-compile]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

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


def run_trainer(ds, y, epochs: int, sampling: str, bf16: bool = False) -> dict:
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
                                 dataloader_num_workers=0, use_cpu=True, train_sampling_strategy=sampling, disable_tqdm=True,
                                 bf16=bf16)
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(b.tokenizer))
        metrics = trainer.train().metrics
    return {"samples_per_s": len(rows) * epochs / metrics["train_runtime"]}


def run_tlops(ds, y, epochs: int, bucket: bool, packing: bool | None = None, precision: str = "fp32",
              compile: bool = False) -> dict:
    b = load_backbone(MODEL, max_length=MAX_LEN)
    b.packing = packing  # None: packed rows where the model passes the check (the default); False: padded
    torch.manual_seed(0)
    head = ProbeHead(b.num_features, len(ds.labels))
    cfg = FinetuneConfig(epochs=epochs, batch_size=BATCH, head_lr=LR_HEAD, backbone_lr=LR_BACKBONE, schedule="linear",
                         warmup_ratio=0.0, weight_decay=0.01, max_grad_norm=1.0, bucket_by_length=bucket, augment=False,
                         patience=epochs + 1, precision=precision, compile=compile)
    t = time.perf_counter()  # validation runs after each epoch, outside `train_seconds`
    r = finetune(b, ds.inputs("train"), y["train"], ds.inputs("val"), y["val"], head, cfg, seed=0)
    row = r.state.history[r.state.best_epoch]
    return {"samples_per_s": r.train_samples / r.train_seconds, "val_macro_f1": row.get("val_macro_f1"),
            "precision": r.precision, "wall_seconds": time.perf_counter() - t}


def main(epochs: int = 1, repeat: int = 2, rows: int | None = None, more: bool = False, compile: bool = True) -> dict:
    ds, y = data(rows)
    load = [os.getloadavg()[0]]
    runs = {"tlops_bucketed": lambda: run_tlops(ds, y, epochs, bucket=True),
            "trainer_random": lambda: run_trainer(ds, y, epochs, "random"),
            "trainer_group_by_length": lambda: run_trainer(ds, y, epochs, "group_by_length"),
            "tlops_bucketed_bf16": lambda: run_tlops(ds, y, epochs, bucket=True, precision="bf16"),
            "trainer_random_bf16": lambda: run_trainer(ds, y, epochs, "random", bf16=True),
            "trainer_group_by_length_bf16": lambda: run_trainer(ds, y, epochs, "group_by_length", bf16=True)}
    if compile:
        runs["tlops_bucketed_compile"] = lambda: run_tlops(ds, y, epochs, bucket=True, compile=True)
    if more:
        runs["tlops_plain"] = lambda: run_tlops(ds, y, epochs, bucket=False)
        runs["tlops_plain_padded"] = lambda: run_tlops(ds, y, epochs, bucket=False, packing=False)
    out = {k: [] for k in runs}
    result = {"model": MODEL, "train_rows": len(y["train"]), "val_rows": len(y["val"]), "batch_size": BATCH,
              "max_length": MAX_LEN, "epochs": epochs, "repeat": repeat, "threads": torch.get_num_threads(), "load_1min": load}
    for i in range(repeat):  # interleaved, so drift in machine speed hits every variant alike; every other repeat in
        for k, fn in (list(runs.items())[::-1] if i % 2 else runs.items()):  # reverse order, so a load that falls
            out[k].append(fn())  # or rises through a repeat does not always favour the same variants
        load.append(os.getloadavg()[0])
        result.update(summary(out))
        save("finetune_throughput", result)  # after each repeat: a run stopped early still leaves the earlier ones
    return result


def summary(out: dict[str, list[dict]]) -> dict:
    samples = {k: [r["samples_per_s"] for r in v] for k, v in out.items()}
    best = {k: max(v) for k, v in samples.items()}
    med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}

    def ratio(ours: str, theirs: list[str]) -> dict:
        b = max(best[t] for t in theirs)
        m = max(med[t] for t in theirs)
        return {"best": best[ours] / b, "median": med[ours] / m, "vs": max(theirs, key=lambda t: best[t])}

    res = {"runs": out, "samples_per_s_best": best, "samples_per_s_median": med,
           "val_macro_f1": {k: [r["val_macro_f1"] for r in v] for k, v in out.items() if "val_macro_f1" in v[0]},
           "ratio_fp32_vs_trainer_best_sampler_fp32": ratio("tlops_bucketed", ["trainer_random", "trainer_group_by_length"]),
           "ratio_bf16_vs_trainer_best_sampler_bf16": ratio("tlops_bucketed_bf16", ["trainer_random_bf16", "trainer_group_by_length_bf16"]),
           "ratio_bf16_vs_trainer_best_sampler_fp32": ratio("tlops_bucketed_bf16", ["trainer_random", "trainer_group_by_length"]),
           "ratio_tlops_bf16_vs_fp32": ratio("tlops_bucketed_bf16", ["tlops_bucketed"]),
           "target": ">= 1.5x Trainer's best sampler"}
    if "tlops_bucketed_compile" in best:
        res["ratio_compile_vs_eager"] = ratio("tlops_bucketed_compile", ["tlops_bucketed"])
    if "tlops_plain" in best:
        res["ratio_packed_vs_padded_random_order"] = ratio("tlops_plain", ["tlops_plain_padded"])
        res["ratio_like_for_like"] = ratio("tlops_plain", ["trainer_random"])
    return res


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--rows", type=int, default=None, help="the first N train rows (default: all)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--more", action="store_true", help="also tlops in random order, packed and padded")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    main(a.epochs, a.repeat, a.rows, more=a.more, compile=not a.no_compile)
