"""Domain adaptation (`domain_adapt`): labelled source rows (train/val) plus unlabelled target rows
(unlabeled.csv); the features learn to predict the source labels while an alignment term makes source and
target look alike: min L_task + trade_off * R(f, D_s, D_t), R one of DANN, CDAN (adversarial, through a
gradient-reversal layer), MMD, CORAL, MCC, or nothing (source-only, the baseline). `adabn` aligns by statistics
instead of a loss: each domain's frozen features are standardised with that domain's own mean and std (AdaBN's
statistics swap, Li et al. 2016, on the features the cached backbone gives; features mode only), and the package
standardises its inputs with the target's, as the model is meant for target-domain inputs.

Two modes on the same loop and objective:
- `features` (fast, default): the cached frozen backbone features stay fixed; a bottleneck adapter
  (the loop's "backbone") + a linear classifier + the alignment train on top of them; seconds on a CPU.
  The adapter and classifier together are an MLP head, so the package is the pretrained backbone + that head.
- `finetune`: the backbone itself trains, with every option of `finetune` (discriminative LRs, LP-FT,
  L2-SP, gradual unfreezing, checkpoints, resume); the package holds the adapted backbone.

Do no harm: `source_only` trains in the same run as a candidate (`baseline: true`). Each candidate's epoch is
chosen without target labels by `selection` (DEV, SND, IM, ...: `tlops.training.selection`); adapted candidates
that collapsed (target predictions piled into a few classes, a discriminator that wins or loses completely, an
alignment loss that blew up) are excluded; then an agreement of criteria (`agreement`: DEV, IM, SND, source val)
decides: an adapted candidate is registered only when enough of them prefer it to source_only, else source_only is.
The choice is written as `selection.json` (`tlops.selection_record`: the package, the model card, the CLI). The
target test macro-F1 of every epoch is logged beside it as an oracle, never used to choose. A regression dataset
trains through the same objective (MSE/Huber on the standardised target; DEV/IWV weigh per-row squared errors,
the oracle is the target test MAE); CDAN and the SND / IM / BNM criteria, made of class probabilities, are
refused for it (and skipped from `agreement`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from tlops.records import (
    AdaptationSummary,
    Candidate,
    HeadResult,
    OracleChoice,
    PackageResult,
)
from tlops.strategies.context import TrainContext
from tlops.strategies.finetune import (
    NOT_IN_FINGERPRINT,
    FinetuneConfig,
    initial_head,
    loop_summary,
    run_checkpoint_dir,
)
from tlops.strategies.registry import register_strategy
from tlops.task_types import task_type, training_task
from tlops.training.callbacks import Callback
from tlops.training.feature_rows import FeatureRows

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from tlops.training.loop import LabelledData, LoopResult, Net
    from tlops.training.objectives import ClassificationTask, RegressionTask

METHODS = ("dann", "cdan", "mmd", "coral", "mcc", "adabn", "source_only")
# a finetune run's default features-mode candidates: the no-adaptation baseline and the method that held on the demo
# shifts, both seconds on the cached features (bench/RESULTS.md, "Domain adaptation in finetune mode, part 2")
FEATURES_CANDIDATES = ("source_only", "adabn")
FEATURES_PREFIX = "features:"
FEATURES_EPOCHS = 20  # their epochs unless features_epochs says otherwise: features mode's default (seconds on the cached features)
NO_TRADE_OFF = ("adabn", "source_only")  # methods without an alignment loss: one model, whatever trade_off lists
# criterion -> (the epoch row's key, higher is better); source_val: the task type's selection metric on source val
CRITERIA = {"dev": ("dev_risk", False), "snd": ("snd", True), "iwv": ("iwv_risk", False), "im": ("im", True), "bnm": ("bnm", True)}


CLASSIFICATION_ONLY_CRITERIA = ("snd", "im", "bnm")


def criterion(selection: str, task: str) -> tuple[str, bool]:
    """(the epoch row's key the selection reads, higher is better) for a dataset's task type."""
    if selection == "source_val":
        kind = task_type(task)
        return kind.selection_key, kind.selection_higher_is_better
    return CRITERIA[selection]


class DomainAdaptConfig(FinetuneConfig):
    """Loop options as `finetune`, plus the adaptation method, its weight, the mode and the selection criterion."""

    name: Literal["domain_adapt"] = "domain_adapt"  # type: ignore[assignment]
    method: Literal["dann", "cdan", "mmd", "coral", "mcc", "adabn", "source_only"] = "dann"
    mode: Literal["features", "finetune"] = Field("features", description="features: adapter + head on the cached frozen "
                                                  "features (fast); finetune: the backbone trains too")
    augment: bool = Field(True, description="finetune mode: the modality's training augmentation (image: random resized crop "
                          "+ flip, audio: time shift) on the source AND the target batches; features mode: no effect (its inputs "
                          "are cached features, which nothing augments)")
    trade_off: float | list[float] = Field(1.0, description="weight of the alignment term; a list trains one model per value "
                                                            "and keeps the one the criterion prefers")
    bottleneck: int = Field(256, ge=1, description="features mode: width of the adapter between cached features and classifier")
    discriminator_hidden: int = Field(256, ge=1)
    discriminator_dropout: float = Field(0.5, ge=0, lt=1)
    grl_warmup: bool = Field(True, description="DANN's schedule 2/(1+exp(-alpha p))-1 for the reversed gradient (else 1 throughout)")
    grl_alpha: float = Field(10.0, gt=0)
    entropy_conditioning: bool = Field(False, description="CDAN+E: confident predictions weigh more in the discriminator loss")
    cdan_max_dim: int = Field(4096, ge=16, description="CDAN: above features x classes this, a randomized multilinear map of this size")
    mmd_scales: list[float] = Field([0.125, 0.25, 0.5, 1.0, 2.0], min_length=1,
                                    description="MMD: Gaussian bandwidths as multiples of the batch's mean squared distance")
    selection: Literal["dev", "snd", "source_val", "iwv", "im", "bnm"] = Field(
        "dev", description="how the epoch/trade_off is chosen without target labels: DEV (importance-weighted source val loss "
        "with a control variate), IWV (self-normalised weights), SND, IM (information maximisation), BNM (batch nuclear "
        "norm), or plain source val (tlops.training.selection)")
    selection_rows: int = Field(2000, ge=10, description="rows of source train and of the target split the criteria look at per epoch")
    oracle: bool = Field(True, description="log the target test macro-F1 of every epoch (never used to choose)")
    baseline: bool = Field(True, description="train source_only in the same run as a candidate and register it when no adapted "
                                             "candidate is credibly better (false: choose among the adapted models by `selection`)")
    agreement: list[Literal["dev", "snd", "source_val", "iwv", "im", "bnm"]] = Field(
        ["dev", "im", "snd", "source_val"], min_length=1,
        description="the label-free criteria that must agree an adapted candidate beats source_only (those made of class "
        "probabilities are skipped for a regression, which uses iwv instead)")
    agreement_votes: int | None = Field(None, ge=1, description="how many of them must prefer it (default: half, 2 of 4, i.e. ceil(n / 2): "
                                        "on 6 benchmark shifts it registered 70 of 99 adapted runs against 3 of 4's 39, with the same "
                                        "four single-run losses over 3 points and no method worse on average, bench/RESULTS.md)")
    source_val_tolerance: float = Field(0.05, ge=0, description="source_val votes for an adapted candidate whose source validation "
                                        "metric is no worse than source_only's by more than this fraction of it (0: only a better one)")
    collapse_max_tv: float = Field(0.5, gt=0, le=1, description="exclude an adapted candidate whose target predicted-class "
                                   "marginal is farther than this (total variation) from uniform and from the source's")
    features_candidates: bool | list[Literal["dann", "cdan", "mmd", "coral", "mcc", "adabn", "source_only"]] | None = Field(
        None, description="mode finetune: features-mode candidates trained in the same run on the cached frozen features "
        "(seconds) and put in the same pool, named features:<method>, each packaged as features mode packages it (a head on "
        "the pretrained backbone) when chosen; default (null or true): [source_only, adabn] ([adabn] with baseline: false); "
        "false or []: none (the pool "
        "of finetune candidates only). With two source_only models the criteria's agreement picks the baseline the "
        "others must beat. Mode features: must stay unset (its own candidates are the features-mode ones)")
    features_epochs: int | None = Field(None, ge=1, description="mode finetune: epochs of the features-mode candidates (default: "
                                        "features mode's default, 20, whatever `epochs` the finetune candidates train: they cost "
                                        "seconds, and 5 instead of 20 cost them 4.4 points on the digit shift, bench/RESULTS.md)")
    epochs: int = Field(20, ge=1)
    patience: int = Field(20, ge=1)

    @field_validator("trade_off")
    @classmethod
    def _trade_off_values(cls, v):
        values = v if isinstance(v, list) else [v]
        if not values or any(x < 0 for x in values):
            raise ValueError("give one weight >= 0 or a non-empty list of them, e.g. [0.1, 0.3, 1.0]")
        return v

    @model_validator(mode="after")
    def _features_mode_options(self):
        if self.method == "adabn" and self.mode != "features":
            raise ValueError("method adabn standardises the cached frozen features per domain, so it needs mode: features; "
                             "for mode: finetune use dann, cdan, mmd, coral or mcc")
        if self.mode == "features":
            bad = {k: getattr(self, k) for k, ok in (("head", "linear"), ("lp_ft", False), ("trainable", "all"), ("unfreeze_every", 0),
                                                     ("l2sp", 0.0)) if getattr(self, k) != ok}
            if bad:
                raise ValueError(f"{bad} only apply to mode: finetune (features mode trains a bottleneck adapter + a linear "
                                 "classifier on the cached features); remove them or set mode: finetune")
            if self.features_candidates not in (None, False, []) or self.features_epochs is not None:
                raise ValueError("features_candidates and features_epochs only apply to mode: finetune (they add features-mode "
                                 "candidates to a finetune run; a features-mode run's candidates are features-mode already: "
                                 "use method, trade_off and baseline); remove them or set mode: finetune")
        return self

    def feature_methods(self) -> list[str]:
        """The methods trained as features-mode candidates beside the finetune ones (none in features mode)."""
        if self.mode != "finetune" or self.features_candidates is False:
            return []
        if self.features_candidates is None or self.features_candidates is True:  # baseline: false drops the no-adaptation one
            return [m for m in FEATURES_CANDIDATES if self.baseline or m != "source_only"]
        return list(dict.fromkeys(self.features_candidates))

    def features_strategy(self) -> DomainAdaptConfig:
        """These options as a features-mode run takes them: the finetune-only ones at their defaults, `features_epochs`."""
        return self.model_copy(update={"mode": "features", "head": "linear", "lp_ft": False, "trainable": "all", "unfreeze_every": 0,
                                       "l2sp": 0.0, "features_candidates": None, "features_epochs": None,
                                       "epochs": self.features_epochs or FEATURES_EPOCHS})

    @classmethod
    def starter_changes(cls, strategy: dict, task: str, modality: str) -> tuple[dict, dict]:
        """`tlops init` on a dataset without class probabilities: a selection criterion that reads them becomes DEV."""
        if not task_type(task).class_probabilities and strategy.get("selection") in CLASSIFICATION_ONLY_CRITERIA:
            return {"selection": "dev"}, {"selection": f"picks among them without target labels (DEV: importance-weighted source "
                                                       f"val error; {strategy['selection']} needs class probabilities)"}
        return {}, {}

    def refusal_for_task(self, task: str) -> str | None:
        """Why these options cannot train a `task` model (None: they can). A task type without class probabilities
        (a regression) has nothing for CDAN's conditioning and the SND / IM / BNM criteria to read."""
        if task_type(task).class_probabilities:
            return None
        if bad := [m for m in self.feature_methods() if m in ("cdan", "mcc")]:
            return (f"strategy.features_candidates: {', '.join(bad)} read(s) class probabilities, which a {task} has none of; "
                    "use dann, mmd, coral, adabn or source_only")
        if self.method in ("cdan", "mcc"):
            what = "conditions the domain discriminator on" if self.method == "cdan" else "minimises the confusion between"
            return (f"strategy.method: {self.method} {what} class probabilities, which a {task} "
                    "has none of; use dann, mmd, coral or source_only")
        if self.selection in CLASSIFICATION_ONLY_CRITERIA:
            return (f"strategy.selection: {self.selection} reads class probabilities on the target rows; for a {task} "
                    "use dev, iwv or source_val")
        return None

    def trade_offs(self) -> list[float]:
        return [float(x) for x in (self.trade_off if isinstance(self.trade_off, list) else [self.trade_off])]


class _Prefixed(Callback):
    """Epoch rows of one model of a trade_off sweep, renamed `trade_off_<v>/<key>` (steps pass through)."""

    def __init__(self, inner: Callback, prefix: str):
        self.inner, self.prefix = inner, prefix

    def on_step_end(self, state) -> None:
        self.inner.on_step_end(state)

    def on_epoch_end(self, state, row) -> None:
        self.inner.on_epoch_end(state, {"epoch": row["epoch"], **{f"{self.prefix}{k}": v for k, v in row.items() if k != "epoch"}})


class FeatureAdapter(FeatureRows):
    """The loop's backbone in features mode: cached feature rows in, standardise -> Linear -> GELU -> dropout out."""

    def __init__(self, in_dim: int, width: int, dropout: float, mean, std):
        from torch import nn

        from tlops.training.adaptation import Standardize

        self.model = nn.Sequential(Standardize(mean, std), nn.Linear(in_dim, width), nn.GELU(), nn.Dropout(dropout))
        self.num_features = width


class _Criteria:
    """The per-epoch unsupervised criteria (DEV, IWV; for classes also SND, IM, BNM) and the oracle target-test
    macro-F1 (a regression: MAE), added to each epoch's row."""

    def __init__(self, train: LabelledData, val: LabelledData, target: LabelledData, test: LabelledData | None, seed: int,
                 task: ClassificationTask | RegressionTask):
        from tlops.training.objectives import ClassificationTask

        self.train, self.val, self.target, self.test, self.seed, self.task = train, val, target, test, seed, task
        self.classes = isinstance(task, ClassificationTask)

    def __call__(self, evaluate) -> dict[str, float]:
        from sklearn.metrics import f1_score

        from tlops.training.selection import (
            batch_nuclear_norm,
            density_ratio,
            dev_risk,
            information_maximization,
            iwv_risk,
            marginal_distances,
            soft_neighborhood_density,
        )

        z_s, _ = evaluate(self.train)
        z_v, out_v = evaluate(self.val)
        z_t, out_t = evaluate(self.target)
        w = density_ratio(z_s.numpy(), z_t.numpy(), z_v.numpy(), seed=self.seed)
        losses = self.task.row_losses(out_v, self.val.targets)
        row = {"dev_risk": dev_risk(losses, w), "iwv_risk": iwv_risk(losses, w)}
        if self.classes:  # these read class probabilities; the marginal distances are the collapse guard's evidence
            row |= {"snd": soft_neighborhood_density(out_t), "im": information_maximization(out_t), "bnm": batch_nuclear_norm(out_t)}
            row |= marginal_distances(out_t.argmax(1).numpy(), self.train.targets, out_t.shape[1])
        if self.test is not None:
            _, out_te = evaluate(self.test)
            if self.classes:
                row["oracle_test_macro_f1"] = float(f1_score(self.test.targets, out_te.argmax(1).numpy(), average="macro"))
            else:
                row["oracle_test_mae"] = self.task.metrics(out_te, self.test.targets)["val_mae"]
        return row


def _subset(n: int, rows: int, seed: int) -> list[int]:
    import numpy as np

    return sorted(np.random.default_rng(seed).permutation(n)[:rows].tolist()) if n > rows else list(range(n))


class _FeaturesMode:
    """Cached features in, adapter + linear classifier trained; packaged as an MLP head on the pretrained backbone."""

    augment = False

    def __init__(self, ctx: TrainContext, strategy: DomainAdaptConfig | None = None):
        f = ctx.features  # `strategy`: a finetune run's options as features mode takes them (its features-mode candidates)
        self.ctx, self.s = ctx, strategy or ctx.cfg.strategy
        self.rows = {split: f.arrays(split) for split in ("train", "val", "unlabeled", "test")}
        self.outputs = task_type(f.task).outputs(f.labels)  # classes, or 1 for a regression
        self.arrays = [a for split in ("train", "val") for a in self.rows[split]] + [self.rows["unlabeled"][0]]

    deployed_scaler = None  # the package's input scaler when it is not the adapter's (adabn: the target's statistics)

    def per_domain(self) -> _FeaturesMode:
        """The same rows with the target ones (unlabeled, test) moved into the source statistics: (x - mean_t) / std_t
        * std_s + mean_s, so that the adapter's source standardisation gives every domain its own z-scores (adabn).
        The target's mean and std come from the unlabelled rows only; the package standardises with them."""
        import copy

        from tlops.training.probe import finetune_scaler

        mean_s, std_s = (t.numpy() for t in finetune_scaler(self.rows["train"][0]))
        mean_t, std_t = finetune_scaler(self.rows["unlabeled"][0])
        other = copy.copy(self)
        other.rows = dict(self.rows)
        for split in ("unlabeled", "test"):
            x, y = self.rows[split]
            other.rows[split] = (((x - mean_t.numpy()) / std_t.numpy() * std_s + mean_s).astype(x.dtype), y)
        other.deployed_scaler = (mean_t, std_t)
        return other

    def net(self) -> tuple[Net, np.ndarray]:
        import torch

        from tlops.modules.heads import ProbeHead
        from tlops.training.loop import Net
        from tlops.training.probe import finetune_scaler

        x, y = self.rows["train"]
        adapter = FeatureAdapter(x.shape[1], self.s.bottleneck, self.s.dropout, *finetune_scaler(x))
        head = ProbeHead(self.s.bottleneck, self.outputs, kind="linear", task=self.ctx.features.task)
        training_task(self.ctx.features.task, y, self.s).init_head(head)  # a regression head maps back to the target's units
        net = Net(adapter, head)
        adapter.model.eval()
        with torch.no_grad():
            initial = adapter.model(torch.from_numpy(x)).numpy()
        return net, initial

    def data(self, net: Net, split: str, idx: list[int] | None = None) -> LabelledData:
        from tlops.training.loop import LabelledData

        x, y = self.rows[split]
        return LabelledData(net.backbone, x if idx is None else x[idx], y if idx is None else y[idx])

    def loop_options(self) -> DomainAdaptConfig:
        # the adapter is new, so it learns at the head's rate; nothing to augment or bucket in feature rows
        return self.s.model_copy(update={"backbone_lr": self.s.head_lr, "layer_decay": 1.0, "augment": False, "bucket_by_length": False})

    def regularisers(self, net: Net) -> dict[str, nn.Module]:
        return {}

    def result(self, net: Net, selection: Any = None, **fields: Any) -> HeadResult:
        import torch

        from tlops.modules.heads import ProbeHead

        adapter = net.backbone.model
        head = ProbeHead(adapter[1].in_features, self.outputs, kind="mlp", hidden=self.s.bottleneck, dropout=self.s.dropout,
                         task=self.ctx.features.task)
        # as `net` did for the trained head: a regression head maps back to the target's units with the train targets' scaler
        training_task(self.ctx.features.task, self.rows["train"][1], self.s).init_head(head)
        with torch.no_grad():  # standardise -> adapter Linear -> GELU -> dropout -> classifier is exactly ProbeHead's MLP
            head.set_scaler(*(self.deployed_scaler or (adapter[0].mean, adapter[0].std)))
            head.net[0].load_state_dict(adapter[1].state_dict())
            head.net[3].load_state_dict(net.head.net[0].state_dict())
        self.ctx.out_dir.mkdir(parents=True, exist_ok=True)
        path = head.save(self.ctx.out_dir / "head.safetensors")
        return HeadResult(head_path=str(path), spec=head.spec, **fields)


class _FinetuneMode:
    """Raw inputs through a trainable backbone (finetune's head initialisation and loop options); packaged whole."""

    augment = True

    def __init__(self, ctx: TrainContext):
        f = ctx.features
        self.ctx, self.s, self.ds = ctx, ctx.cfg.strategy, ctx.dataset()
        self.labels = {split: f.arrays(split)[1] for split in ("train", "val", "unlabeled", "test")}
        self.x = {split: f.arrays(split)[0] for split in ("train", "val")}
        self.arrays = [self.x["train"], self.labels["train"], self.x["val"], self.labels["val"], f.arrays("unlabeled")[0]]

    def net(self) -> tuple[Net, np.ndarray]:
        from tlops.training.feature_groups import FeatureGroups
        from tlops.training.loop import Net

        s, seed, f = self.s, self.ctx.cfg.seed, self.ctx.features
        head = initial_head(s, seed, self.x["train"], self.labels["train"], self.x["val"], self.labels["val"],
                            task_type(f.task).outputs(f.labels), task=f.task)
        trained = FeatureGroups(self.ctx.backbone(), self.ds.inputs("train"))  # groups that change the features
        return Net(trained, head), self.x["train"]  # the cached features are the starting backbone's

    def data(self, net: Net, split: str, idx: list[int] | None = None) -> LabelledData:
        from tlops.training.loop import LabelledData

        items, y = self.ds.inputs(split), self.labels[split]
        return LabelledData(net.backbone, items if idx is None else [items[i] for i in idx], y if idx is None else y[idx])

    def loop_options(self) -> DomainAdaptConfig:
        return self.s

    def regularisers(self, net: Net) -> dict[str, nn.Module]:
        from tlops.training.parts import l2sp_regularisers

        return l2sp_regularisers(net.backbone, self.s.l2sp)

    def result(self, net: Net, selection: Any = None, **fields: Any) -> PackageResult:
        from tlops.package import save_package
        from tlops.selection_record import SELECTION_FILE

        net.backbone.fine_tuned = True  # export writes the trained weights, and the package identity hashes them
        package = save_package(self.ctx.out_dir / "package", net.backbone, net.head, self.ctx.features.labels,
                               extra={"strategy": self.s.model_dump(), "seed": self.ctx.cfg.seed,
                                      "adaptation": fields["adaptation"].model_dump(mode="json")},
                               files={SELECTION_FILE: selection} if selection is not None else None)
        return PackageResult(package=str(package), **fields)


def build_alignment(s: DomainAdaptConfig, feature_dim: int, n_classes: int, seed: int) -> nn.Module | None:
    """The method's loss module (None for source-only)."""
    from tlops.training import adaptation as da

    if s.method in NO_TRADE_OFF:
        return None
    if s.method == "mmd":
        return da.MMDLoss(s.mmd_scales)
    if s.method == "coral":
        return da.CoralLoss()
    if s.method == "mcc":
        return da.MinimumClassConfusionLoss()
    if s.method == "dann":
        return da.DomainAdversarialLoss(da.DomainDiscriminator(feature_dim, s.discriminator_hidden, s.discriminator_dropout))
    mapping = da.MultilinearMap(feature_dim, n_classes, s.cdan_max_dim, seed=seed)
    return da.ConditionalDomainAdversarialLoss(da.DomainDiscriminator(mapping.out_dim, s.discriminator_hidden, s.discriminator_dropout),
                                               mapping, s.entropy_conditioning)


@dataclass
class _Trained:
    trade_off: float
    net: Any
    loop: LoopResult
    checkpoint_dir: Any
    task: Any  # the ClassificationTask / RegressionTask it was trained and scored with
    kind: Any  # the dataset's TaskType (names the validation metrics)
    mode: Any  # the _FeaturesMode / _FinetuneMode that packages it (adabn: its per-domain rows and scaler)


# options that do not change a trained model (features_epochs: a features-mode candidate's own options carry it as `epochs`)
SELECTION_ONLY = {"oracle", "baseline", "agreement", "agreement_votes", "collapse_max_tv", "source_val_tolerance", "features_candidates",
                  "features_epochs"}


def _fit_one(ctx: TrainContext, mode: _FeaturesMode | _FinetuneMode, s: DomainAdaptConfig, trade_off: float,
             callbacks: list[Callback]) -> _Trained:
    import torch

    from tlops.training.adaptation import Standardize, TargetBatches
    from tlops.training.loop import fit
    from tlops.training.objectives import DomainAdaptationObjective
    from tlops.training.probe import finetune_scaler

    seed = ctx.cfg.seed  # `s`: the run's strategy, its method possibly replaced by source_only (the baseline candidate)
    if s.method == "adabn":
        mode = mode.per_domain()
    torch.manual_seed(seed)
    net, initial = mode.net()
    train, val, unlabeled = mode.data(net, "train"), mode.data(net, "val"), mode.data(net, "unlabeled")
    opts = mode.loop_options()
    task = training_task(ctx.features.task, train.targets, s)  # cross-entropy, or MSE/Huber on the standardised target
    task.selection_metric, task.maximize = criterion(s.selection, ctx.features.task)
    max_steps = opts.epochs * math.ceil(math.ceil(len(train) / opts.batch_size) / opts.grad_accum_steps)
    objective = DomainAdaptationObjective(
        task, build_alignment(s, initial.shape[1], len(ctx.features.labels), seed),
        TargetBatches(unlabeled, opts.batch_size, seed, augment=mode.augment and opts.augment, flip=opts.flip),
        Standardize(*finetune_scaler(initial)), trade_off, max_steps, warmup=s.grl_warmup, alpha=s.grl_alpha,
        regularisers=mode.regularisers(net))
    criteria = _Criteria(mode.data(net, "train", _subset(len(train), s.selection_rows, seed)), val,
                         mode.data(net, "unlabeled", _subset(len(unlabeled), s.selection_rows, seed + 1)),
                         mode.data(net, "test") if s.oracle else None, seed, task)
    ckpt = run_checkpoint_dir(ctx, {**s.model_dump(exclude=NOT_IN_FINGERPRINT | SELECTION_ONLY), "trade_off": trade_off}, mode.arrays)
    r = fit(net, objective, train, val, opts, seed=seed, task=task, checkpoint_dir=ckpt, callbacks=callbacks, epoch_metrics=criteria)
    return _Trained(trade_off, net, r, ckpt, task, task_type(ctx.features.task), mode)


def _mode_name(t: _Trained) -> str:
    return "features" if isinstance(t.mode, _FeaturesMode) else "finetune"


def _candidate(t: _Trained, key: str, name: str) -> Candidate:
    row = t.loop.state.history[t.loop.state.best_epoch]
    return Candidate(name=name, mode=_mode_name(t), trade_off=t.trade_off, best_epoch=t.loop.state.best_epoch, criterion=row[key],
                     val_metrics=t.kind.val_metrics(row), oracle_test_macro_f1=row.get("oracle_test_macro_f1"),
                     oracle_test_mae=row.get("oracle_test_mae"))


def _oracle(runs: list[tuple[str, float, list[dict]]]) -> OracleChoice | None:
    """The epoch the target test labels would have picked: the highest macro-F1, or the lowest MAE of a regression."""
    for key, best in (("oracle_test_macro_f1", max), ("oracle_test_mae", min)):
        rows = [(row[key], name, v, int(row["epoch"])) for name, v, history in runs for row in history if key in row]
        if rows:
            value, name, v, epoch = best(rows, key=lambda r: r[0])
            return OracleChoice(candidate=name, trade_off=v, epoch=epoch, **{key.removeprefix("oracle_"): value})
    return None


def _name(method: str, trade_off: float) -> str:
    return method if method in NO_TRADE_OFF else f"{method}@{trade_off:g}"


def _agreement_criteria(s: DomainAdaptConfig, task: str) -> list[tuple[str, str, bool]]:
    """(label, epoch row key, higher is better) of the criteria that vote; a regression skips those made of class
    probabilities and uses IWV in their place."""
    names = list(dict.fromkeys(s.agreement))
    if not task_type(task).class_probabilities:
        kept = [n for n in names if n not in CLASSIFICATION_ONLY_CRITERIA]
        names = kept + (["iwv"] if len(kept) < len(names) and "iwv" not in kept else [])
    return [(n, *criterion(n, task), s.source_val_tolerance if n == "source_val" else 0.0) for n in names]


def _choose(s: DomainAdaptConfig, task: str, trained: list[tuple[str, _Trained]], key: str, maximize: bool):
    """The registered candidate and the record of the choice (`tlops.selection_record.SelectionRecord`)."""
    import math as _math

    from tlops.selection_record import SelectionCandidate, SelectionRecord
    from tlops.training.selection import BASELINE, agreement_choice, collapse_reason

    votes_by = _agreement_criteria(s, task)
    rows = {n: t.loop.state.history[t.loop.state.best_epoch] for n, t in trained}
    names = [n for n, _ in trained]
    # the no-adaptation candidates: source_only, and in a finetune run with features-mode candidates features:source_only
    baselines = [n for n in (BASELINE, FEATURES_PREFIX + BASELINE) if n in names]
    keys = [k for _, k, *_ in votes_by] + [key]  # the criteria a candidate's row must have as finite numbers
    excluded: dict[str, str | None] = {}
    for n, t in trained:
        if n in baselines:
            excluded[n] = None  # the fallback is never excluded: its failure shows in the table
            continue
        history = t.loop.state.history[: t.loop.state.best_epoch + 1]
        excluded[n] = collapse_reason(rows[n], [r["train_loss_transfer"] for r in history if "train_loss_transfer" in r], keys,
                                      max_tv=s.collapse_max_tv)
    shown = list(dict.fromkeys([*(k for _, k, *_ in votes_by), key, "target_top_class_share", "domain_acc"]))
    scores = {n: {k: float(rows[n][k]) for k in shown if k in rows[n]} for n, _ in trained}
    if baselines and len(names) > 1:
        need = s.agreement_votes or _math.ceil(0.5 * len(votes_by))
        need = min(need, len(votes_by))
        baseline, base_why = baselines[0], ""
        if len(baselines) == 2:
            # two no-adaptation models (the finetuned backbone's and the frozen one's): which is better on the target is
            # unknown without its labels, so the same agreement picks the baseline the adapted candidates must beat;
            # features:source_only takes it when `need` criteria prefer it (with half of them, a tie goes to the frozen
            # backbone: fine-tuning on a small source set can move the features away from the target, Kumar et al. 2022)
            # unless the collapse guard flags exactly one of them: then the other is the baseline, whatever the votes
            # (SND rewards target predictions piled into one class, and source val cannot see them)
            challenger = baselines[1]
            _, _, pair = agreement_choice({n: scores[n] for n in baselines}, {}, votes_by, need)
            v = pair[challenger]
            baseline, other = (challenger, BASELINE) if v >= need else (BASELINE, challenger)
            flags = {n: collapse_reason(rows[n], [], keys, max_tv=s.collapse_max_tv) for n in baselines}
            if bool(flags[baseline]) and not flags[other]:
                baseline, other = other, baseline
                base_why = f"baseline {baseline}: {other} is flagged ({flags[other]}); "
                excluded[other] = f"no adaptation, not the baseline ({baseline} is): {flags[other]}"
            else:
                base_why = f"baseline {baseline}: {v} of {len(votes_by)} criteria prefer {challenger} to {BASELINE} ({need} needed); "
                excluded[other] = (f"no adaptation, not the baseline ({baseline} is): {v} of {len(votes_by)} criteria prefer "
                                   f"{challenger} to {BASELINE}, {need} needed")
            scores[challenger]["votes"] = float(v)
        chosen, why, votes = agreement_choice(scores, excluded, votes_by, need, baseline=baseline)
        why = base_why + why
        rule = (f"agreement of {', '.join(label + (f' (within {tol:.0%})' if tol else '') for label, _, _, tol in votes_by)} "
                f"against {' or '.join(baselines) + ' (the better by the same agreement)' if len(baselines) == 2 else baseline} "
                f"({need} of {len(votes_by)})")
        for n in names:
            if n not in baselines:
                scores[n]["votes"] = float(votes[n])
    else:  # no baseline candidate: the epoch criterion decides among those not excluded (all, when every one is)
        pool = [n for n in names if excluded[n] is None] or names
        pick = max if maximize else min
        chosen = pick(pool, key=lambda n: rows[n][key])
        why = (f"{chosen}: the best {key} of the {len(pool)} candidate(s) not excluded" if len(pool) < len(names) or all(
            excluded[n] is None for n in names) else f"{chosen}: every candidate was flagged, so the best {key} of all")
        rule = key
        if excluded[chosen] is not None:
            excluded = {n: None for n in names}  # nothing else to register: the flags stay in `why`
            why += f" (flagged: {'; '.join(f'{n}: {r}' for n, r in excluded.items() if r)})"
    oracle_key = "oracle_test_macro_f1" if any("oracle_test_macro_f1" in r for r in rows.values()) else "oracle_test_mae"
    oracle = {n: float(rows[n][oracle_key]) for n in names if oracle_key in rows[n]} or None
    modes = {n: _mode_name(t) for n, t in trained}
    record = SelectionRecord(family="domain_adaptation", criterion=rule, chosen=chosen, why=why, oracle=oracle,
                             candidates=[SelectionCandidate(name=n, mode=modes[n], scores=scores[n], excluded=excluded[n],
                                                            chosen=n == chosen) for n in names])
    return dict(trained)[chosen], record


# `hidden` and `dropout` (inherited from finetune) are logged whatever the head: features mode's adapter reads dropout
@register_strategy("domain_adapt", DomainAdaptConfig, splits=("unlabeled",), tasks=("classification", "regression"), heads=("linear", "mlp"),
                   starter="domain_adapt", setting_tasks={"loss": "regression", "huber_delta": "regression"})
def train(ctx: TrainContext) -> HeadResult | PackageResult:
    """Adapt to the unlabelled target split (DANN, CDAN, MMD, CORAL, MCC, AdaBN or source-only); the model is chosen without target labels."""
    from tlops.selection_record import SELECTION_FILE

    s = ctx.cfg.strategy
    mode = _FeaturesMode(ctx) if s.mode == "features" else _FinetuneMode(ctx)
    key, maximize = criterion(s.selection, ctx.features.task)
    # the candidates: source_only (the baseline, once), then the method at each trade_off value
    methods = ([("source_only", 0.0)] if s.baseline or s.method == "source_only" else []) + (
        [(s.method, v) for v in s.trade_offs()] if s.method not in NO_TRADE_OFF else [(s.method, 0.0)] if s.method != "source_only" else [])
    runs_to_fit = [(mode, s, method, value, "") for method, value in methods]
    if s.feature_methods():  # a finetune run: features-mode candidates on the cached frozen features, in the same pool
        fs = s.features_strategy()
        fmode = _FeaturesMode(ctx, fs)
        runs_to_fit += [(fmode, fs, m, v, FEATURES_PREFIX) for m in s.feature_methods() for v in (fs.trade_offs() if m not in NO_TRADE_OFF else [0.0])]
    t0 = time.perf_counter()
    trained: list[tuple[str, _Trained]] = []
    for run_mode, opts, method, value, tag in runs_to_fit:
        name = tag + _name(method, value)
        prefix = ("features/" if tag else "") + (f"{method}/" if method in NO_TRADE_OFF else f"trade_off_{value:g}/")
        callbacks = list(ctx.callbacks) if len(runs_to_fit) == 1 else [_Prefixed(cb, prefix) for cb in ctx.callbacks]
        trained.append((name, _fit_one(ctx, run_mode, opts.model_copy(update={"method": method}), value, callbacks)))
    best, record = _choose(s, ctx.features.task, trained, key, maximize)
    candidates = [_candidate(t, key, n) for n, t in trained]
    chosen = _candidate(best, key, record.chosen)
    summary = AdaptationSummary(method=s.method, mode=s.mode, criterion=key, chosen=chosen, candidates=candidates,
                                oracle=_oracle([(n, t.trade_off, t.loop.state.history) for n, t in trained]))
    selection = record.save(ctx.out_dir / SELECTION_FILE)  # beside the head; copied into the package
    return best.mode.result(best.net, strategy=s.name, history=best.loop.state.history, val_metrics=chosen.val_metrics,
                       seconds=time.perf_counter() - t0, loop=loop_summary(best.loop, best.checkpoint_dir),
                       adaptation=summary, selection=selection)
