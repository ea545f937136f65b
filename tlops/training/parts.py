"""Fine-tuning primitives, composed by the training loop and the strategies (fastai `fine_tune`, TLlib `get_parameters`):
which backbone groups train, per-group learning rates, the L2-SP pull toward pretrained weights,
and the warm-up + decay schedule. Plain functions over a backbone's input->output parameter groups.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def set_trainable(groups: list[list[nn.Parameter]], top_n: int | None) -> None:
    """Train the top `top_n` groups (None: all; 0: none, only the head trains); freeze the rest."""
    n = len(groups) if top_n is None else max(0, min(top_n, len(groups)))
    for i, group in enumerate(groups):
        for p in group:
            p.requires_grad_(i >= len(groups) - n)


def gradual_top_n(epoch: int, every: int, start: int = 0) -> int:
    """Gradual unfreezing: `start` groups trainable at epoch 0, one more every `every` epochs."""
    return start + (epoch // every if every > 0 else 0)


def discriminative_param_groups(backbone_groups: list[list[nn.Parameter]], head: nn.Module, head_lr: float,
                                backbone_lr: float, layer_decay: float = 1.0, weight_decay: float = 0.0,
                                backbone_weight_decay: float | None = None) -> list[dict]:
    """Optimizer groups: the head at `head_lr`; the top backbone group at `backbone_lr`, each group below it
    multiplied by `layer_decay` once more. Biases and norm weights (1-d) get no weight decay.
    Frozen parameters are included (they get no gradient, so AdamW skips them) so that gradual
    unfreezing needs no new optimizer. `backbone_weight_decay` overrides the decay of backbone groups."""
    out: list[dict] = []
    n = len(backbone_groups)
    bwd = weight_decay if backbone_weight_decay is None else backbone_weight_decay
    named = [("head", list(head.parameters()), head_lr, weight_decay)]
    named += [(f"backbone.{i}", g, backbone_lr * layer_decay ** (n - 1 - i), bwd) for i, g in enumerate(backbone_groups)]
    for name, params, lr, wd in named:
        decay = [p for p in params if p.dim() > 1]
        no_decay = [p for p in params if p.dim() <= 1]
        if decay:
            out.append({"name": name, "params": decay, "lr": lr, "weight_decay": wd})
        if no_decay:
            out.append({"name": f"{name}.no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0})
    return out


class L2SP(nn.Module):
    """weight/2 * sum ||w - w_pretrained||^2 over the backbone: the regulariser R that keeps the fine-tuned
    weights near the starting point (Li et al., 2018). Zero at the pretrained weights. The anchors are
    non-persistent buffers: they follow `.to(device)` but stay out of checkpoints (a rerun recomputes them
    from the pretrained weights it loads)."""

    def __init__(self, params: list[nn.Parameter], weight: float):
        super().__init__()
        self.params = list(params)  # a plain list: L2SP does not own (or optimise) the backbone's parameters
        for i, p in enumerate(self.params):
            self.register_buffer(f"anchor_{i}", p.detach().clone(), persistent=False)
        self.weight = weight

    def forward(self) -> torch.Tensor:
        if not self.params or self.weight == 0:
            return torch.zeros(())
        anchors = (getattr(self, f"anchor_{i}") for i in range(len(self.params)))
        total = sum(((p - a) ** 2).sum() for p, a in zip(self.params, anchors) if p.requires_grad)
        return 0.5 * self.weight * total if torch.is_tensor(total) else torch.zeros(())


def l2sp_regularisers(trained, weight: float) -> dict[str, L2SP]:
    """The objective's `regularisers` entry for L2-SP over `trained.parameter_groups()`; none when `weight` is 0."""
    return {"l2sp": L2SP([p for g in trained.parameter_groups() for p in g], weight)} if weight > 0 else {}


def tunes_backbone(opts) -> bool:
    """Whether loop options `opts` train any backbone group: `trainable` "all" or N > 0, or gradual unfreezing (which
    tunes from epoch 0 on)."""
    return opts.trainable not in (0, "0", None, "none") or getattr(opts, "unfreeze_every", 0) > 0


class MapsBackbone:
    """A backbone as the loop sees it when the head reads its feature maps: fine-tuned, its torch model and parameter
    groups; frozen, nothing to train or checkpoint (an empty module: the head reads maps cached once)."""

    def __init__(self, backbone, tuned: bool):
        self.backbone, self.tuned = backbone, tuned
        self.model = backbone.model if tuned else nn.Module()

    def parameter_groups(self) -> list:
        return self.backbone.parameter_groups() if self.tuned else []


def warmup_then_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                      kind: str = "cosine") -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to each group's lr, then cosine or linear decay to 0 at `total_steps` (or constant)."""
    if kind not in ("cosine", "linear", "constant"):
        raise ValueError(f"unknown schedule {kind!r}; use 'cosine', 'linear' or 'constant'")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
