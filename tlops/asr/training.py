"""CTC training on the shared training loop (`tlops.training.loop.fit`), as NER and QA train there.

What the loop needs from speech recognition, and nothing else:
- `ClipData`: the clips of one split as model-ready batches: the frozen frame features (probe: computed once, padded per
  batch) or the backbone's collated input (fine-tuning: each clip decoded and preprocessed once), each clip's frame count,
  and its transcript as character ids (a padded (B, L) target, -1 past its end). With the loop's `augment`, a batch also
  carries SpecAugment-style masks (Park et al., 2019) drawn from the batch's seeded generator: `time_masks` spans of up to
  `time_width` frames and `feature_masks` bands of up to `feature_width` feature dimensions set to the train mean (0 after
  standardisation), so a rerun and a resumed run draw the same masks.
- `FrameNet`: the loop's net: (B, T, D) frames (cached, or the backbone's `frame_states`) and their lengths -> the
  `CTCHead` (the `FrameAdapter`, dropout, the linear CTC layer) -> (B, T * k, 1 + alphabet) log-probabilities.
- `CTCTask`: the loss (`torch.nn.CTCLoss`, blank 0, `zero_infinity`) and the epoch's validation (greedy decoding of every
  val clip, jiwer WER and CER); `val_wer` selects (lower is better).

So the CTC head gets what every loop task gets: per-epoch rows, the best epoch kept (and logged), its checkpoint, early-
stopping patience, resume after a crash, device and precision, live progress, backbone groups (`trainable`, gradual
unfreezing, `layer_decay`), L2-SP.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlops.asr.text import encode
from tlops.training.batching import epoch_batches, to_device
from tlops.training.loop import Net
from tlops.training.objectives import Batch, LoopTask, Objective


@dataclass(frozen=True)
class Masking:
    """SpecAugment-style masks on the adapter's standardised input frames while training (0: none of that kind)."""

    time_masks: int = 0
    time_width: int = 2  # frames (speech_embedding: 80 ms each)
    feature_masks: int = 0
    feature_width: int = 8  # feature dimensions

    @property
    def on(self) -> bool:
        return self.time_masks > 0 or self.feature_masks > 0


def _spans(g: torch.Generator, size: int, count: int, width: int) -> torch.Tensor:
    """A (size,) float mask: 1 kept, 0 inside `count` random spans of 0..`width` positions."""
    keep = torch.ones(size)
    for _ in range(count):
        w = int(torch.randint(0, width + 1, (1,), generator=g))
        if w == 0 or size <= w:
            continue
        s = int(torch.randint(0, size - w + 1, (1,), generator=g))
        keep[s:s + w] = 0.0
    return keep


class ClipData:
    """Clips of one split for the loop (see the module docstring). Exactly one of `frames` (cached frame features) or
    `backbone` + `paths` (fine-tuning: clips collated once) is given; `n_frames`: each clip's frame count."""

    def __init__(self, texts: Sequence[str], alphabet: Sequence[str], n_frames: Sequence[int], dim: int,
                 frames: list[np.ndarray] | None = None, backbone: Any = None, paths: Sequence[str] | None = None,
                 masking: Masking = Masking()):
        self.texts, self.dim, self.masking = list(texts), int(dim), masking
        self.lengths = [int(n) for n in n_frames]
        self.targets = np.arange(len(self.texts))  # row ids (the character targets: `batch`)
        self.labels = [encode(t, list(alphabet)) for t in self.texts]
        self.frames = frames
        self.collated = [backbone.collate([p]) for p in paths] if frames is None else None

    def __len__(self) -> int:
        return len(self.texts)

    def order(self, seed: int, epoch: int, batch_size: int, bucket_by_length: bool) -> list[list[int]]:
        return epoch_batches(len(self), batch_size, seed, epoch, self.lengths if bucket_by_length else None)

    def inputs(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([self.lengths[i] for i in idx], dtype=torch.long)
        if self.frames is not None:
            t = int(lengths.max())
            x = np.zeros((len(idx), t, self.frames[0].shape[1]), np.float32)
            for b, i in enumerate(idx):
                x[b, :len(self.frames[i])] = self.frames[i]
            return {"frames": torch.from_numpy(x), "lengths": lengths}
        parts = [self.collated[i] for i in idx]
        if isinstance(parts[0], dict):  # a transformers feature extractor's fields, one key each (to_device is flat)
            return {**{f"audio.{k}": torch.cat([p[k] for p in parts]) for k in parts[0]}, "lengths": lengths}
        return {"audio": torch.cat(parts), "lengths": lengths}

    def batch(self, idx: Sequence[int], g: torch.Generator | None = None, flip: bool = True) -> Batch:
        inputs = self.inputs(idx)
        if g is not None and self.masking.on:
            m, t = self.masking, int(inputs["lengths"].max())
            inputs["time_keep"] = torch.stack([_spans(g, t, m.time_masks, m.time_width) for _ in idx])
            inputs["feature_keep"] = torch.stack([_spans(g, self.dim, m.feature_masks, m.feature_width) for _ in idx])
        width = max(1, max(len(self.labels[i]) for i in idx))
        y = torch.full((len(idx), width), -1, dtype=torch.long)
        for b, i in enumerate(idx):
            y[b, :len(self.labels[i])] = torch.as_tensor(self.labels[i], dtype=torch.long)
        return Batch(inputs, y)


class CachedFrames:
    """The loop's backbone for a head-only run on cached frames: no parameters; `frame_states` is the batch's frames."""

    def __init__(self):
        self.model = nn.Module()

    def parameter_groups(self) -> list:
        return []


class CTCHead(nn.Module):
    """The trained part on top of the frames: the `FrameAdapter` (standardisation, BiGRU or nothing), dropout on its
    output, then the linear CTC layer (`ProbeHead`) whose k * V outputs a frame are read as k slots. Input: (frames,
    lengths, time_keep, feature_keep) (the keeps: the masks, or None); output (B, T * k, V) log-probabilities."""

    def __init__(self, adapter: nn.Module, head: nn.Module, k: int, n_symbols: int, dropout: float = 0.0):
        super().__init__()
        self.adapter, self.head, self.k, self.n_symbols = adapter, head, int(k), int(n_symbols)
        self.drop = nn.Dropout(dropout)

    def forward(self, x) -> torch.Tensor:
        frames, lengths, time_keep, feature_keep = x
        keep = None
        if time_keep is not None:
            keep = time_keep[:, :frames.shape[1], None]
        if feature_keep is not None:
            keep = feature_keep[:, None, :] if keep is None else keep * feature_keep[:, None, :]
        out = self.head(self.drop(self.adapter(frames, lengths, keep)))
        b, t, _ = out.shape
        return torch.log_softmax(out.float().reshape(b, t * self.k, self.n_symbols), dim=-1)


class FrameNet(Net):
    """Frames (cached, or the backbone's `frame_states` of the collated clips, cut to the batch's longest clip) and their
    lengths -> the `CTCHead`."""

    def features(self, inputs: dict) -> tuple:
        lengths = inputs["lengths"]
        if "frames" in inputs:
            frames = inputs["frames"]
        else:
            audio = inputs["audio"] if "audio" in inputs else {k[6:]: v for k, v in inputs.items() if k.startswith("audio.")}
            frames = self.backbone.frame_states(audio)
            lengths = lengths.clamp(max=frames.shape[1])
            frames = frames[:, :int(lengths.max())]
        return frames.float(), lengths, inputs.get("time_keep"), inputs.get("feature_keep")


class CTCTask(LoopTask):
    """CTC loss over the slots; validation: greedy transcripts of the val clips, WER/CER (jiwer); `val_wer` selects."""

    selection_metric = "val_wer"
    maximize = False

    def __init__(self, alphabet: Sequence[str], k: int):
        self.alphabet, self.k = list(alphabet), int(k)
        self.ctc = nn.CTCLoss(blank=0, zero_infinity=True)

    def loss(self, log_probs: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        target_lengths = (targets >= 0).sum(1)
        flat = targets[targets >= 0]
        return self.ctc(log_probs.float().transpose(0, 1), flat, lengths.clamp(max=log_probs.shape[1] // self.k) * self.k, target_lengths)

    def log_probs(self, net: FrameNet, data: ClipData, evaluation) -> list[np.ndarray]:
        """Per clip its (slots, V) log-probabilities (eval mode, length-sorted batches)."""
        out: list = [None] * len(data)
        evaluation.eval()
        order = sorted(range(len(data)), key=lambda i: -data.lengths[i])
        with torch.inference_mode(), evaluation.autocast():
            for s in range(0, len(order), evaluation.batch_size):
                idx = order[s:s + evaluation.batch_size]
                lp = net(to_device(data.inputs(idx), evaluation.device)).float().cpu().numpy()
                for b, i in enumerate(idx):
                    out[i] = lp[b, :data.lengths[i] * self.k]
        return out

    def validate(self, net: FrameNet, data: ClipData, evaluation) -> dict[str, float]:
        from tlops.asr.decode import greedy
        from tlops.asr.metrics import error_rates

        rates = error_rates(data.texts, [greedy(p, self.alphabet) for p in self.log_probs(net, data, evaluation)])
        return {"val_wer": rates["wer"], "val_cer": rates["cer"]}


class CTCObjective(Objective):
    """The CTC loss of a batch, plus regularisers (L2-SP) as named terms."""

    def __init__(self, task: CTCTask, regularisers: dict[str, nn.Module] | None = None):
        super().__init__()
        self.task = task
        self.regularisers = nn.ModuleDict(regularisers or {})

    def forward(self, net, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        frames, lengths, tk, fk = net.features(batch.inputs)
        terms = {"task": self.task.loss(net.head((frames, lengths, tk, fk)), batch.targets, lengths)}
        for name, reg in self.regularisers.items():
            terms[name] = reg()
        return terms


def data_digest(paths: Sequence[Sequence[str]], texts: Sequence[Sequence[str]], seconds: Sequence[Sequence[float]]) -> np.ndarray:
    """The splits' clip paths, transcripts and durations as bytes (a checkpoint folder is this data's only)."""
    h = hashlib.sha256(json.dumps([[list(map(str, p)), list(t), [round(float(x), 4) for x in s]]
                                   for p, t, s in zip(paths, texts, seconds)]).encode())
    return np.frombuffer(h.digest(), dtype=np.uint8)


def probe_options(epochs: int, batch_size: int, lr: float, weight_decay: float, augment: bool = False, **more):
    """The loop's options for the CTC head on frozen frames: AdamW at `lr`, constant LR, no clipping, no early stop,
    shuffled (not length-bucketed) batches, resume from the run's checkpoint."""
    from tlops.training.loop import LoopOptions

    return LoopOptions(**{"epochs": epochs, "batch_size": batch_size, "head_lr": lr, "weight_decay": weight_decay, "schedule": "constant",
                          "warmup_ratio": 0.0, "max_grad_norm": None, "patience": epochs, "trainable": 0, "bucket_by_length": False,
                          "augment": augment, "norm_stats": "frozen", **more})


def fit_ctc(net: FrameNet, train: ClipData, val: ClipData, alphabet: Sequence[str], k: int, opts, seed: int = 0,
            checkpoint_dir: Path | None = None, callbacks: Sequence = (), log: Callable[[dict], None] | None = None,
            l2sp: float = 0.0):
    """Train `net` (its head a `CTCHead`) with CTC on the shared loop; the best val-WER epoch loaded. Returns the loop's
    result."""
    from tlops.training.callbacks import epoch_rows
    from tlops.training.loop import fit
    from tlops.training.parts import l2sp_regularisers

    task = CTCTask(alphabet, k)
    return fit(net, CTCObjective(task, l2sp_regularisers(net.backbone, l2sp)), train, val, opts, seed=seed, task=task,
               checkpoint_dir=checkpoint_dir, callbacks=[*callbacks, *epoch_rows(log)])
