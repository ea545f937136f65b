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
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from tlops.modules.heads import ProbeHead
from tlops.training.episodes import EpisodeSampler, way_targets
from tlops.training.objectives import Batch, ClassificationTask, Objective

Params = dict[str, torch.Tensor]
ALGORITHMS = ("protonet", "maml", "fomaml", "meta_sgd")
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
    """The inner loop every MAML-family learner shares (classes: `MetaLearner`; numbers:
    `tlops.training.meta_regression.RegressionMetaLearner`): a step size per adapted parameter (Meta-SGD's learned
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

    def episode_logits(self, encoder: Encoder, sx: torch.Tensor, qx: torch.Tensor, ways: int, shots: int) -> torch.Tensor:
        """Query logits (T, N*Q, N) of a batch of episodes (sx: (T, N*K, D), qx: (T, N*Q, D)), vmapped over tasks."""
        onehot = F.one_hot(way_targets(ways, shots), ways).to(sx)
        params = encoder.params()

        def one(s: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
            return self.logits(encoder, self.adapt(encoder, params, s, onehot), q)

        return vmap(one)(sx, qx)


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


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not contain dots


class EpisodeBatches:
    """The episodes of optimizer step s: episodes s*T .. s*T+T-1 of the sampler, as feature tensors. A pure
    function of the step, like the loop's own batch order, so a resumed run sees the same episodes."""

    def __init__(self, x: np.ndarray, sampler: EpisodeSampler, per_step: int):
        self.x, self.sampler, self.per_step = torch.from_numpy(x), sampler, per_step

    def features(self, net, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """(..., D) features of the split's rows `rows` (any shape of row indices): the cached ones."""
        return self.x[rows].to(device)

    def episodes(self, step: int, count: int | None = None):
        """Row indices of step `step`'s episodes."""
        return self.sampler.batch(step * self.per_step, count or self.per_step)

    def __call__(self, net, step: int, count: int | None = None,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self.sampler
        ep = self.episodes(step, count)
        z = self.features(net, np.concatenate([ep.support, ep.query], axis=1), torch.device(device))  # one pass for both
        q = way_targets(s.ways, s.queries).to(device)
        return z[:, : ep.support.shape[1]], z[:, ep.support.shape[1]:], q.expand(len(ep.support), -1)


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

    def __init__(self, backbone, items: list[str], sampler: EpisodeSampler, per_step: int):
        RawRows.__init__(self, backbone, items)
        self.sampler, self.per_step = sampler, per_step


class EpisodicObjective(Objective):
    """Query cross-entropy after adaptation, averaged over the step's episodes. The loop's own batch only
    says how many episodes (its rows are episode tickets); the episodes come from `EpisodeBatches(step)`."""

    def __init__(self, learner: MetaLearner, episodes: EpisodeBatches):
        super().__init__()
        self.learner, self.episodes = learner, episodes
        self._monitors: dict[str, float] = {}

    def forward(self, net, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        s = self.episodes.sampler
        # the encoder is the loop's backbone on cached features, its head when the real backbone trains below it
        encoder = net.head if isinstance(net.head, Encoder) else net.backbone.model
        if self.learner.backbone_names:  # the inner loop adapts backbone groups: raw batches, one task at a time
            device = batch.targets.device
            ep = self.episodes.episodes(step, len(batch.targets))
            onehot = F.one_hot(way_targets(s.ways, s.shots), s.ways).float().to(device)
            fn = BackboneFunction(net.backbone)
            logits = torch.stack([self.learner.task_logits(encoder, fn, self.episodes.batch(sr, device), self.episodes.batch(qr, device),
                                                           onehot) for sr, qr in zip(ep.support, ep.query)])
            qy = way_targets(s.ways, s.queries).to(device).expand(len(ep.support), -1)
        else:
            sx, qx, qy = self.episodes(net, step, len(batch.targets), batch.targets.device)
            logits = self.learner.episode_logits(encoder, sx, qx, s.ways, s.shots)
        loss = F.cross_entropy(logits.reshape(-1, s.ways), qy.reshape(-1))
        self._monitors = {"train_episode_accuracy": float((logits.argmax(-1) == qy).float().mean())}
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


class EpisodicValidation(ClassificationTask):
    """The loop's validation for meta-training: accuracy and macro-F1 over fixed episodes of val's novel classes
    (the loop's own pass over val is not used: episodes need support sets). Selects on `val_episode_accuracy`."""

    def __init__(self, learner: MetaLearner, encoder: Encoder, xv: np.ndarray, sampler: EpisodeSampler, episodes: int):
        super().__init__("val_episode_accuracy", maximize=True)
        self.learner, self.encoder, self.xv, self.sampler, self.episodes = learner, encoder, xv, sampler, episodes

    def features(self, rows: np.ndarray) -> np.ndarray:
        """Features of val's rows (`rows`: the rows the episodes use; others may be left as zeros)."""
        return self.xv

    def predictor(self) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
        return learner_predict(self.learner, self.encoder)

    def evaluate(self) -> dict[str, float]:
        predict = self.predictor()
        s = self.sampler
        ep = s.batch(0, self.episodes)
        xt = torch.from_numpy(self.features(np.unique(np.concatenate([ep.support.ravel(), ep.query.ravel()]))))
        pred = predict(xt[ep.support], xt[ep.query], s.ways)
        truth = way_targets(s.ways, s.queries).expand_as(pred)
        p, t = F.one_hot(pred, s.ways).float(), F.one_hot(truth, s.ways).float()
        tp = (p * t).sum(1)
        f1 = (2 * tp / (p.sum(1) + t.sum(1)).clamp(min=1)).mean(1)  # per-episode macro-F1 (0 for a class never predicted nor true)
        return {"val_episode_accuracy": float((pred == truth).float().mean()), "val_macro_f1": float(f1.mean())}

    def metrics(self, logits: torch.Tensor, targets: np.ndarray) -> dict[str, float]:
        return self.evaluate()


class InputEpisodicValidation(EpisodicValidation):
    """`EpisodicValidation` when the backbone trains: val's rows that the fixed episodes use are embedded by
    the backbone as it is at the end of the epoch (eval mode), not read from the cache; with inner backbone
    groups, each episode's raw rows go through the backbone adapted to its support set."""

    def __init__(self, learner: MetaLearner, encoder: Encoder, backbone, items: list[str], sampler: EpisodeSampler, episodes: int,
                 batch_size: int):
        super().__init__(learner, encoder, np.zeros((len(items), 0), dtype=np.float32), sampler, episodes)
        self.backbone, self.items, self.batch_size = backbone, list(items), batch_size

    def predictor(self) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
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
