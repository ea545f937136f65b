"""Batch order and light augmentation for fine-tuning.

Every random choice here comes from a generator seeded by (seed, epoch[, batch]), never from global
state, so the batches of any epoch can be rebuilt exactly after a crash: the data-order state of a
checkpoint is just (epoch, next batch index).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

BUCKET_BATCHES = 50  # length-sort windows of this many batches (Hugging Face's "megabatches" idea)


def generator(*keys: int) -> torch.Generator:
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + int(k)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Shuffled index batches for one epoch. With `lengths` (text), each window of BUCKET_BATCHES batches is
    sorted by length so a batch pads to similar lengths, and the batch order is shuffled again."""
    g = generator(seed, epoch)
    perm = torch.randperm(n, generator=g).tolist()
    if lengths is None:
        return [perm[s : s + batch_size] for s in range(0, n, batch_size)]
    window = batch_size * BUCKET_BATCHES
    batches = []
    for s in range(0, n, window):
        chunk = sorted(perm[s : s + window], key=lambda i: -lengths[i])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    return batch.to(device, non_blocking=True)


def augment_image(x: torch.Tensor, g: torch.Generator, flip: bool = True, min_scale: float = 0.8) -> torch.Tensor:
    """(B, C, H, W) -> random resized crop (area min_scale..1, aspect 3/4..4/3) back to H x W, then a random
    horizontal flip. Done on the preprocessed tensor, so it works for every image backbone."""
    b, _, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        area = float(torch.empty(1).uniform_(min_scale, 1.0, generator=g)) * h * w
        ratio = float(torch.exp(torch.empty(1).uniform_(-0.2877, 0.2877, generator=g)))  # log(3/4)..log(4/3)
        ch = max(1, min(h, int(round((area / ratio) ** 0.5))))
        cw = max(1, min(w, int(round((area * ratio) ** 0.5))))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
        crop = x[i : i + 1, :, top : top + ch, left : left + cw]
        img = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
        if flip and bool(torch.rand(1, generator=g) < 0.5):
            img = img.flip(-1)
        out[i] = img[0]
    return out


def _shift(x: torch.Tensor, axis: int, g: torch.Generator, max_fraction: float) -> torch.Tensor:
    n = x.shape[axis]
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        k = int(torch.randint(-int(n * max_fraction), int(n * max_fraction) + 1, (1,), generator=g))
        out[i] = torch.roll(x[i], shifts=k, dims=axis - 1 if axis > 0 else axis)
    return out


def augment_audio(batch: Any, g: torch.Generator, time_axis: int = -1, max_fraction: float = 0.1) -> Any:
    """Random time shift of up to `max_fraction` of the clip, per example, on the preprocessed input
    (waveform samples or spectrogram frames, along the backbone's `time_axis`)."""
    if isinstance(batch, dict):
        key = "input_values" if "input_values" in batch else "input_features"
        axis = -1 if key == "input_values" else time_axis
        return {**batch, key: _shift(batch[key], axis, g, max_fraction)}
    return _shift(batch, time_axis, g, max_fraction)


def augment(batch: Any, modality: str, g: torch.Generator, flip: bool = True, time_axis: int = -1) -> Any:
    if modality == "image":
        return augment_image(batch, g, flip=flip)
    if modality == "audio":
        return augment_audio(batch, g, time_axis=time_axis)
    return batch
