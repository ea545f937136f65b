"""Episodes over a split, one sampler per kind of target: N-way K-shot Q-query episodes of classes
(`EpisodeSampler`: class -> row indices) and K-shot Q-query episodes of a regression's tasks (`TaskEpisodeSampler`:
the `group:` column's groups of rows with numeric targets). Each sampler also says what an episode's support and
query targets are (`targets`), so the meta-training loop (`tlops.training.meta`) is the same for both.

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
TASK_EPISODE_STREAM = 7927  # separates the task episodes' generators from the class episodes' and the loop's


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

    def targets(self, ep: Episodes, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(support targets, query targets) of a batch of episodes: the support's one-hot way assignment (N*K, N),
        shared by every episode (rows are class-major), and the query's way indices (T, N*Q). `y` is not read."""
        onehot = torch.nn.functional.one_hot(way_targets(self.ways, self.shots), self.ways).float()
        return onehot, way_targets(self.ways, self.queries).expand(len(ep.support), -1)


@dataclass(frozen=True)
class TaskEpisodes:
    """A batch of T episodes as row indices into the split: support (T, K), query (T, Q), and each one's task."""

    support: np.ndarray
    query: np.ndarray
    tasks: np.ndarray


class TaskEpisodeSampler:
    """Episodes from the tasks of `groups` (one task name per row) that have >= shots + queries rows: an episode is
    one task, K support rows whose targets are known and Q query rows to predict."""

    def __init__(self, groups: np.ndarray, shots: int, queries: int, seed: int):
        self.shots, self.queries, self.seed = shots, queries, seed
        groups = np.asarray(groups)
        by_task = {str(g): np.flatnonzero(groups == g) for g in np.unique(groups)}
        self.rows = {g: idx for g, idx in sorted(by_task.items()) if len(idx) >= shots + queries}
        self.tasks = sorted(self.rows)
        if not self.tasks:
            most = max((len(v) for v in by_task.values()), default=0)
            raise ValueError(f"{shots}-shot {queries}-query episodes need a task with >= {shots + queries} rows; the largest has "
                             f"{most}. Add rows to the tasks, or lower shots/queries")

    def episode(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        g = generator(self.seed, TASK_EPISODE_STREAM, i)
        task = self.tasks[int(torch.randint(len(self.tasks), (1,), generator=g))]
        rows = self.rows[task]
        order = rows[torch.randperm(len(rows), generator=g)[: self.shots + self.queries].numpy()]
        return order[: self.shots], order[self.shots :], task

    def batch(self, start: int, count: int) -> TaskEpisodes:
        eps = [self.episode(i) for i in range(start, start + count)]
        return TaskEpisodes(np.stack([e[0] for e in eps]), np.stack([e[1] for e in eps]), np.array([e[2] for e in eps], dtype=object))

    def targets(self, ep: TaskEpisodes, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(support targets (T, K), query targets (T, Q)): the rows' own targets `y`."""
        return y[ep.support], y[ep.query]


def way_targets(ways: int, per_way: int) -> torch.Tensor:
    """Episode-local targets of class-major rows: [0]*per_way + [1]*per_way + ..."""
    return torch.arange(ways).repeat_interleave(per_way)
