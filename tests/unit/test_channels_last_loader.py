"""embed_all with DataLoader workers (decoding overlapped with the forward pass) gives the rows of the plain loop,
in the same order, with the workers on one torch thread each."""

from __future__ import annotations

import numpy as np
import torch

from tlops.features import embed_all


class _Files:
    """A file-like backbone whose collate reports the torch threads of the process that ran it."""

    num_features = 3

    def encode(self, items):
        return list(items)

    def lengths(self, encoded):
        return None

    def collate(self, items):
        x = torch.tensor([[float(i), float(i) ** 2] for i in items])
        return torch.cat([x, torch.full((len(items), 1), float(torch.get_num_threads()))], 1)

    def embed(self, batch):
        return batch


def test_workers_give_the_same_rows_in_order():
    b, items = _Files(), [str(i) for i in range(23)]
    plain = embed_all(b, items, batch_size=4)
    loaded = embed_all(b, items, batch_size=4, workers=2)
    assert np.array_equal(plain[:, :2], loaded[:, :2]), "rows differ or came back out of order"
    assert np.array_equal(loaded[:, 2], np.ones(23)), f"workers ran collate with {set(loaded[:, 2])} torch threads, not 1"
