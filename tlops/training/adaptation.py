"""Domain-alignment building blocks (TLlib's `modules/grl.py`, `alignment/dann.py`, `cdan.py`, `dan.py`,
`coral.py`, without a loop inside): the gradient-reversal layer and its schedule, a domain discriminator,
and one loss module per method. Every loss takes the source and target sides of a batch (`Side`: the
aligned features and the logits) and the GRL coefficient, so the objective calls them all alike.

The GRL coefficient is a pure function of the global optimizer step (TLlib keeps a step counter on the
layer, outside `state_dict`, so a resumed run restarts its warm-up); the loop checkpoints the step.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F


class Side(NamedTuple):
    """One domain's half of a batch: features the alignment acts on (B, D) and the classifier's logits (B, C)."""

    features: torch.Tensor
    logits: torch.Tensor


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by -coeff (Ganin & Lempitsky, 2015)."""
    return _ReverseGradient.apply(x, float(coeff))


def grl_coefficient(step: int, max_steps: int, alpha: float = 10.0) -> float:
    """DANN's warm-up 2/(1+exp(-alpha p)) - 1 with p = step / max_steps: 0 at the start (the discriminator's
    noisy early gradients do not reach the features), ~1 from half-way on."""
    p = min(1.0, step / max(1, max_steps))
    return 2.0 / (1.0 + math.exp(-alpha * p)) - 1.0


class DomainDiscriminator(nn.Module):
    """Features -> one logit for "target". Two hidden ReLU layers (TLlib's, with dropout instead of
    BatchNorm: batch statistics would differ between the source-only and the mixed batches)."""

    def __init__(self, in_dim: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class Alignment(nn.Module):
    """A transfer loss R(f, D_s, D_t) on one batch. `monitors` holds what to log but not optimise (the
    discriminator's accuracy on the batch), read by the objective after each call."""

    adversarial = False

    def __init__(self):
        super().__init__()
        self.monitors: dict[str, float] = {}

    def forward(self, s: Side, t: Side, coeff: float) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def _domain_bce(d_s: torch.Tensor, d_t: torch.Tensor, weight_s: torch.Tensor | None = None,
                weight_t: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Source = 0, target = 1; mean of the two domains' losses (each domain counts half whatever the batch
    sizes); also the discriminator's accuracy over both."""
    loss = 0.5 * (F.binary_cross_entropy_with_logits(d_s.float(), torch.zeros_like(d_s, dtype=torch.float), weight=weight_s)
                  + F.binary_cross_entropy_with_logits(d_t.float(), torch.ones_like(d_t, dtype=torch.float), weight=weight_t))
    with torch.no_grad():
        acc = float(torch.cat([(d_s < 0), (d_t >= 0)]).float().mean())
    return loss, acc


class DomainAdversarialLoss(Alignment):
    """DANN: the discriminator learns to tell the domains apart; through the GRL, the features learn to fool it."""

    adversarial = True

    def __init__(self, discriminator: DomainDiscriminator):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, s: Side, t: Side, coeff: float) -> torch.Tensor:
        d = self.discriminator(reverse_gradient(torch.cat([s.features, t.features]), coeff))
        loss, acc = _domain_bce(d[: len(s.features)], d[len(s.features):])
        self.monitors = {"domain_acc": acc}
        return loss


class MultilinearMap(nn.Module):
    """CDAN's conditioning f (x) g, flattened to D*C; above `max_dim` a randomized map
    (R_f f) * (R_g g) / sqrt(out) with fixed Gaussian matrices (persistent buffers: saved with the model)."""

    def __init__(self, feature_dim: int, n_classes: int, max_dim: int = 4096, seed: int = 0):
        super().__init__()
        self.randomized = feature_dim * n_classes > max_dim
        self.out_dim = max_dim if self.randomized else feature_dim * n_classes
        if self.randomized:
            g = torch.Generator().manual_seed(seed)
            self.register_buffer("rf", torch.randn(feature_dim, max_dim, generator=g))
            self.register_buffer("rg", torch.randn(n_classes, max_dim, generator=g))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.randomized:
            return (f @ self.rf) * (g @ self.rg) / math.sqrt(self.out_dim)
        return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Row entropies of probability vectors."""
    return -(p * torch.log(p.clamp_min(1e-8))).sum(1)


class ConditionalDomainAdversarialLoss(Alignment):
    """CDAN (Long et al., 2018): the discriminator sees features (x) softmax predictions, so it aligns the
    class-conditional distributions. With entropy conditioning (CDAN+E), confident rows weigh more:
    w = 1 + exp(-H(p)), normalised per domain."""

    adversarial = True

    def __init__(self, discriminator: DomainDiscriminator, mapping: MultilinearMap, entropy_conditioning: bool = False):
        super().__init__()
        self.discriminator, self.mapping, self.entropy_conditioning = discriminator, mapping, entropy_conditioning

    def forward(self, s: Side, t: Side, coeff: float) -> torch.Tensor:
        f = torch.cat([s.features, t.features])
        g = torch.softmax(torch.cat([s.logits, t.logits]).float(), 1).detach()  # condition on, do not train through, predictions
        d = self.discriminator(reverse_gradient(self.mapping(f, g.to(f.dtype)), coeff))
        n = len(s.features)
        ws = wt = None
        if self.entropy_conditioning:
            w = 1.0 + torch.exp(-entropy(g))
            ws, wt = w[:n] / w[:n].sum() * n, w[n:] / w[n:].sum() * (len(w) - n)
        loss, acc = _domain_bce(d[:n], d[n:], ws, wt)
        self.monitors = {"domain_acc": acc}
        return loss


def gaussian_mmd(x: torch.Tensor, y: torch.Tensor, scales: Sequence[float] = (0.125, 0.25, 0.5, 1.0, 2.0)) -> torch.Tensor:
    """Multi-kernel MMD^2 (Long et al., 2015, DAN): the sum of Gaussian kernels exp(-d^2 / (s * mean d^2)),
    bandwidths relative to the batch's mean squared distance; the biased (V-statistic) estimate, which is
    exactly 0 when the two samples are identical and grows as they move apart."""
    z = torch.cat([x, y]).float()
    d2 = torch.cdist(z, z).pow(2)
    base = d2.detach().mean().clamp_min(1e-8)
    k = sum(torch.exp(-d2 / (s * base)) for s in scales)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


class MMDLoss(Alignment):
    def __init__(self, scales: Sequence[float]):
        super().__init__()
        self.scales = tuple(scales)

    def forward(self, s: Side, t: Side, coeff: float) -> torch.Tensor:
        return gaussian_mmd(s.features, t.features, self.scales)


def coral(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko, 2016) as TLlib's CorrelationAlignmentLoss computes it: the mean squared difference
    of the two batches' feature means plus that of their covariances (0 when both match). The features are first
    divided by the pooled batch's per-dimension standard deviation (with its gradient): the loss grows with the
    4th power of the feature scale otherwise, and a trained adapter then cuts it by shrinking every feature towards
    0, which flattens the target predictions (features mode on the digits shift: CORAL at chance). Scale-free,
    the loss can only fall by making the two domains' statistics alike."""
    x, y = x.float(), y.float()
    scale = torch.cat([x, y]).std(0, keepdim=True).clamp_min(eps)
    x, y = x / scale, y / scale

    def cov(a: torch.Tensor) -> torch.Tensor:
        a = a - a.mean(0, keepdim=True)
        return a.T @ a / max(1, len(a) - 1)

    return (x.mean(0) - y.mean(0)).pow(2).mean() + (cov(x) - cov(y)).pow(2).mean()


class CoralLoss(Alignment):
    def forward(self, s: Side, t: Side, coeff: float) -> torch.Tensor:
        return coral(s.features, t.features)


def minimum_class_confusion(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """MCC (Jin et al., ECCV 2020), as TLlib's MinimumClassConfusionLoss: the between-class confusion of the target
    predictions (softmax at `temperature`), rows weighted by 1 + exp(-entropy), the class-correlation matrix
    row-normalised; the off-diagonal mass over the classes: 0 when every row is confidently one class, (C-1)/C when
    every row is uniform."""
    b, c = logits.shape
    p = torch.softmax(logits.float() / temperature, 1)
    h = -(p * torch.log(p.clamp_min(1e-12))).sum(1).detach()
    w = 1 + torch.exp(-h)
    w = b * w / w.sum()
    confusion = (p * w.unsqueeze(1)).T @ p
    confusion = confusion / confusion.sum(1, keepdim=True)
    return (confusion.sum() - torch.trace(confusion)) / c


class MinimumClassConfusionLoss(Alignment):
    """MCC: needs no domain discriminator and no source batch, only the target predictions."""

    def forward(self, s: Side, t: Side, coeff: float) -> torch.Tensor:
        return minimum_class_confusion(t.logits)


class TargetBatches:
    """Unlabelled target rows as batches, one per optimizer step, chosen as a pure function of (seed, step):
    the target pass restarts (reshuffled) whenever it runs out, independently of the source epochs, and a
    resumed run draws exactly the batches the uninterrupted one would have. `data` is a `LabelledData`
    (its targets unused); micro-batches of one accumulated step share that step's target batch."""

    def __init__(self, data, batch_size: int, seed: int, augment: bool = False, flip: bool = True):
        self.data, self.batch_size, self.seed, self.augment, self.flip = data, batch_size, seed, augment, flip
        self.per_pass = math.ceil(len(data) / batch_size)
        self._orders: dict[int, list[list[int]]] = {}

    def __call__(self, step: int):
        from tlops.training.batching import epoch_batches, generator

        rnd, b = divmod(step, self.per_pass)
        if rnd not in self._orders:
            self._orders = {rnd: epoch_batches(len(self.data), self.batch_size, self.seed + 7919, rnd)}  # own stream
        inputs = self.data.inputs(self._orders[rnd][b])
        return self.data.backbone.augment(inputs, generator(self.seed, 7919, step), flip=self.flip) if self.augment else inputs


class Standardize(nn.Module):
    """(x - mean) / std with fixed statistics (buffers, saved with the model)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clamp_min(1e-6).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
