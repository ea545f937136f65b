"""What the training loop needs from a torch.distributed process group (DDP under `torchrun`), in one place.

`current()` is None in a plain process, so the single-process loop never touches torch.distributed. Under
`torchrun` (`tlops.training.ddp_main` initialises the group) the loop keeps the global batch: every
optimizer step sees the same `batch_size` rows in the same order as one process would, each rank taking
its strided share (`batching.rank_slice`), with the loss weighted so that DDP's gradient mean equals the
one-process gradient. So a config means the same run on 1 or N processes, and a checkpoint written by one
resumes on any number.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
from torch import distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, the result and logs."""
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier()

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank (small picklable values: RNG states, loss sums)."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def from_main(self, fn: Callable[[], T]) -> T:
        """`fn()` computed on rank 0 only and sent to every rank (validation: one evaluation, one decision)."""
        box = [fn() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_int(self, n: int) -> int:
        return sum(self.gather(n))


def current() -> Dist | None:
    """The process group this process belongs to, or None when it runs alone (world size 1 counts as alone)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return Dist(dist.get_rank(), dist.get_world_size())


class Joint(nn.Module):
    """Backbone, head and objective under one module, so that one DistributedDataParallel wrapper sees every
    trained parameter and its forward is the objective's: (batch, step) -> named loss terms."""

    def __init__(self, net, objective: nn.Module):
        super().__init__()
        self.model, self.head, self.objective = net.backbone.model, net.head, objective
        self.net = net  # plain object (not a module): the objective calls it, its modules are the ones above

    def forward(self, batch, step: int) -> dict[str, torch.Tensor]:
        return self.objective(self.net, batch, step)


class Replicated:
    """The DDP wrapper of a `Joint`, rebuilt when the set of trainable parameters changes (gradual
    unfreezing): DDP fixes the parameters it synchronises when it is built."""

    def __init__(self, joint: Joint, device: torch.device):
        self.joint, self.device = joint, device
        self._ddp: nn.parallel.DistributedDataParallel | None = None
        self._trainable: tuple[bool, ...] | None = None

    def module(self) -> nn.parallel.DistributedDataParallel:
        trainable = tuple(p.requires_grad for p in self.joint.parameters())
        if self._ddp is None or trainable != self._trainable:
            # find_unused_parameters: a backbone's pooler or upper layers (layers: [-2]) get no gradient.
            # forward_sync_buffers=False: L2-SP anchors are a full copy of the backbone (equal on every rank);
            # sending them every step would cost a model-sized broadcast. BatchNorm running statistics, when
            # `norm_stats: train`, therefore stay per rank after the wrap (rank 0's are checkpointed).
            self._ddp = nn.parallel.DistributedDataParallel(
                self.joint, device_ids=[torch.cuda.current_device()] if self.device.type == "cuda" else None,
                find_unused_parameters=True, forward_sync_buffers=False)
            self._trainable = trainable
        return self._ddp

    def step_context(self, syncs: bool):
        """Gradient accumulation: only the micro-batch that ends an optimizer step all-reduces gradients."""
        return contextlib.nullcontext() if syncs else self.module().no_sync()


def rank_weight(n_local: int, n_global: int, world: int) -> float:
    """Scale of a rank's mean loss so that DDP's gradient mean over ranks equals the gradient of the global
    batch's mean loss: sum_r (n_r * W / N) * mean_r / W = (1/N) * sum of row losses. Regularisers (L2-SP,
    the same on every rank) come out at weight sum_r n_r / N = 1, as in one process."""
    return n_local * world / n_global
