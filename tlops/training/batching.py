"""Batch order for training loops.

Every random choice here comes from a generator seeded by (seed, epoch[, batch]), never from global
state, so the batches of any epoch can be rebuilt exactly after a crash: the data-order state of a
checkpoint is just (epoch, next batch index).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

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


def rank_slice(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """This rank's share of one global batch under DDP: every `world`-th row from `rank`. Strided, so that the
    length-sorted batches of text spread their lengths evenly over the ranks; a share may be empty when the
    batch has fewer rows than ranks (the loop then runs a zero-weight row to keep the collectives in step)."""
    return list(batch[rank::world])


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Sequence indices grouped into rows of at most `capacity` tokens (first-fit decreasing: each sequence, longest
    first, goes into the first row with room), so a batch of variable-length texts runs as a few full rows instead
    of one padded row per text. A sequence longer than `capacity` gets a row of its own."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        for r, room in enumerate(free):
            if n <= room:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(capacity - n)
    return rows
