"""GPU check of the text fine-tune (run on a CUDA machine): MiniLM on the WordNet demo train split through
`tlops.strategies.finetune.finetune`, bf16 autocast vs fp32 (and bf16 + torch.compile), samples/s and an estimated
MFU. Timing excludes epoch 0 (CUDA/cuDNN warm-up, compilation) and validation.

MFU = achieved model FLOP/s / peak dense bf16 FLOP/s, with training FLOPs per token counted as
6 x (non-embedding parameters) + 12 x layers x hidden x sequence length (attention scores and values),
over the padded tokens the GPU actually processed. Peak: 989 TFLOP/s (H100/H200 SXM dense bf16 spec).
Run: `python -m bench.finetune_gpu --model hf:/path/to/minilm --batch-sizes 32 256`.
"""

from __future__ import annotations

import argparse
import json

import torch

from bench.common import REPO
from tlops.backbones import load_backbone
from tlops.data import load_dataset
from tlops.modules.heads import ProbeHead
from tlops.strategies.finetune import FinetuneConfig, finetune
from tlops.training.batching import epoch_batches

PEAK_BF16 = 989e12


def padded_tokens(lengths: list[int], batch_size: int, epoch: int, bucket: bool) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in epoch_batches(len(lengths), batch_size, 0, epoch, lengths if bucket else None))


def one(model: str, batch: int, precision: str, compile_: bool, epochs: int, device: str = "cuda", limit: int | None = None) -> dict:
    ds = load_dataset(REPO / "data" / "text_wordnet")
    if limit:
        ds.splits["train"] = ds.splits["train"].iloc[:limit]
    y = {s: ds.label_ids(s) for s in ("train", "val")}
    b = load_backbone(model, max_length=128)
    torch.manual_seed(0)
    head = ProbeHead(b.num_features, len(ds.labels))
    cfg = FinetuneConfig(epochs=epochs, batch_size=batch, head_lr=1e-3, backbone_lr=1e-4 * (batch / 32) ** 0.5, device=device,
                         precision=precision, compile=compile_, augment=False, patience=epochs + 1)
    r = finetune(b, ds.inputs("train"), y["train"], ds.inputs("val"), y["val"], head, cfg, seed=0)
    history = r.state.history
    steady = history[1:]
    n = len(y["train"])
    secs = sum(h["epoch_train_seconds"] for h in steady)
    lengths = [len(t) for t in b.tokenize(ds.inputs("train"))]
    tokens = sum(padded_tokens(lengths, batch, h["epoch"], True) for h in steady)
    c = b.model.config
    emb = sum(p.numel() for p in b.model.embeddings.parameters())
    non_emb = sum(p.numel() for p in b.model.parameters()) - emb
    mean_len = tokens / (n * len(steady))
    flops = tokens * (6 * non_emb + 12 * c.num_hidden_layers * c.hidden_size * mean_len)
    return {"batch_size": batch, "precision": r.precision, "compile": compile_, "device": r.device,
            "samples_per_s": n * len(steady) / secs, "padded_tokens_per_s": tokens / secs,
            "mfu": flops / secs / PEAK_BF16, "val_macro_f1_by_epoch": [round(h["val_macro_f1"], 4) for h in history],
            "epoch_seconds": [round(h["epoch_train_seconds"], 3) for h in history]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="hf:sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[32, 256])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="cuda", help="cpu: a dry run of this script only")
    p.add_argument("--limit", type=int, default=None, help="train rows (dry runs)")
    a = p.parse_args()
    out = {"gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else "none", "torch": torch.__version__, "runs": []}
    for bs in a.batch_sizes:
        for precision, comp in [("fp32", False), ("bf16", False)] + ([("bf16", True)] if a.compile else []):
            try:
                out["runs"].append(one(a.model, bs, precision, comp, a.epochs, a.device, a.limit))
            except Exception as e:  # report and go on: one failing variant must not lose the others
                out["runs"].append({"batch_size": bs, "precision": precision, "compile": comp, "error": f"{type(e).__name__}: {e}"[:500]})
            print(json.dumps(out["runs"][-1]), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
