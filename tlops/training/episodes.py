"""N-way K-shot Q-query episodes over a labelled split (class -> row indices).

Episode `i` is a pure function of (seed, i): its generator is seeded from both, never from global state,
so meta-training that resumes at optimizer step s rebuilds exactly the episodes it would have seen, and
an evaluation's 600 episodes are the same on every machine. Rows inside an episode are class-major
(class 0's K support rows, then class 1's, ...), so prototypes are a reshape-and-mean and a batch of
episodes stacks into fixed-shape tensors that `torch.func.vmap` maps over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tlops.training.batching import generator

EPISODE_STREAM = 7919  # separates episode generators from the loop's other (seed, epoch, batch) generators


@dataclass(frozen=True)
class Episodes:
    """A batch of T episodes as row indices into the split: support (T, N*K), query (T, N*Q), and the
    split's class index of each episode's way (T, N). Way j's rows are the j-th block of K (or Q)."""

    support: np.ndarray
    query: np.ndarray
    classes: np.ndarray

    @property
    def ways(self) -> int:
        return self.classes.shape[1]


class EpisodeSampler:
    """Samples episodes from the classes of `labels` (one label index per row) that have >= shots + queries rows."""

    def __init__(self, labels: np.ndarray, ways: int, shots: int, queries: int, seed: int):
        self.ways, self.shots, self.queries, self.seed = ways, shots, queries, seed
        labels = np.asarray(labels)
        by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
        self.rows = {c: idx for c, idx in sorted(by_class.items()) if len(idx) >= shots + queries}
        self.classes = np.array(sorted(self.rows), dtype=np.int64)
        if len(self.classes) < ways:
            counts = {c: len(idx) for c, idx in sorted(by_class.items())}
            raise ValueError(f"{ways}-way {shots}-shot {queries}-query episodes need {ways} classes with >= {shots + queries} rows "
                             f"each; only {len(self.classes)} have that (rows per class: {counts}). Add rows or classes, "
                             "or lower ways/shots/queries")

    def episode(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(support rows (N*K,), query rows (N*Q,), classes (N,)) of episode `i`."""
        g = generator(self.seed, EPISODE_STREAM, i)
        pick = self.classes[torch.randperm(len(self.classes), generator=g)[: self.ways].numpy()]
        support, query = [], []
        for c in pick:
            rows = self.rows[int(c)]
            order = rows[torch.randperm(len(rows), generator=g)[: self.shots + self.queries].numpy()]
            support.append(order[: self.shots])
            query.append(order[self.shots :])
        return np.concatenate(support), np.concatenate(query), pick

    def batch(self, start: int, count: int) -> Episodes:
        """Episodes start .. start+count-1, stacked."""
        parts = [self.episode(i) for i in range(start, start + count)]
        return Episodes(*(np.stack([p[k] for p in parts]) for k in range(3)))


def way_targets(ways: int, per_way: int) -> torch.Tensor:
    """Episode-local targets of class-major rows: [0]*per_way + [1]*per_way + ..."""
    return torch.arange(ways).repeat_interleave(per_way)
