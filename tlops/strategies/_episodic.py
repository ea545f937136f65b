"""What the meta-transfer strategies share (`protonet`, `maml`, `fomaml`, `meta_sgd`): the config, episodic
meta-training of an encoder on the cached frozen features with the shared loop, the episodic test
evaluation, and the registered head (the meta-learned encoder adapted to the support set's classes), packaged
with the encoder and adaptation rule so the model adapts to a new support set at predict time.

With `trainable: N` > 0 the top N backbone groups meta-train too (outer loop, with the projection): episodes
are drawn over the raw inputs and embedded by the backbone at every step, and the train step writes a full
package holding the meta-trained backbone (like `finetune`), so predictions and support sets given at
predict time are embedded by it. The MAML family's inner loop adapts the projection and the classifier on the
backbone's features, and with `inner_groups: M` (<= trainable) the top M backbone groups too: each task then
runs its support and query rows through the backbone with its own adapted weights (slower again), and the
package keeps the adapted weights of the registered support set beside the meta-learned ones.

The loop sees the encoder as its backbone (optimised, checkpointed, resumed) and the adaptation rule's own
parameters (Meta-SGD's alphas) through the objective; an "epoch" is `episodes_per_epoch` episodes whose
content is a pure function of (seed, episode index), so a resumed run replays the same episodes.

One run serves every task that has few-shot strategies: what differs by task comes from the task type's `few_shot(ctx)`,
an object with (classification: N-way episodes of novel classes; regression: the `group:` column's tasks of rows)
`episode_targets` (the train split's targets the episodes carry, or None), `sampler(split, seed)`,
`learner(encoder, algorithm, inner_lr, backbone_shapes)`, `scoring()` (validation's per-episode metrics and the
selection metric's direction), `fingerprint()` (the checkpoint folder's key), `adapt(learner, encoder, support, ys,
backbone)` -> (head, adapted backbone parameters, labels, support targets as saved), `report(learner, encoder, labels,
predict, x)` (the model and the task's baselines on the same test episodes), `state_options()` and `test_rows(report)`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from tlops.config_base import Strict
from tlops.records import HeadResult, PackageResult
from tlops.strategies.context import TrainContext
from tlops.task_types import task_type
from tlops.training.feature_rows import FeatureRows

if TYPE_CHECKING:
    from tlops.training.meta import Encoder


def _few_shot(task: str):
    """What the few-shot options depend on for a dataset of `task` (`TaskType.few_shot_options`): its baselines and their
    defaults, the default inner step, and the options it refuses."""
    opts = task_type(task).few_shot_options()
    if opts is None:
        raise ValueError(f"the {task} task type has no few-shot episodes")
    return opts


class EpisodicConfig(Strict):
    """Episodes, the encoder on the cached features, meta-training and evaluation options."""

    ways: int = Field(5, ge=2, description="N: classes per meta-training episode")
    shots: int = Field(5, ge=1, description="K: support rows per class in meta-training episodes")
    queries: int = Field(15, ge=1, description="Q: query rows per class (training and evaluation episodes)")
    projection: Literal["none", "linear", "mlp"] = Field("mlp", description="encoder on the standardised cached features "
                                                         "(none: the frozen features themselves)")
    hidden: int = Field(256, ge=1, description="mlp projection: hidden width")
    embedding_dim: int = Field(128, ge=1, description="projection output width")
    meta_epochs: int = Field(10, ge=0, description="0: no meta-training (ProtoNet on the frozen features is a strong baseline)")
    episodes_per_epoch: int = Field(200, ge=1)
    meta_batch: int = Field(4, ge=1, description="episodes per optimizer step (vmapped)")
    meta_lr: float = Field(1e-3, gt=0, description="outer-loop AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    patience: int = Field(5, ge=1, description="stop after this many epochs without a better validation episode accuracy")
    val_episodes: int = Field(100, ge=1, description="fixed validation episodes (val's novel classes) scored every epoch")
    eval_episodes: int = Field(600, ge=600, description="test episodes per setting (>= 600, the field's protocol)")
    eval_shots: list[int] = Field([1, 2, 5, 10], min_length=1, description="shots of the 5-way accuracy-vs-shots evaluation")
    baselines: list[Literal["linear_probe", "protonet0", "finetune_support", "support_mean", "support_ridge", "pooled_ridge"]] | None = Field(
        None, description="also scored on the same episodes (default: linear_probe and protonet0 for classes, all three for numbers); "
        "classes: a support-set linear probe (slow: one scikit-learn fit per episode), ProtoNet without meta-training, a new head "
        "fine-tuned on each support set (finetune_support); numbers (a regression dataset): the support targets' mean, a ridge on "
        "each support set, one ridge on all train rows (pooled_ridge: no adaptation)")
    support_shots: int = Field(5, ge=1, description="rows per test class carved (seeded) as the registered model's support set "
                                                    "when the dataset has no support.csv")
    selection: Literal["support", "meta"] = Field("support", description="classes: which candidate is registered and served "
                                                  "(support: the validation-episode favourite among the meta-learned encoder, the "
                                                  "frozen-feature baselines, a head fitted on the meta-learned embedding and a "
                                                  "calibrated pool of these (meta_selection.ENSEMBLES), unless "
                                                  "another's held-out accuracy on the support set beats it by more than 2 "
                                                  "standard errors (meta_selection.PRIOR_Z); chosen "
                                                  "again for a support set given at predict time; "
                                                  "meta: always the meta-learned encoder). selection.json records the scores either way")
    trainable: int = Field(0, ge=0, description="top backbone groups meta-trained with the projection, on the raw inputs (slow: "
                                               "the backbone runs at every step); 0: the cached frozen features only")
    backbone_lr: float = Field(5e-5, gt=0, description="trainable > 0: learning rate of the top backbone group")
    layer_decay: float = Field(1.0, gt=0, le=1, description="trainable > 0: each lower trainable group's LR is multiplied by this once more")
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    resume: bool = True
    checkpoint_every_steps: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _something_to_meta_train(self):
        if self.meta_epochs > 0 and self.projection == "none" and getattr(self, "name", "") == "protonet" and not self.trainable:
            raise ValueError("projection: none leaves ProtoNet nothing to meta-train; set meta_epochs: 0 (the frozen-feature "
                             "baseline), projection: linear / mlp, or trainable: N (top backbone groups)")
        if self.trainable and self.meta_epochs == 0:
            raise ValueError(f"trainable: {self.trainable} asks for backbone groups to meta-train, but meta_epochs is 0; "
                             "set meta_epochs >= 1 or trainable: 0")
        return self

    def baselines_for(self, task: str) -> list[str]:
        """The baselines scored for a dataset's task: the ones named, or that task's defaults."""
        if self.baselines is not None:
            return list(self.baselines)
        return list(_few_shot(task).default_baselines)

    def refusal_for_task(self, task: str) -> str | None:
        """Why these options cannot train a model for `task` (None: they can)."""
        fit = _few_shot(task).baselines
        wrong = [b for b in self.baselines_for(task) if b not in fit]
        if wrong:
            return f"strategy.baselines {wrong} are not {task} baselines; use {', '.join(fit)}"
        return None

    def fingerprint(self) -> dict:
        """The options that change the meta-training trajectory (the checkpoint folder's key). The backbone options
        are left out when the backbone is frozen, so cached-features runs keep the folders they had."""
        skip = {"eval_episodes", "eval_shots", "baselines", "selection"} | ({"trainable", "backbone_lr", "layer_decay"} if not self.trainable else set())
        from tlops.strategies.finetune import NOT_IN_FINGERPRINT

        return self.model_dump(exclude=NOT_IN_FINGERPRINT | skip)

    def loop_options(self):
        """The shared loop's options: one optimizer step per `meta_batch` episodes, encoder and alphas at `meta_lr`."""
        from tlops.strategies.finetune import FinetuneConfig

        # cached features: the encoder is the loop's backbone (one group, at meta_lr); trainable: the encoder is the
        # loop's head (meta_lr) and the real backbone's top groups train at backbone_lr
        backbone = {"trainable": self.trainable, "backbone_lr": self.backbone_lr, "layer_decay": self.layer_decay} if self.trainable \
            else {"backbone_lr": self.meta_lr}
        return FinetuneConfig(epochs=self.meta_epochs, batch_size=self.meta_batch, head_lr=self.meta_lr, **backbone,
                              weight_decay=self.weight_decay, schedule=self.schedule, warmup_ratio=self.warmup_ratio,
                              max_grad_norm=self.max_grad_norm, patience=self.patience, augment=False, bucket_by_length=False,
                              device=self.device, precision="fp32", resume=self.resume,
                              checkpoint_every_steps=self.checkpoint_every_steps, eval_batch_size=1024)


class MamlConfig(EpisodicConfig):
    """MAML-family inner loop options."""

    inner_lr: float | None = Field(None, gt=0, description="inner-loop step size (Meta-SGD: the alphas' starting value); default 0.01; "
                                                           "on a regression dataset the step is normalised by the support embeddings' "
                                                           "squared norm: 0 < inner_lr < 2, default 1")
    inner_steps: int = Field(1, ge=1)
    anil: bool | None = Field(None, description="ANIL: the inner loop adapts only the classifier (the encoder is meta-learned, not "
                                                "adapted); default false for classes, always on for numbers")
    inner_groups: int = Field(0, ge=0, description="top backbone groups the inner loop adapts per task too (<= trainable; "
                                                   "0: the inner loop adapts the projection and the classifier only)")

    @model_validator(mode="after")
    def _inner_groups_train(self):
        if self.inner_groups > self.trainable:
            raise ValueError(f"inner_groups: {self.inner_groups} > trainable: {self.trainable}; the inner loop adapts only groups that "
                             f"meta-train: set trainable: {self.inner_groups} (or more), or lower inner_groups")
        if self.inner_groups and self.anil:
            raise ValueError("anil: true adapts only the classifier in the inner loop, but inner_groups > 0 asks it to adapt backbone "
                             "groups; set one of them off")
        return self

    def inner_lr_for(self, task: str) -> float:
        """The inner step size: the one set, or the task's default (regression's step is normalised: 1 fits one row)."""
        if self.inner_lr is not None:
            return self.inner_lr
        return _few_shot(task).default_inner_lr

    def refusal_for_task(self, task: str) -> str | None:
        return _few_shot(task).refusal(self, task) or super().refusal_for_task(task)

    def fingerprint(self) -> dict:
        out = super().fingerprint()
        out["inner_lr"], out["anil"] = self.inner_lr_for("classification"), bool(self.anil)  # unset = the defaults they were
        if not self.inner_groups:  # runs from before the option keep their checkpoint folders
            out.pop("inner_groups", None)
        return out


class EncoderRows(FeatureRows):
    """The loop's backbone: cached feature rows in, the meta-learned encoder's embeddings out."""

    def __init__(self, encoder: Encoder):
        self.model = encoder
        self.num_features = encoder(encoder.mean[None]).shape[1]


class EpisodeTickets(EncoderRows):
    """The loop's training rows: one ticket per episode of an epoch (the objective builds the episodes from the step)."""

    def __init__(self):
        pass

    def collate(self, rows):
        import torch

        return torch.as_tensor(rows)


def _split_inputs(ds, split: str, y) -> list[str]:
    """The raw inputs of a split, row-aligned with its cached features (both come from the same loaded dataset)."""
    items = ds.inputs(split)
    if len(items) != len(y):
        raise RuntimeError(f"{split}: {len(items)} raw inputs but {len(y)} cached feature rows; rerun the features step")
    return items


def train_episodic(ctx: TrainContext, algorithm: str) -> HeadResult | PackageResult:
    """Meta-train (unless meta_epochs is 0), evaluate episodically on test's novel classes (or new tasks), adapt to the
    support set. With `trainable` > 0 the backbone's top groups meta-train too, and the result is a full package."""
    import numpy as np
    import torch
    from torch import nn

    from tlops.data.fewshot import SUPPORT
    from tlops.fewshot_predictor import package_files, save_meta_state
    from tlops.package import save_package
    from tlops.strategies.finetune import loop_summary, run_checkpoint_dir
    from tlops.training.loop import LabelledData, Net, fit
    from tlops.training.meta import (
        BackboneFunction,
        Encoder,
        EpisodeBatches,
        EpisodicObjective,
        EpisodicValidation,
        InputEpisodeBatches,
        InputEpisodicValidation,
        embed_rows,
        input_learner_predict,
        row_ids,
    )
    from tlops.training.probe import finetune_scaler

    s, feats, cfg, seed = ctx.cfg.strategy, ctx.features, ctx.cfg, ctx.cfg.seed
    own = task_type(feats.task).episodic_trainer(ctx, algorithm)  # a task type's whole run of its own
    if own is not None:
        return own
    few = task_type(feats.task).few_shot(ctx)
    if few is None:
        raise RuntimeError(f"the {feats.task} task type has no few-shot episodes; strategy {s.name} cannot train it")
    x, y = feats.arrays("train")
    xv, yv = feats.arrays("val")
    torch.manual_seed(seed)
    encoder = Encoder(x.shape[1], s.projection, s.hidden, s.embedding_dim, *finetune_scaler(x))
    inner_lr = s.inner_lr_for(feats.task) if hasattr(s, "inner_lr_for") else 0.0  # ProtoNet has no inner loop: 0
    inner, batch = getattr(s, "inner_groups", 0), cfg.backbone.batch_size
    scoring, val_sampler = few.scoring(), few.sampler("val", seed + 1)
    if s.trainable:  # the backbone's top groups meta-train below the encoder (the loop's head), on the raw inputs
        from tlops.training.feature_groups import FeatureGroups

        ds = ctx.dataset()
        train_items, val_items = _split_inputs(ds, "train", y), _split_inputs(ds, "val", yv)
        learner = None if inner else few.learner(encoder, algorithm, inner_lr, {})  # made before the backbone loads, as ever
        backbone = FeatureGroups(ctx.backbone(), train_items)  # narrowed to the groups the features use
        if inner:  # the inner loop adapts the backbone's top `inner` groups too
            fn = BackboneFunction(backbone)
            names = set(fn.top_group_names(backbone.parameter_groups(), inner))
            learner = few.learner(encoder, algorithm, inner_lr, {k: p.shape for k, p in fn.model.named_parameters() if k in names})
        val_task = InputEpisodicValidation(learner, encoder, backbone, val_items, yv, val_sampler, s.val_episodes, scoring, batch)
        # the loop's own pass over val feeds nothing (episodes need support sets; the task embeds what they use): one row keeps it cheap
        net, val_rows = Net(backbone, encoder), LabelledData(backbone, val_items[:1], yv[:1])
    else:
        learner = few.learner(encoder, algorithm, inner_lr, None)
        val_task = EpisodicValidation(learner, encoder, xv, yv, val_sampler, s.val_episodes, scoring)
        rows = EncoderRows(encoder)
        net, val_rows = Net(rows, nn.Identity()), LabelledData(rows, list(xv), yv)
    t0 = time.perf_counter()
    loop, ckpt = None, None
    if s.meta_epochs > 0:
        train_sampler = few.sampler("train", seed)
        episodes = InputEpisodeBatches(backbone, train_items, train_sampler, s.meta_batch, few.episode_targets) if s.trainable \
            else EpisodeBatches(x, train_sampler, s.meta_batch, few.episode_targets)
        tickets = LabelledData(EpisodeTickets(), list(range(s.episodes_per_epoch)), np.zeros(s.episodes_per_epoch, dtype=np.int64))
        ckpt = run_checkpoint_dir(ctx, few.fingerprint(), [x, y, xv, yv])
        loop = fit(net, EpisodicObjective(learner, episodes), tickets, val_rows, s.loop_options(), seed=seed, task=val_task,
                   checkpoint_dir=ckpt, callbacks=ctx.callbacks)
        history = loop.state.history
        val = history[loop.state.best_epoch]
    else:
        val = val_task.evaluate()
        history = [{"epoch": 0, **val}]
    seconds = time.perf_counter() - t0

    xs, ys = feats.arrays(SUPPORT)
    support, predict, model_x = torch.from_numpy(xs), None, None  # the model's test predictor and features: the task's own on the
    # cached ones, unless its backbone meta-trained (the baselines keep the pretrained backbone's cached features)
    if s.trainable:
        backbone.fine_tuned = True  # export writes the meta-trained weights, and the package identity hashes them
        test_items, support_items = _split_inputs(ds, "test", feats.arrays("test")[1]), _split_inputs(ds, SUPPORT, ys)
        xs = embed_rows(backbone, support_items, batch)
        if inner:  # the support's raw rows adapt the backbone's top groups too; test episodes run through it per task
            fn.model.eval()
            support = InputEpisodeBatches(backbone, support_items, None, 1).batch(np.arange(len(support_items)), encoder.mean.device)
            predict, model_x = input_learner_predict(learner, encoder, backbone, test_items), row_ids(len(test_items))
        else:
            support, model_x = torch.from_numpy(xs), embed_rows(backbone, test_items, batch)
    head, adapted, labels, support_y = few.adapt(learner, encoder, support, ys, fn if inner else None)
    report = few.report(learner, encoder, labels, predict, model_x)
    meta_dir = ctx.out_dir / "meta" if s.trainable else ctx.out_dir
    meta_dir.mkdir(parents=True, exist_ok=True)
    if not task_type(feats.task).numeric_target:  # classes: the candidates, scored on the support set (issue 30)
        head, report = _choose_candidate(ctx, few, encoder, learner, xs, support_y, len(labels), head, report, val, model_x, meta_dir)
    # what a support set given at predict time is adapted with (few-shot serving), packaged with the head
    state = save_meta_state(meta_dir, encoder, learner, inner_lr,
                            {"in_dim": x.shape[1], "kind": s.projection, "hidden": s.hidden, "out_dim": s.embedding_dim},
                            xs, support_y, labels, adapted_backbone=adapted, task=feats.task, **few.state_options())
    common = dict(strategy=s.name, labels=labels, history=history, seconds=seconds, val_metrics=task_type(feats.task).val_metrics(val),
                  loop=loop_summary(loop, ckpt) if loop else None, few_shot=report, test_rows=few.test_rows(report))
    if s.trainable:
        files, few_shot = package_files(state)
        package = save_package(ctx.out_dir / "package", backbone, head, labels, files=files, extra={
            "strategy": s.model_dump(), "seed": cfg.seed, "few_shot": few_shot,
            "meta_train": {**common["loop"].model_dump(include={"best_epoch", "epochs_run", "stopped_early", "device"}),
                           scoring.selection_metric: val[scoring.selection_metric]}})
        return PackageResult(package=str(package), **common)
    path = head.save(ctx.out_dir / "head.safetensors")
    return HeadResult(head_path=str(path), spec=head.spec, meta_learner=state, **common)


VAL_CANDIDATE_EPISODES = 50  # validation episodes each candidate is scored on (reported; the choice's fallback at one shot)


def _choose_candidate(ctx: TrainContext, few, encoder: Encoder, learner, xs, support_y, n_classes: int, meta_head, report, val: dict,
                      model_x, out_dir):
    """The registered head of a few-shot classifier: the candidate (`tlops.training.meta_selection.choose_task`) the
    support set's held-out accuracy prefers, with the validation favourite as prior (or the meta-learned one with
    `selection: meta`), scored beside its validation-episode
    accuracy and, reported only, its test-episode accuracy (the oracle); `selection.json` in `out_dir` records it (the
    package carries it, and predict reselects with it for a new support set). The report gains `meta_probe`'s test scores."""
    import numpy as np

    from tlops.records import ShotScore
    from tlops.selection_record import SELECTION_FILE, SelectionRecord
    from tlops.training import meta_selection as ms
    from tlops.training.episodes import EpisodeSampler
    from tlops.training.episodic_eval import EVAL_STREAM
    from tlops.training.meta import mean_ci95
    from tlops.validation import EVAL_WAYS

    s, seed = ctx.cfg.strategy, ctx.cfg.seed
    inner = getattr(s, "inner_groups", 0)
    if inner:
        excluded = {n: f"inner_groups: {inner}: only the meta-learned rule adapts the backbone groups" for n in ms.CANDIDATES if n != "meta_learned"}
    elif s.trainable:
        excluded = {n: "the package holds the meta-trained backbone, not the frozen one this baseline uses" for n in ms.FROZEN}
    else:
        excluded = {}
    excluded = ms.pool_exclusions(excluded)
    live = [n for n in ms.CANDIDATES if n not in excluded]
    if s.trainable:  # val rows would need the meta-trained backbone: the meta-learned encoder's validation from the loop only
        val_scores = {"meta_learned": float(val["val_episode_accuracy"])} if "val_episode_accuracy" in val else {}
    else:
        xv, _ = ctx.features.arrays("val")
        sampler = few.sampler("val", seed + 1)  # the loop's validation episodes
        n_val = min(s.val_episodes, VAL_CANDIDATE_EPISODES)
        val_scores = {n: float(ms.episode_accuracies(n, encoder, learner, xv, sampler, n_val).mean()) for n in live
                      if n not in ms.ENSEMBLES or s.shots >= 2}  # a pool calibrates on held-out support rows: 2 shots or more
    temperatures: dict[str, float] = {}  # a chosen pool's members' calibration, fitted once by the choice
    if inner:
        record = {"family": "meta_transfer", "criterion": "only candidate", "chosen": "meta_learned",
                  "why": "the inner loop adapts backbone groups, which only the meta-learned rule can do, so it is the one candidate.",
                  "candidates": [{"name": n, "scores": {ms.FALLBACK: val_scores.get(n)}, "excluded": excluded.get(n),
                                  "chosen": n == "meta_learned"} for n in ms.CANDIDATES]}
    else:
        record = ms.select(encoder, learner, xs, support_y, n_classes, ms.CANDIDATES, val_scores, excluded, temperatures)
    if s.selection == "meta" and record["criterion"] != "only candidate":
        record = {**record, "criterion": "strategy.selection: meta", "chosen": "meta_learned",
                  "why": f"strategy.selection: meta registers the meta-learned encoder whatever the support set says (by "
                         f"{record['criterion']} it preferred {record['chosen']}).",
                  "candidates": [{**c, "chosen": c["name"] == "meta_learned"} for c in record["candidates"]]}
    shots = int(np.unique(np.asarray(support_y), return_counts=True)[1].min())
    if "meta_probe" in live and shots in s.eval_shots and shots not in report.skipped_shots:
        # its test episodes at the support's shots, beside the other baselines' (the same episodes: same sampler seeds)
        xt, yt = ctx.features.arrays("test")
        x = xt if model_x is None else model_x
        rows = []
        for k in [shots]:
            sampler = EpisodeSampler(yt, EVAL_WAYS, k, s.queries, seed + EVAL_STREAM + k)
            mean, half = mean_ci95(ms.episode_accuracies("meta_probe", encoder, learner, x, sampler, s.eval_episodes))
            rows.append(ShotScore(ways=EVAL_WAYS, shots=k, episodes=s.eval_episodes, accuracy=mean, ci95=half))
        report = report.model_copy(update={"baselines": {**report.baselines, "meta_probe": rows}})
    scored = {"meta_learned": report.model, **report.baselines}
    at = {n: next((r.accuracy for r in rows if r.shots == shots), None) for n, rows in scored.items()}
    oracle = {n: float(v) for n, v in at.items() if v is not None and n in ms.CANDIDATES}
    if oracle:  # the candidates' test-episode accuracy at the support's shots: reported beside the choice, never used for it
        record["oracle"] = oracle
    SelectionRecord.model_validate(record).save(out_dir / SELECTION_FILE)
    chosen = record["chosen"]
    head = meta_head if chosen == "meta_learned" else ms.candidate_head(chosen, encoder, learner, xs, support_y, n_classes, temperatures)
    return head, report
