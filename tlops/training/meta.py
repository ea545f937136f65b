"""Meta-learning on top of cached features: an encoder (standardise -> projection) plus an adaptation rule.

One functional inner loop serves every algorithm (learn2learn's `maml_update`, written with `torch.func`):
`inner_update(params, grads, lrs)` is theta' = theta - lr * grad, where `lrs` holds a fixed scalar per
parameter (MAML, FOMAML) or learned per-parameter tensors alpha (Meta-SGD, whose update rule is itself
meta-learned). FOMAML is MAML with the inner gradients detached, so dtheta'/dtheta = I and no
second-order term reaches the outer gradient. ANIL adapts only the classifier in the inner loop.
With `inner_groups` > 0 the inner loop also adapts the backbone's top groups (`BackboneFunction`: the backbone
called with swapped parameters through `functional_call`); a task's support and query rows are then raw
model-ready batches, and tasks run one after another (a backbone under `vmap` is not something every
architecture supports).

The classifier of an episode starts from its prototypes (Proto-MAML, Triantafillou et al. 2020):
W = 2c, b = -|c|^2, i.e. ProtoNet's logits -|z - c|^2 up to a per-row constant, so any number of ways
works (the registered model adapts to however many classes its support set has) and zero inner steps
is ProtoNet. Encoder + adapted classifier fold exactly into a `ProbeHead` (see `Encoder.fold`), so a
meta-learned model packages and serves like any other head.

Numbers (few-shot regression: a dataset's `group:` tasks of rows) use the same encoder, inner update, episode
batches, objective and validation with their own adaptation rule, `RegressionMetaLearner`: a meta-learned head start
(a number has no prototype), the MSE on the standardised target, and a normalised inner step on the head alone.
What differs by task is carried by small objects, not a second loop: the episode sampler says what an episode's
targets are (`tlops.training.episodes`), the learner gives the query outputs, loss and monitors, and the validation's
scoring gives the per-episode metric and its direction (`ClassEpisodeScoring`, `NumberEpisodeScoring`).
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from tlops.modules.heads import ProbeHead
from tlops.training.episodes import EpisodeSampler, TaskEpisodeSampler, way_targets
from tlops.training.objectives import Batch, LoopTask, Objective, RegressionTask

Params = dict[str, torch.Tensor]
ALGORITHMS = ("protonet", "maml", "fomaml", "meta_sgd")
REGRESSION_ALGORITHMS = ("maml", "fomaml", "meta_sgd")
BACKBONE = "backbone."  # fast-weight keys of the backbone parameters the inner loop adapts
CLASSIFIER = ("weight", "bias")


def prototypes(z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Class means (C, E) of embeddings z (S, E) under a one-hot assignment (S, C); classes may differ in size."""
    return (onehot.T @ z) / onehot.sum(0)[:, None]


def proto_logits(z: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """ProtoNet's logits: minus the squared Euclidean distance to each prototype (Snell et al. 2017)."""
    return -((z[:, None, :] - protos[None, :, :]) ** 2).sum(-1)


def proto_classifier(protos: torch.Tensor) -> Params:
    """The linear classifier with ProtoNet's decisions: -|z-c|^2 = 2 z.c - |c|^2 - |z|^2 (the last term is the same for every class)."""
    return {"weight": 2 * protos, "bias": -(protos**2).sum(1)}


def inner_update(params: Params, grads: Params, lrs: Params) -> Params:
    """The one inner-loop update of every algorithm: theta' = theta - lr * grad (lr a scalar or a learned alpha tensor)."""
    return {k: params[k] - lrs[k] * grads[k] for k in params}


class Encoder(nn.Module):
    """Cached features -> embedding: fixed standardisation, then `none` (identity), `linear` or `mlp` (Linear-GELU-Linear)."""

    def __init__(self, in_dim: int, kind: Literal["none", "linear", "mlp"], hidden: int, out_dim: int,
                 mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.kind, self.in_dim, self.hidden = kind, in_dim, hidden
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clamp(min=1e-6).clone())
        if kind == "none":
            self.layers = nn.Sequential()
        elif kind == "linear":
            self.layers = nn.Sequential(nn.Linear(in_dim, out_dim))
        else:
            self.layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) / self.std)

    @property
    def out_dim(self) -> int:
        """Embedding width: the projection's output, or the features' own with `none`."""
        return self.layers[-1].out_features if len(self.layers) else self.in_dim

    def params(self) -> Params:
        return dict(self.named_parameters())

    def embed(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self, params, (x,))

    @torch.no_grad()
    def fold(self, params: Params, classifier: Params) -> ProbeHead:
        """This encoder (with `params`) followed by a linear classifier, as one equivalent `ProbeHead`: composed
        linear maps for none/linear; for mlp the classifier is folded into the second Linear (ProbeHead's MLP
        is Linear-GELU-Dropout-Linear)."""
        w, b = classifier["weight"].detach(), classifier["bias"].detach()
        if self.kind == "mlp":
            head = ProbeHead(self.in_dim, w.shape[0], kind="mlp", hidden=self.hidden, dropout=0.0)
            head.net[0].weight.copy_(params["layers.0.weight"])
            head.net[0].bias.copy_(params["layers.0.bias"])
            head.net[3].weight.copy_(w @ params["layers.2.weight"])
            head.net[3].bias.copy_(w @ params["layers.2.bias"] + b)
        else:
            head = ProbeHead(self.in_dim, w.shape[0], kind="linear")
            if self.kind == "linear":
                w, b = w @ params["layers.0.weight"], w @ params["layers.0.bias"] + b
            head.net[0].weight.copy_(w)
            head.net[0].bias.copy_(b)
        head.set_scaler(self.mean, self.std)
        return head.eval()


class BackboneFunction(nn.Module):
    """A backbone's `embed` as a function of some of its parameters: `embed(params, batch)` runs the backbone with
    `params` (names as in `backbone.model.named_parameters()`) in place of its own, the rest unchanged. The
    model is a child module, so `functional_call` swaps the very tensors the backbone's `embed` reads."""

    def __init__(self, backbone):
        super().__init__()
        self.model = backbone.model
        object.__setattr__(self, "backbone", backbone)  # not a module: kept out of this module's parameters

    def forward(self, batch) -> torch.Tensor:
        return self.backbone.embed(batch)

    def embed(self, params: Params, batch) -> torch.Tensor:
        return functional_call(self, {f"model.{k}": v for k, v in params.items()}, (batch,))

    def top_group_names(self, groups: list[list[torch.Tensor]], n: int) -> list[str]:
        """Parameter names of the top `n` of `groups` (the backbone's parameter groups, input to output)."""
        name = {id(p): k for k, p in self.model.named_parameters()}
        return [name[id(p)] for g in groups[len(groups) - n:] for p in g]

    def params(self, names: list[str]) -> Params:
        own = dict(self.model.named_parameters())
        return {f"{BACKBONE}{k}": own[k] for k in names}


def backbone_part(fast: Params) -> Params:
    """The backbone parameters among fast weights, under their own names."""
    return {k[len(BACKBONE):]: v for k, v in fast.items() if k.startswith(BACKBONE)}


class InnerRule(nn.Module):
    """The inner loop every MAML-family learner shares (classes: `MetaLearner`; numbers: `RegressionMetaLearner`; the
    task type's few-shot part picks one, at train time (`learner`) and for a package at predict time
    (`restore_learner`), and the episodic run, objective and validation call only what both have: `initial`, `adapt`,
    `episode_outputs`, `episode_loss`, `anil`, `backbone_names`):
    a step size per adapted parameter (Meta-SGD's learned
    alphas, else one fixed rate) and `descend`, the inner updates theta' = theta - lr * grad (FOMAML: gradients
    detached, so no second-order term reaches the outer loop)."""

    def _init_rule(self, algorithm: str, adapted: dict[str, torch.Size], inner_lr: float, inner_steps: int) -> None:
        self.algorithm, self.inner_steps = algorithm, inner_steps
        self.first_order = algorithm == "fomaml"
        self.adapted = list(adapted)
        if algorithm == "meta_sgd":
            self.alpha = nn.ParameterDict({_key(k): nn.Parameter(torch.full(shape, float(inner_lr))) for k, shape in adapted.items()})
        else:
            self.register_buffer("inner_lr", torch.tensor(float(inner_lr)), persistent=False)

    def lrs(self) -> Params:
        if self.algorithm == "meta_sgd":
            return {k: self.alpha[_key(k)] for k in self.adapted}
        return {k: self.inner_lr for k in self.adapted}

    def descend(self, loss: Callable[[Params], torch.Tensor], inner: Params, lrs: Params, steps: int | None = None) -> Params:
        """`steps` (default: inner_steps) inner updates of the parameters `inner` on `loss`."""
        for _ in range(self.inner_steps if steps is None else steps):
            g = grad(loss)(inner)
            if self.first_order:
                g = {k: v.detach() for k, v in g.items()}
            inner = inner_update(inner, g, lrs)
        return inner


class MetaLearner(InnerRule):
    """The adaptation rule: `adapt(encoder, support)` -> fast weights, `logits(encoder, fast, x)`. Its own
    parameters are Meta-SGD's alphas (none for the others). The encoder is passed in, not owned, so the
    training loop optimises and checkpoints it as its backbone. `backbone_shapes`: the backbone parameters the
    inner loop adapts too (name -> shape; their fast weights and alphas are keyed `backbone.<name>`)."""

    def __init__(self, encoder: Encoder, algorithm: str, inner_lr: float = 0.01, inner_steps: int = 1, anil: bool = False,
                 backbone_shapes: dict[str, torch.Size] | None = None):
        super().__init__()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown meta algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}")
        if backbone_shapes and (anil or algorithm == "protonet"):
            raise ValueError(f"{'ANIL' if anil else 'protonet'} has no inner loop over the backbone; inner backbone groups need maml, "
                             "fomaml or meta_sgd without anil")
        self.anil = anil
        self.backbone_names = list(backbone_shapes or {})
        adapted = {} if anil else {k: p.shape for k, p in encoder.named_parameters()}
        adapted |= {f"{BACKBONE}{k}": shape for k, shape in (backbone_shapes or {}).items()}
        # classifier alphas are per embedding dimension, shared by the classes (ways are exchangeable; their count varies)
        adapted |= {"weight": torch.Size([1, encoder.out_dim]), "bias": torch.Size([1])}
        self._init_rule(algorithm, adapted, inner_lr, inner_steps)

    def initial(self, encoder: Encoder, backbone: BackboneFunction | None = None) -> Params:
        """The meta-learned starting point of every task: the encoder's parameters, and the inner-loop backbone's."""
        return encoder.params() | (backbone.params(self.backbone_names) if self.backbone_names else {})

    def adapt(self, encoder: Encoder, params: Params, sx, onehot: torch.Tensor, steps: int | None = None,
              backbone: BackboneFunction | None = None) -> Params:
        """Fast weights for one support set: encoder params (adapted unless ANIL) + a classifier started at the
        prototypes, after `steps` inner updates on the support cross-entropy. With backbone parameters in the
        inner loop, `sx` is the support rows' model-ready batch and `backbone` embeds it."""
        protos = prototypes(self.embed(encoder, params, sx, backbone), onehot)
        fast = {**params, **proto_classifier(protos)}
        if self.algorithm == "protonet":
            return fast
        inner = {k: fast[k] for k in self.adapted}
        fixed = {k: v for k, v in fast.items() if k not in inner}
        targets = onehot.argmax(1)

        def support_loss(p: Params) -> torch.Tensor:
            return F.cross_entropy(self.logits(encoder, {**fixed, **p}, sx, backbone), targets)

        return {**fixed, **self.descend(support_loss, inner, self.lrs(), steps)}

    def embed(self, encoder: Encoder, fast: Params, x, backbone: BackboneFunction | None = None) -> torch.Tensor:
        """Embeddings of x under fast weights: features (or, with inner backbone groups, a raw batch through the backbone)."""
        if self.backbone_names:
            x = backbone.embed(backbone_part(fast), x)
        return encoder.embed({k: v for k, v in fast.items() if k not in CLASSIFIER and not k.startswith(BACKBONE)}, x)

    def logits(self, encoder: Encoder, fast: Params, x, backbone: BackboneFunction | None = None) -> torch.Tensor:
        return self.embed(encoder, fast, x, backbone) @ fast["weight"].T + fast["bias"]

    def task_logits(self, encoder: Encoder, backbone: BackboneFunction, support, query, onehot: torch.Tensor) -> torch.Tensor:
        """Query logits of one task whose support and query are raw batches (inner backbone groups). Second-order
        gradients through attention need PyTorch's math attention kernel (the fused CPU/GPU ones have no double
        backward), so it is used whenever the outer loop differentiates through the inner one."""
        from contextlib import nullcontext

        from torch.nn.attention import SDPBackend, sdpa_kernel

        second_order = torch.is_grad_enabled() and not self.first_order
        with sdpa_kernel(SDPBackend.MATH) if second_order else nullcontext():
            fast = self.adapt(encoder, self.initial(encoder, backbone), support, onehot, backbone=backbone)
            return self.logits(encoder, fast, query, backbone)

    def episode_outputs(self, encoder: Encoder, sx: torch.Tensor, onehot: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        """Query logits (T, N*Q, N) of a batch of episodes (sx: (T, N*K, D), qx: (T, N*Q, D); `onehot`: the support's way
        assignment (N*K, N), the same for every episode), vmapped over tasks."""
        params = encoder.params()

        def one(s: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
            return self.logits(encoder, self.adapt(encoder, params, s, onehot), q)

        return vmap(one)(sx, qx)

    def episode_logits(self, encoder: Encoder, sx: torch.Tensor, qx: torch.Tensor, ways: int, shots: int) -> torch.Tensor:
        """`episode_outputs` of N-way K-shot episodes with class-major support rows."""
        return self.episode_outputs(encoder, sx, F.one_hot(way_targets(ways, shots), ways).to(sx), qx)

    def episode_loss(self, logits: torch.Tensor, qy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The query cross-entropy over a step's episodes, and the train monitors (query accuracy)."""
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), qy.reshape(-1))
        return loss, {"train_episode_accuracy": float((logits.argmax(-1) == qy).float().mean())}


def adapted_head(learner: MetaLearner, encoder: Encoder, sx, targets: torch.Tensor, n_classes: int,
                 backbone: BackboneFunction | None = None) -> tuple[ProbeHead, Params]:
    """The encoder adapted to one support set (features sx, class indices targets), folded into a `ProbeHead`,
    and the adapted backbone parameters (empty unless the inner loop adapts backbone groups; sx is then the
    support's model-ready batch): the registered model at train time and a support set given at predict time
    go through this one path."""
    onehot = F.one_hot(targets, n_classes).float()
    with torch.no_grad():  # inner-loop gradients still flow (torch.func.grad ignores an outer no_grad)
        fast = learner.adapt(encoder, learner.initial(encoder, backbone), sx, onehot, backbone=backbone)
    enc = {k: v for k, v in fast.items() if k not in CLASSIFIER and not k.startswith(BACKBONE)}
    return encoder.fold(enc, fast), {k: v.detach() for k, v in backbone_part(fast).items()}


HEAD = ("head.weight", "head.bias")


class RegressionMetaLearner(InnerRule):
    """The adaptation rule for numeric targets: `adapt(encoder, params, sx, sy)` -> fast weights after the inner
    steps on the support MSE, `predict(encoder, fast, x)` -> standardised predictions. Its own parameters are the
    head's meta-learned initialisation and, for Meta-SGD, the alphas; the encoder is passed in (the loop trains it
    as its backbone).

    The inner loop adapts the head only (ANIL, Raghu et al. 2020; the encoder is meta-learned in the outer loop),
    with its step divided by twice the support embeddings' mean squared norm (+1 for the bias): the normalised LMS
    step of adaptive filtering. The support MSE is quadratic in the head and its curvature is at most that, so a
    step of lr in (0, 2) never increases the error whatever the embedding's scale (lr 1 fits a single support row
    exactly). Measured without it: plain steps on the MSE diverged (predictions of 1e4-1e29 degrees on the demo)
    because the outer loop moves the embedding's scale, and with it the largest stable step, while a classifier's
    cross-entropy gradients stay bounded."""

    anil, backbone_names = True, ()  # the head alone is adapted; no backbone parameters in the inner loop

    def __init__(self, encoder: Encoder, algorithm: str, inner_lr: float = 0.5, inner_steps: int = 1):
        super().__init__()
        if algorithm not in REGRESSION_ALGORITHMS:
            raise ValueError(f"few-shot regression adapts with {', '.join(REGRESSION_ALGORITHMS)}; {algorithm!r} has no inner loop "
                             "for numbers")
        self.head = nn.Linear(encoder.out_dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)  # the standardised target's mean: the best guess before any support row
        self._init_rule(algorithm, {f"head.{k}": p.shape for k, p in self.head.named_parameters()}, inner_lr, inner_steps)

    def initial(self, encoder: Encoder) -> Params:
        """Every task's meta-learned starting point: the encoder's parameters and the head's."""
        return encoder.params() | {"head.weight": self.head.weight, "head.bias": self.head.bias}

    def predict(self, encoder: Encoder, fast: Params, x: torch.Tensor) -> torch.Tensor:
        return _linear(encoder.embed(_encoder_part(fast), x), fast)

    def adapt(self, encoder: Encoder, params: Params, sx: torch.Tensor, sy: torch.Tensor, steps: int | None = None) -> Params:
        """Fast weights for one support set (features sx (K, D), standardised targets sy (K,))."""
        z = encoder.embed(_encoder_part(params), sx)  # the encoder is not adapted: embed the support once
        # NLMS: the MSE's curvature is at most 2 (mean |z|^2 + 1) (+1: the bias), so this step is stable for lr in (0, 2)
        norm = 0.5 / ((z**2).sum(-1).mean() + 1.0)

        def support_loss(p: Params) -> torch.Tensor:
            return F.mse_loss(_linear(z, p), sy)

        lrs = {k: lr * norm for k, lr in self.lrs().items()}
        return {**params, **self.descend(support_loss, {k: params[k] for k in HEAD}, lrs, steps)}

    def episode_outputs(self, encoder: Encoder, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        """Standardised query predictions (T, Q) of a batch of episodes (sy: the support's standardised targets (T, K)),
        vmapped over tasks."""
        params = self.initial(encoder)

        def one(s: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
            return self.predict(encoder, self.adapt(encoder, params, s, y), q)

        return vmap(one)(sx, sy, qx)

    def episode_loss(self, pred: torch.Tensor, qy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The query MSE (standardised target) over a step's episodes, and the train monitors (MAE in target std's)."""
        return F.mse_loss(pred, qy), {"train_episode_mae_std": float((pred - qy).detach().abs().mean())}


def _encoder_part(fast: Params) -> Params:
    return {k: v for k, v in fast.items() if k not in HEAD}


def _linear(z: torch.Tensor, head: Params) -> torch.Tensor:
    return (z @ head["head.weight"].T + head["head.bias"])[..., 0]


def adapted_regression_head(learner: RegressionMetaLearner, encoder: Encoder, sx: torch.Tensor, sy: torch.Tensor,
                            target: RegressionTask) -> ProbeHead:
    """The encoder and head adapted to one support set (features sx, targets sy in the target's unit), folded into a
    regression `ProbeHead` that maps back to that unit: the registered model."""
    with torch.no_grad():  # the inner loop's gradients still flow (torch.func.grad ignores an outer no_grad)
        fast = learner.adapt(encoder, learner.initial(encoder), sx.float(), target.standardise(sy))
    folded = encoder.fold(_encoder_part(fast), {"weight": fast["head.weight"], "bias": fast["head.bias"]})
    head = ProbeHead(folded.spec["in_dim"], 1, kind=folded.spec["kind"], hidden=folded.spec["hidden"], task="regression")
    head.load_state_dict({**folded.state_dict(), "target_mean": torch.tensor(target.mean), "target_std": torch.tensor(target.std)})
    return head.eval()


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not contain dots


class EpisodeBatches:
    """The episodes of optimizer step s: episodes s*T .. s*T+T-1 of the sampler, as feature tensors and the targets
    the sampler gives them (`y`: the split's standardised numeric targets for task episodes; unused for classes). A
    pure function of the step, like the loop's own batch order, so a resumed run sees the same episodes."""

    def __init__(self, x: np.ndarray, sampler: EpisodeSampler | TaskEpisodeSampler, per_step: int, y: np.ndarray | None = None):
        self.x, self.sampler, self.per_step = torch.from_numpy(x), sampler, per_step
        self.y = None if y is None else torch.from_numpy(np.asarray(y, dtype=np.float32))

    def features(self, net, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """(..., D) features of the split's rows `rows` (any shape of row indices): the cached ones."""
        return self.x[rows].to(device)

    def episodes(self, step: int, count: int | None = None):
        """Row indices of step `step`'s episodes."""
        return self.sampler.batch(step * self.per_step, count or self.per_step)

    def targets(self, ep, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """(support targets, query targets) of episodes `ep`, on `device` (what they are: the sampler's `targets`)."""
        sy, qy = self.sampler.targets(ep, self.y)
        return sy.to(device), qy.to(device)

    def __call__(self, net, step: int, count: int | None = None,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(support features, support targets, query features, query targets) of step `step`'s episodes."""
        ep = self.episodes(step, count)
        z = self.features(net, np.concatenate([ep.support, ep.query], axis=1), torch.device(device))  # one pass for both
        k = ep.support.shape[1]
        sy, qy = self.targets(ep, device)
        return z[:, :k], sy, z[:, k:], qy


class RawRows:
    """Features of a split's raw rows through the loop's backbone (`strategy.trainable` > 0): each step's rows go
    through it, whose top groups train, so the outer gradient reaches them through the features. The lower, frozen
    groups run too: the backbone contract has no "features after group k" entry point to cache them at."""

    def __init__(self, backbone, items: list[str]):
        self.backbone = backbone
        self.encoded = backbone.encode(list(items))  # text: token ids once per split; files: their paths

    def features(self, net, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        flat = rows.reshape(-1)
        unique, where = np.unique(flat, return_inverse=True)  # episodes of one step may share rows: embed each once
        z = net.backbone.embed(self.batch(unique, device))
        return z[torch.from_numpy(where.reshape(-1)).to(z.device)].reshape(*rows.shape, -1)

    def batch(self, rows: np.ndarray, device: torch.device | str):
        """The model-ready batch of the split's rows `rows` (1-d), on `device`."""
        from tlops.training.batching import to_device

        return to_device(self.backbone.collate([self.encoded[int(i)] for i in rows]), device)


class InputEpisodeBatches(RawRows, EpisodeBatches):
    """Episodes over raw inputs: `EpisodeBatches` whose features come from the loop's backbone (`RawRows`)."""

    def __init__(self, backbone, items: list[str], sampler: EpisodeSampler | TaskEpisodeSampler | None, per_step: int,
                 y: np.ndarray | None = None):
        RawRows.__init__(self, backbone, items)
        self.sampler, self.per_step = sampler, per_step
        self.y = None if y is None else torch.from_numpy(np.asarray(y, dtype=np.float32))


class EpisodicObjective(Objective):
    """The learner's query loss after adaptation (classes: cross-entropy; numbers: MSE on the standardised target),
    averaged over the step's episodes. The loop's own batch only says how many episodes (its rows are episode
    tickets); the episodes come from `EpisodeBatches(step)`."""

    def __init__(self, learner: MetaLearner | RegressionMetaLearner, episodes: EpisodeBatches):
        super().__init__()
        self.learner, self.episodes = learner, episodes
        self._monitors: dict[str, float] = {}

    def forward(self, net, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        # the encoder is the loop's backbone on cached features, its head when the real backbone trains below it
        encoder = net.head if isinstance(net.head, Encoder) else net.backbone.model
        if self.learner.backbone_names:  # the inner loop adapts backbone groups: raw batches, one task at a time
            device = batch.targets.device
            ep = self.episodes.episodes(step, len(batch.targets))
            onehot, qy = self.episodes.targets(ep, device)
            fn = BackboneFunction(net.backbone)
            out = torch.stack([self.learner.task_logits(encoder, fn, self.episodes.batch(sr, device), self.episodes.batch(qr, device),
                                                        onehot) for sr, qr in zip(ep.support, ep.query)])
        else:
            sx, sy, qx, qy = self.episodes(net, step, len(batch.targets), batch.targets.device)
            out = self.learner.episode_outputs(encoder, sx, sy, qx)
        loss, self._monitors = self.learner.episode_loss(out, qy)
        return {"task": loss}

    def monitors(self) -> dict[str, float]:
        return self._monitors


def episodic_accuracies(predict: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor], x: np.ndarray, sampler: EpisodeSampler,
                        episodes: int, chunk: int = 100) -> np.ndarray:
    """Query accuracy of each of `episodes` episodes; predict(sx (T,N*K,D), qx (T,N*Q,D), N) -> (T, N*Q) predicted ways."""
    xt = torch.from_numpy(x)
    q = way_targets(sampler.ways, sampler.queries)
    out = []
    for start in range(0, episodes, chunk):
        ep = sampler.batch(start, min(chunk, episodes - start))
        pred = predict(xt[ep.support], xt[ep.query], sampler.ways)
        out.append((pred == q).float().mean(1).numpy())
    return np.concatenate(out)


def mean_ci95(acc: np.ndarray) -> tuple[float, float]:
    """Mean and the 95% confidence half-width 1.96 s / sqrt(n) (normal approximation; reports use >= 600 episodes)."""
    half = float(1.96 * acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1 else float("nan")
    return float(acc.mean()), half


def learner_predict(learner: MetaLearner, encoder: Encoder) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    """`episodic_accuracies`' predict for a meta-learned encoder + adaptation rule (on the encoder's device)."""

    def predict(sx: torch.Tensor, qx: torch.Tensor, ways: int) -> torch.Tensor:
        device = encoder.mean.device
        with torch.no_grad():  # torch.func.grad still differentiates the inner loop: function transforms ignore an outer no_grad
            return learner.episode_logits(encoder, sx.to(device), qx.to(device), ways, sx.shape[1] // ways).argmax(-1).cpu()

    return predict


def row_ids(n: int) -> np.ndarray:
    """(n, 1) row indices standing in for a split's features where predicting needs the raw rows (inner backbone
    groups): `episodic_accuracies` indexes them like features, `input_learner_predict` reads the rows back."""
    return np.arange(n, dtype=np.int64)[:, None]


def input_learner_predict(learner: MetaLearner, encoder: Encoder, backbone, items: list[str]) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    """`learner_predict` when the inner loop adapts backbone groups: sx, qx are `row_ids` of `items` (a split's raw
    inputs); each episode's rows go through the backbone, adapted per task, in eval mode (restored after)."""
    episodes = InputEpisodeBatches(backbone, items, None, 1)
    fn = BackboneFunction(backbone)

    def predict(sx: torch.Tensor, qx: torch.Tensor, ways: int) -> torch.Tensor:
        device, was_training = encoder.mean.device, fn.model.training
        onehot = F.one_hot(way_targets(ways, sx.shape[1] // ways), ways).float().to(device)
        fn.model.eval()
        try:
            with torch.no_grad():
                return torch.stack([learner.task_logits(encoder, fn, episodes.batch(s[:, 0].numpy(), device),
                                                        episodes.batch(q[:, 0].numpy(), device), onehot).argmax(-1).cpu()
                                    for s, q in zip(sx, qx)])
        finally:
            fn.model.train(was_training)

    return predict


def regression_learner_predict(learner: RegressionMetaLearner, encoder: Encoder, target: RegressionTask):
    """A meta-learned regressor as an episode predictor in the target's unit: predict(support features (T, K, D),
    support targets (T, K), query features (T, Q, D)) -> query predictions (T, Q)."""

    def predict(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pred = learner.episode_outputs(encoder, sx.float(), target.standardise(sy), qx.float())
        return pred.double() * target.std + target.mean

    return predict


class ClassEpisodeScoring:
    """Validation episodes of classes: query accuracy (selects, higher is better) and per-episode macro-F1."""

    selection_metric, maximize = "val_episode_accuracy", True

    def predictor(self, learner: MetaLearner, encoder: Encoder):
        return learner_predict(learner, encoder)

    def score(self, predict, xt: torch.Tensor, yv: np.ndarray, ep, s: EpisodeSampler) -> dict[str, float]:
        pred = predict(xt[ep.support], xt[ep.query], s.ways)
        truth = way_targets(s.ways, s.queries).expand_as(pred)
        p, t = F.one_hot(pred, s.ways).float(), F.one_hot(truth, s.ways).float()
        tp = (p * t).sum(1)
        f1 = (2 * tp / (p.sum(1) + t.sum(1)).clamp(min=1)).mean(1)  # per-episode macro-F1 (0 for a class never predicted nor true)
        return {"val_episode_accuracy": float((pred == truth).float().mean()), "val_macro_f1": float(f1.mean())}


class NumberEpisodeScoring:
    """Validation episodes of a regression's tasks: their mean query MAE (`val_episode_mae`, selects, lower is better)
    and the usual val_mae/rmse/r2/spearman over all their query rows, in the target's unit (`target`)."""

    selection_metric, maximize = "val_episode_mae", False

    def __init__(self, target: RegressionTask):
        self.target = target

    def predictor(self, learner: RegressionMetaLearner, encoder: Encoder):
        return regression_learner_predict(learner, encoder, self.target)

    def score(self, predict, xt: torch.Tensor, yv: np.ndarray, ep, s: TaskEpisodeSampler) -> dict[str, float]:
        from tlops.evaluate import regression_metrics
        from tlops.training.objectives import REGRESSION_METRICS

        yt = torch.from_numpy(np.asarray(yv, dtype=np.float64))
        pred = predict(xt[ep.support], yt[ep.support], xt[ep.query]).numpy()
        truth = yt[ep.query].numpy()
        if not np.isfinite(pred).all():
            from tlops.errors import ConfigError

            raise ConfigError("few-shot regression diverged: the adapted model predicts non-finite values on val's episodes; "
                              "lower strategy.inner_lr (or inner_steps), or strategy.meta_lr")
        m = regression_metrics(truth.ravel(), pred.ravel())
        return {"val_episode_mae": float(np.abs(pred - truth).mean(1).mean()), **{f"val_{k}": float(m[k]) for k in REGRESSION_METRICS}}


class EpisodicValidation(LoopTask):
    """The loop's validation task for meta-training: fixed episodes of val (`sampler`), scored after each epoch by
    `scoring` (`ClassEpisodeScoring`, `NumberEpisodeScoring`: the per-episode metrics, the selection metric and its
    direction). The loop's own pass over val is not used: episodes need support sets."""

    def __init__(self, learner: MetaLearner | RegressionMetaLearner, encoder: Encoder, xv: np.ndarray, yv: np.ndarray,
                 sampler: EpisodeSampler | TaskEpisodeSampler, episodes: int, scoring: ClassEpisodeScoring | NumberEpisodeScoring):
        self.learner, self.encoder, self.xv, self.yv, self.sampler, self.episodes = learner, encoder, xv, yv, sampler, episodes
        self.scoring = scoring
        self.selection_metric, self.maximize = scoring.selection_metric, scoring.maximize

    def features(self, rows: np.ndarray) -> np.ndarray:
        """Features of val's rows (`rows`: the rows the episodes use; others may be left as zeros)."""
        return self.xv

    def predictor(self):
        return self.scoring.predictor(self.learner, self.encoder)

    def evaluate(self) -> dict[str, float]:
        predict = self.predictor()
        ep = self.sampler.batch(0, self.episodes)
        xt = torch.from_numpy(self.features(np.unique(np.concatenate([ep.support.ravel(), ep.query.ravel()]))))
        return self.scoring.score(predict, xt, self.yv, ep, self.sampler)

    def metrics(self, outputs: torch.Tensor, targets: np.ndarray) -> dict[str, float]:
        return self.evaluate()


class InputEpisodicValidation(EpisodicValidation):
    """`EpisodicValidation` when the backbone trains: val's rows that the fixed episodes use are embedded by
    the backbone as it is at the end of the epoch (eval mode), not read from the cache; with inner backbone
    groups, each episode's raw rows go through the backbone adapted to its support set."""

    def __init__(self, learner: MetaLearner | RegressionMetaLearner, encoder: Encoder, backbone, items: list[str], yv: np.ndarray,
                 sampler: EpisodeSampler | TaskEpisodeSampler, episodes: int, scoring: ClassEpisodeScoring | NumberEpisodeScoring,
                 batch_size: int):
        super().__init__(learner, encoder, np.zeros((len(items), 0), dtype=np.float32), yv, sampler, episodes, scoring)
        self.backbone, self.items, self.batch_size = backbone, list(items), batch_size

    def predictor(self):
        if self.learner.backbone_names:
            return input_learner_predict(self.learner, self.encoder, self.backbone, self.items)
        return super().predictor()

    def features(self, rows: np.ndarray) -> np.ndarray:
        if self.learner.backbone_names:  # adapted per task: the episodes' rows are read raw
            return row_ids(len(self.items))
        return embed_some_rows(self.backbone, self.items, rows, self.batch_size)


def embed_some_rows(backbone, items: list[str], rows: np.ndarray, batch_size: int) -> np.ndarray:
    """(len(items), D) features with only `rows` embedded (by the backbone as it is now; the rest zeros): what fixed
    validation episodes read, without embedding the rows none of them uses."""
    z = embed_rows(backbone, [items[i] for i in rows], batch_size)
    out = np.zeros((len(items), z.shape[1]), dtype=np.float32)
    out[rows] = z
    return out


def embed_rows(backbone, items: list[str], batch_size: int) -> np.ndarray:
    """Features of `items` in eval mode under inference_mode, on whatever device the backbone's model is on (the loop
    may have moved it); the model's train/eval mode is restored after."""
    from tlops.training.batching import to_device

    model = backbone.model
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    out = np.empty((len(items), backbone.num_features), dtype=np.float32)
    encoded = backbone.encode(list(items))
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = backbone.collate(encoded[start : start + batch_size])
            out[start : start + batch_size] = backbone.embed(to_device(batch, device)).float().cpu().numpy()
    model.train(was_training)
    return out
