"""The MAML family on a regression dataset whose `group:` column makes its rows tasks (few-shot regression):
meta-train the encoder and the head's initialisation (and Meta-SGD's rates) on train's tasks, score K-shot
episodes of test's new tasks against the baselines, and register the model adapted to the support set (labelled
rows of one test task), evaluated on that task's other test rows.

The inner loop adapts the head (ANIL) with a normalised step (`tlops.training.meta.RegressionMetaLearner`). The package keeps
the encoder and the adaptation rule, so a support set of another task given at predict time (rows with their target
values) adapts the head to that task (`tlops.fewshot_predictor`). With `trainable: N` the backbone's top N groups
meta-train too (outer loop, on the raw inputs, as for classes) and the train step writes the full package holding
them; `inner_groups` (backbone groups adapted per task) stays classification-only: the config refuses it.
"""

from __future__ import annotations

import time

from tlops.records import FewShotRegressionReport, HeadResult, PackageResult
from tlops.strategies.context import TrainContext
from tlops.task_types import task_type


def train_episodic_regression(ctx: TrainContext, algorithm: str) -> HeadResult | PackageResult:
    """Meta-train (unless meta_epochs is 0), evaluate on test's new tasks, adapt to the support task."""
    import numpy as np
    import torch
    from torch import nn

    from tlops.data.fewshot import SUPPORT
    from tlops.fewshot_predictor import save_meta_state
    from tlops.strategies._episodic import EpisodeTickets, EncoderRows, _split_inputs
    from tlops.strategies.finetune import loop_summary, run_checkpoint_dir
    from tlops.training.loop import LabelledData, Net, fit
    from tlops.training.episodes import TaskEpisodeSampler
    from tlops.training.meta import (
        Encoder,
        EpisodeBatches,
        EpisodicObjective,
        EpisodicValidation,
        InputEpisodeBatches,
        InputEpisodicValidation,
        NumberEpisodeScoring,
        RegressionMetaLearner,
        adapted_regression_head,
        embed_rows,
    )
    from tlops.training.objectives import RegressionTask
    from tlops.training.probe import finetune_scaler

    s, feats, seed, ds = ctx.cfg.strategy, ctx.features, ctx.cfg.seed, ctx.dataset()
    x, y = feats.arrays("train")
    xv, yv = feats.arrays("val")
    g, gv = ds.groups("train"), ds.groups("val")
    if len(g) != len(y) or len(gv) != len(yv):
        raise RuntimeError("the dataset's rows and the cached features differ in number; rerun the features step")
    target = RegressionTask.for_targets(y)
    torch.manual_seed(seed)
    encoder = Encoder(x.shape[1], s.projection, s.hidden, s.embedding_dim, *finetune_scaler(x))
    learner = RegressionMetaLearner(encoder, algorithm, s.inner_lr_for("regression"), s.inner_steps)
    val_sampler, batch = TaskEpisodeSampler(gv, s.shots, s.queries, seed + 1), ctx.cfg.backbone.batch_size
    y_std = (y - target.mean) / target.std
    if s.trainable:  # the backbone's top groups meta-train below the encoder (the loop's head), on the raw inputs
        from tlops.training.feature_groups import FeatureGroups

        train_items, val_items = _split_inputs(ds, "train", y), _split_inputs(ds, "val", yv)
        backbone = FeatureGroups(ctx.backbone(), train_items)
        val_task = InputEpisodicValidation(learner, encoder, backbone, val_items, yv, val_sampler, s.val_episodes,
                                           NumberEpisodeScoring(target), batch)
        episodes = InputEpisodeBatches(backbone, train_items, TaskEpisodeSampler(g, s.shots, s.queries, seed), s.meta_batch, y_std)
        # the loop's own pass over val feeds nothing (episodes need support sets; the task embeds what they use): one row keeps it cheap
        net, val_rows = Net(backbone, encoder), LabelledData(backbone, val_items[:1], yv[:1])
    else:
        val_task = EpisodicValidation(learner, encoder, xv, yv, val_sampler, s.val_episodes, NumberEpisodeScoring(target))
        episodes = EpisodeBatches(x, TaskEpisodeSampler(g, s.shots, s.queries, seed), s.meta_batch, y_std)
        rows = EncoderRows(encoder)
        net, val_rows = Net(rows, nn.Identity()), LabelledData(rows, list(xv), yv)
    t0 = time.perf_counter()
    loop, ckpt = None, None
    if s.meta_epochs > 0:
        objective = EpisodicObjective(learner, episodes)
        tickets = LabelledData(EpisodeTickets(), list(range(s.episodes_per_epoch)), np.zeros(s.episodes_per_epoch, dtype=np.int64))
        # the step size this run uses (an unset inner_lr means 1 here, 0.01 for classes): two runs share a folder only if equal
        ckpt = run_checkpoint_dir(ctx, {**s.fingerprint(), "task": "regression", "inner_lr": s.inner_lr_for("regression")}, [x, y, xv, yv])
        loop = fit(net, objective, tickets, val_rows, s.loop_options(), seed=seed, task=val_task, checkpoint_dir=ckpt, callbacks=ctx.callbacks)
        history = loop.state.history
        val = history[loop.state.best_epoch]
    else:
        val = val_task.evaluate()
        history = [{"epoch": 0, **val}]
    seconds = time.perf_counter() - t0

    xs, ys = feats.arrays(SUPPORT)
    xt_model = None  # the model's test features: the cached ones, unless its backbone meta-trained
    if s.trainable:
        backbone.fine_tuned = True  # export writes the meta-trained weights, and the package identity hashes them
        xs = embed_rows(backbone, _split_inputs(ds, SUPPORT, ys), batch)
        xt_model = embed_rows(backbone, _split_inputs(ds, "test", feats.arrays("test")[1]), batch)
    support_task = sorted(set(ds.groups(SUPPORT)))
    head = adapted_regression_head(learner, encoder, torch.from_numpy(xs), torch.from_numpy(ys), target)
    gt = ds.groups("test")
    report = _report(ctx, learner, encoder, target, gt, support_task[0] if support_task else "", val_sampler, xt_model)
    meta_dir = ctx.out_dir / "meta" if s.trainable else ctx.out_dir
    meta_dir.mkdir(parents=True, exist_ok=True)
    # what a support set given at predict time is adapted with (another task's labelled rows), packaged with the head
    state = save_meta_state(meta_dir, encoder, learner, s.inner_lr_for("regression"),
                            {"in_dim": x.shape[1], "kind": s.projection, "hidden": s.hidden, "out_dim": s.embedding_dim},
                            xs, ys, [], target_scaler=(target.mean, target.std), task=feats.task)
    common = dict(strategy=s.name, history=history, seconds=seconds,
                  val_metrics=task_type(ctx.features.task).val_metrics(val),
                  loop=loop_summary(loop, ckpt) if loop else None, few_shot=report,
                  test_rows=[int(i) for i in np.flatnonzero(gt == report.support_task)])
    if s.trainable:
        from tlops.fewshot_predictor import package_files
        from tlops.package import save_package

        files, few_shot = package_files(state)
        package = save_package(ctx.out_dir / "package", backbone, head, [], files=files, extra={
            "strategy": s.model_dump(), "seed": ctx.cfg.seed, "few_shot": few_shot,
            "meta_train": {**common["loop"].model_dump(include={"best_epoch", "epochs_run", "stopped_early", "device"}),
                           "val_episode_mae": val["val_episode_mae"]}})
        return PackageResult(package=str(package), **common)
    path = head.save(ctx.out_dir / "head.safetensors")
    return HeadResult(head_path=str(path), spec=head.spec, meta_learner=state, **common)


def _report(ctx: TrainContext, learner, encoder, target, gt, support_task: str, val_sampler, model_x=None) -> FewShotRegressionReport:
    """The model and the baselines on the same test episodes; each ridge baseline picks its strength on val's episodes
    (`val_sampler`: meta-training's validation episodes). `model_x`: the model's test features when its backbone
    meta-trained (the baselines keep the pretrained backbone's cached features)."""
    from tlops.training.episodic_eval import pick_alpha, pooled_ridge, shot_errors, support_mean, support_ridge
    from tlops.training.meta import regression_learner_predict

    s, feats, seed = ctx.cfg.strategy, ctx.features, ctx.cfg.seed
    x, y = feats.arrays("train")
    xv, yv = feats.arrays("val")
    xt, yt = feats.arrays("test")
    shots = sorted(set(s.eval_shots))
    predictors = {}
    for name in s.baselines_for("regression"):
        if name == "support_mean":
            predictors[name] = support_mean()
        elif name == "support_ridge":
            alpha = pick_alpha(lambda a: support_ridge(encoder.mean, encoder.std, a), xv, yv, val_sampler, s.val_episodes)
            predictors[name] = support_ridge(encoder.mean, encoder.std, alpha)
        elif name == "pooled_ridge":
            alpha = pick_alpha(lambda a: pooled_ridge(x, y, a), xv, yv, val_sampler, s.val_episodes)
            predictors[name] = pooled_ridge(x, y, alpha)
    # the episodes are a function of (groups, seed, shots) only, so the two calls score the very same episodes
    scores, skipped = shot_errors(predictors, xt, yt, gt, shots, s.queries, s.eval_episodes, seed)
    model = shot_errors({"model": regression_learner_predict(learner, encoder, target)}, xt if model_x is None else model_x, yt, gt, shots,
                        s.queries, s.eval_episodes, seed)[0]["model"]
    return FewShotRegressionReport(split="test", queries=s.queries, model=model, baselines=scores, skipped_shots=skipped,
                                   support_task=support_task)
