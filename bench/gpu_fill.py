"""GPU check on a model that fills the chip (issue 14): a BERT-base-sized encoder (768 hidden, 12 layers, 12 heads;
RANDOM weights: a throughput benchmark, not a pretrained model) fine-tuned on fixed-length synthetic texts, tlops's
loop (`tlops.strategies.finetune.finetune`) vs Hugging Face `Trainer` in one process, bf16 autocast, fused AdamW,
PyTorch SDPA attention, optionally torch.compile; samples/s and MFU.

MFU = model FLOPs / s / peak dense bf16 FLOP/s; training FLOPs per token = 6 x non-embedding parameters +
12 x layers x hidden x sequence (attention scores and values); every sequence is exactly `--seq` tokens (texts
longer than that, truncated), so padded and real tokens are the same. Peak 989 TFLOP/s (H100/H200 SXM dense bf16).
Both sides: the same model folder, batch, sequence length, learning rate, clipping at 1.0, linear schedule, no
validation in the timing (tlops: its `epoch_train_seconds` after epoch 0; Trainer: `train_runtime` of a second
`train()` after a warm-up one).

    python -m bench.gpu_fill --seq 128 512 --batch 64 --rows 8192            # on the GPU machine
    python -m bench.gpu_fill --device cpu --tiny --rows 64 --seq 32 --batch 8  # a dry run of the code paths
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PEAK_BF16 = 989e12


def make_model(folder: Path, tiny: bool) -> Path:
    """A random-weight BERT-base (or tiny) with MiniLM's real tokenizer files (vocab 30522, as BERT's)."""
    from transformers import BertConfig, BertModel

    from tests.helpers import minilm_folder

    torch.manual_seed(0)
    size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if tiny else \
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    BertModel(BertConfig(vocab_size=30522, max_position_embeddings=512, attn_implementation="sdpa", **size)).save_pretrained(
        folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(minilm_folder() / name, folder / name)
    return folder


def texts(rows: int, seq: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Texts of more than `seq` word pieces each (so every row is truncated to exactly `seq`), 2 balanced labels."""
    rng = np.random.default_rng(seed)
    words = ["alpha", "river", "stone", "cloud", "paper", "light", "metal", "green", "quiet", "north"]
    return [" ".join(rng.choice(words, size=seq + 8)) for _ in range(rows)], np.arange(rows) % 2


def model_flops_per_token(model, seq: int) -> float:
    c = model.config
    emb = sum(p.numel() for p in model.embeddings.parameters())
    return 6 * (sum(p.numel() for p in model.parameters()) - emb) + 12 * c.num_hidden_layers * c.hidden_size * seq


def run_tlops(folder: Path, items, y, seq: int, batch: int, epochs: int, device: str, compile_: bool) -> dict:
    from tlops.backbones import load_backbone
    from tlops.modules.heads import ProbeHead
    from tlops.strategies.finetune import FinetuneConfig, finetune

    b = load_backbone(f"hf:{folder}", max_length=seq)
    torch.manual_seed(0)
    head = ProbeHead(b.num_features, 2)
    cfg = FinetuneConfig(epochs=epochs, batch_size=batch, head_lr=1e-4, backbone_lr=1e-4, device=device, precision="bf16",
                         compile=compile_, augment=False, bucket_by_length=False, patience=epochs + 1, warmup_ratio=0.0,
                         max_grad_norm=1.0, eval_batch_size=batch)
    r = finetune(b, items, y, items[:batch], y[:batch], head, cfg, seed=0)  # val: one batch (not timed)
    steady = r.state.history[1:]
    secs = sum(h["epoch_train_seconds"] for h in steady)
    n = len(items) * len(steady)
    return {"samples_per_s": n / secs, "tokens": n * seq, "seconds": secs, "precision": r.precision, "device": r.device,
            "flops_per_token": model_flops_per_token(b.model, seq)}


def run_trainer(folder: Path, items, y, seq: int, batch: int, epochs: int, device: str, compile_: bool) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(list(items), truncation=True, max_length=seq, padding="max_length")
    data = Dataset.from_dict({**enc, "labels": [int(v) for v in y]})
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, attn_implementation="sdpa")
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, num_train_epochs=epochs - 1, learning_rate=1e-4,
                                 bf16=True, optim="adamw_torch_fused", lr_scheduler_type="linear", max_grad_norm=1.0,
                                 logging_strategy="no", save_strategy="no", report_to=[], dataloader_num_workers=0,
                                 torch_compile=compile_, use_cpu=device == "cpu", seed=0)
        warm = TrainingArguments(**{**args.to_dict(), "num_train_epochs": 1, "output_dir": out})
        Trainer(model=model, args=warm, train_dataset=data).train()  # warm-up: CUDA context, kernels, compilation
        t = time.perf_counter()
        m = Trainer(model=model, args=args, train_dataset=data).train().metrics
        wall = time.perf_counter() - t
    n = len(items) * (epochs - 1)
    return {"samples_per_s": n / m["train_runtime"], "tokens": n * seq, "seconds": m["train_runtime"], "wall_s": wall,
            "flops_per_token": model_flops_per_token(model.bert, seq)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, nargs="+", default=[128, 512])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rows", type=int, default=8192, help="training rows per epoch")
    p.add_argument("--epochs", type=int, default=3, help="tlops: epoch 0 is warm-up; Trainer: one warm-up train() of 1 epoch, then epochs - 1")
    p.add_argument("--compile", action="store_true", help="also both sides with torch.compile")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide model (dry runs)")
    a = p.parse_args()
    out = {"gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else "none", "torch": torch.__version__,
           "model": "tiny random BERT" if a.tiny else "BERT-base-sized, random weights", "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_model(Path(tmp) / "bert", a.tiny)
        for seq in a.seq:
            items, y = texts(a.rows, seq)
            batch = a.batch if seq <= 128 else max(1, a.batch // 4)  # the same memory per batch at 4x the length
            for compile_ in [False] + ([True] if a.compile else []):
                for side, fn in (("tlops", run_tlops), ("trainer", run_trainer)):
                    row = {"side": side, "seq": seq, "batch_size": batch, "compile": compile_}
                    try:
                        r = fn(folder, items, y, seq, batch, a.epochs, a.device, compile_)
                        row |= {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "flops_per_token"}
                        row["mfu"] = round(r["tokens"] * r["flops_per_token"] / r["seconds"] / PEAK_BF16, 4)
                    except Exception as e:  # report and go on: one failing variant must not lose the others
                        row["error"] = f"{type(e).__name__}: {e}"[:500]
                    out["runs"].append(row)
                    print(json.dumps(row), flush=True)
                pair = [r for r in out["runs"] if r["seq"] == seq and r["compile"] == compile_ and "samples_per_s" in r]
                if len(pair) == 2:
                    print(json.dumps({"seq": seq, "compile": compile_, "ratio_tlops_vs_trainer":
                                      round(pair[0]["samples_per_s"] / pair[1]["samples_per_s"], 3)}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
