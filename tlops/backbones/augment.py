"""Training-time augmentation on preprocessed batches; each backbone's `augment` picks the one for its modality.

Every random draw comes from the generator passed in (seeded by (seed, epoch, batch) in the fine-tuning loop),
never from global state, so an epoch's batches can be rebuilt exactly after a crash. The order of draws is
part of the contract: changing it changes every fine-tuning result.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


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
