"""What the meta-transfer strategies share (`protonet`, `maml`, `fomaml`, `meta_sgd`): the config, episodic
meta-training of an encoder on the cached frozen features with the shared loop, the episodic test
evaluation, and the registered head (the meta-learned encoder adapted to the support set's classes), packaged
with the encoder and adaptation rule so the model adapts to a new support set at predict time.

The loop sees the encoder as its backbone (optimised, checkpointed, resumed) and the adaptation rule's own
parameters (Meta-SGD's alphas) through the objective; an "epoch" is `episodes_per_epoch` episodes whose
content is a pure function of (seed, episode index), so a resumed run replays the same episodes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from tlops.config_base import Strict
from tlops.records import FewShotReport, HeadResult
from tlops.strategies.registry import TrainContext
from tlops.training.feature_rows import FeatureRows

if TYPE_CHECKING:
    from tlops.training.meta import Encoder, MetaLearner


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
    baselines: list[Literal["linear_probe", "protonet0", "finetune_support"]] = Field(["linear_probe", "protonet0"], description="also scored on the same "
                                                                  "episodes: a support-set linear probe (slow: one scikit-learn fit "
                                                                  "per episode), ProtoNet without meta-training")
    support_shots: int = Field(5, ge=1, description="rows per test class carved (seeded) as the registered model's support set "
                                                    "when the dataset has no support.csv")
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    resume: bool = True
    checkpoint_every_steps: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _something_to_meta_train(self):
        if self.meta_epochs > 0 and self.projection == "none" and getattr(self, "name", "") == "protonet":
            raise ValueError("projection: none leaves ProtoNet nothing to meta-train; set meta_epochs: 0 (the frozen-feature "
                             "baseline) or projection: linear / mlp")
        return self

    def loop_options(self):
        """The shared loop's options: one optimizer step per `meta_batch` episodes, encoder and alphas at `meta_lr`."""
        from tlops.strategies.finetune import FinetuneConfig

        return FinetuneConfig(epochs=self.meta_epochs, batch_size=self.meta_batch, head_lr=self.meta_lr, backbone_lr=self.meta_lr,
                              weight_decay=self.weight_decay, schedule=self.schedule, warmup_ratio=self.warmup_ratio,
                              max_grad_norm=self.max_grad_norm, patience=self.patience, augment=False, bucket_by_length=False,
                              device=self.device, precision="fp32", resume=self.resume,
                              checkpoint_every_steps=self.checkpoint_every_steps, eval_batch_size=1024)


class MamlConfig(EpisodicConfig):
    """MAML-family inner loop options."""

    inner_lr: float = Field(0.01, gt=0, description="inner-loop step size (Meta-SGD: the alphas' starting value)")
    inner_steps: int = Field(1, ge=1)
    anil: bool = Field(False, description="ANIL: the inner loop adapts only the classifier (the encoder is meta-learned, not adapted)")


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


def _meta_train(ctx: TrainContext, encoder: Encoder, learner: MetaLearner, x, y, xv, yv):
    import numpy as np
    from torch import nn

    from tlops.strategies.finetune import NOT_IN_FINGERPRINT, run_checkpoint_dir
    from tlops.training.episodes import EpisodeSampler
    from tlops.training.loop import LabelledData, Net, fit
    from tlops.training.meta import (
        EpisodeBatches,
        EpisodicObjective,
        EpisodicValidation,
    )

    s, seed = ctx.cfg.strategy, ctx.cfg.seed
    rows = EncoderRows(encoder)
    objective = EpisodicObjective(learner, EpisodeBatches(x, EpisodeSampler(y, s.ways, s.shots, s.queries, seed), s.meta_batch))
    task = EpisodicValidation(learner, encoder, xv, EpisodeSampler(yv, s.ways, s.shots, s.queries, seed + 1), s.val_episodes)
    tickets = LabelledData(EpisodeTickets(), list(range(s.episodes_per_epoch)), np.zeros(s.episodes_per_epoch, dtype=np.int64))
    ckpt = run_checkpoint_dir(ctx, s.model_dump(exclude=NOT_IN_FINGERPRINT | {"eval_episodes", "eval_shots", "baselines"}), [x, y, xv, yv])
    return fit(Net(rows, nn.Identity()), objective, tickets, LabelledData(rows, list(xv), yv), s.loop_options(), seed=seed, task=task,
               checkpoint_dir=ckpt, callbacks=ctx.callbacks), ckpt


def _few_shot_report(ctx: TrainContext, encoder: Encoder, learner: MetaLearner, support_classes: list[str]) -> FewShotReport:
    from tlops.training.episodic_eval import BASELINES, shot_scores
    from tlops.training.meta import learner_predict
    from tlops.validation import EVAL_WAYS

    s = ctx.cfg.strategy
    xt, yt = ctx.features.arrays("test")
    predictors = {"model": learner_predict(learner, encoder)}
    known = BASELINES
    predictors |= {name: known[name](encoder.mean, encoder.std) for name in s.baselines}
    scores, skipped = shot_scores(predictors, xt, yt, EVAL_WAYS, sorted(set(s.eval_shots)), s.queries, s.eval_episodes, ctx.cfg.seed)
    model = scores.pop("model")
    return FewShotReport(split="test", queries=s.queries, model=model, baselines=scores, skipped_shots=skipped,
                         support_classes=support_classes)


def train_episodic(ctx: TrainContext, algorithm: str) -> HeadResult:
    """Meta-train (unless meta_epochs is 0), evaluate episodically on test's novel classes, adapt to the support set."""
    import numpy as np
    import torch

    from tlops.data.fewshot import SUPPORT
    from tlops.fewshot_predictor import save_meta_state
    from tlops.strategies.finetune import loop_summary
    from tlops.training.meta import Encoder, MetaLearner, adapted_head
    from tlops.training.probe import finetune_scaler

    s, feats, seed = ctx.cfg.strategy, ctx.features, ctx.cfg.seed
    x, y = feats.arrays("train")
    xv, yv = feats.arrays("val")
    torch.manual_seed(seed)
    encoder = Encoder(x.shape[1], s.projection, s.hidden, s.embedding_dim, *finetune_scaler(x))
    learner = MetaLearner(encoder, algorithm, getattr(s, "inner_lr", 0.0), getattr(s, "inner_steps", 0), getattr(s, "anil", False))
    t0 = time.perf_counter()
    loop, ckpt = None, None
    if s.meta_epochs > 0:
        loop, ckpt = _meta_train(ctx, encoder, learner, x, y, xv, yv)
        history = loop.state.history
        val = history[loop.state.best_epoch]
    else:
        from tlops.training.episodes import EpisodeSampler
        from tlops.training.meta import EpisodicValidation

        val = EpisodicValidation(learner, encoder, xv, EpisodeSampler(yv, s.ways, s.shots, s.queries, seed + 1), s.val_episodes).evaluate()
        history = [{"epoch": 0, **val}]
    seconds = time.perf_counter() - t0

    xs, ys = feats.arrays(SUPPORT)
    classes = np.unique(ys)
    targets = np.searchsorted(classes, ys)
    head = adapted_head(learner, encoder, torch.from_numpy(xs), torch.from_numpy(targets), len(classes))
    labels = [feats.labels[int(c)] for c in classes]
    report = _few_shot_report(ctx, encoder, learner, labels)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    path = head.save(ctx.out_dir / "head.safetensors")
    # what a support set given at predict time is adapted with (few-shot serving), packaged with the head
    state = save_meta_state(ctx.out_dir, encoder, learner, getattr(s, "inner_lr", 0.0),
                            {"in_dim": x.shape[1], "kind": s.projection, "hidden": s.hidden, "out_dim": s.embedding_dim},
                            xs, targets, labels)
    return HeadResult(strategy=s.name, head_path=str(path), spec=head.spec, labels=labels, history=history,
                      val_macro_f1=val["val_macro_f1"], seconds=seconds, loop=loop_summary(loop, ckpt) if loop else None, few_shot=report,
                      meta_learner=state)
