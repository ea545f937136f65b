"""The `finetune` strategy: config, batching, checkpoints, the training loop's properties, the flow in every
modality, and crash safety (SIGKILL mid-epoch, then resume; an exception ends the MLflow run FAILED).

Backbones here are random-weight code-path fixtures (tiny BERT / ViT / wav2vec2) or the real packaged
EfficientNet-Lite0 and speech_embedding; bench/finetune_*.py measures quality on real data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import finetune_strategy, tiny_config
from tlops.backbones import load_backbone
from tlops.checkpoint import MANIFEST, latest_checkpoint, prune, read_checkpoint, save_checkpoint
from tlops.config import config_from_dict
from tlops.data import load_dataset
from tlops.errors import ConfigError
from tlops.modules.heads import ProbeHead
from tlops.strategies.finetune import FinetuneConfig, finetune
from tlops.strategies.registry import all_strategies
from tlops.training.batching import epoch_batches


def _fit(b, ds_path: Path, head: ProbeHead, cfg: FinetuneConfig, ckpt: Path | None = None):
    ds = load_dataset(ds_path)
    return finetune(b, ds.inputs("train"), ds.label_ids("train"), ds.inputs("val"), ds.label_ids("val"), head, cfg, seed=0,
                    checkpoint_dir=ckpt)


def _run(b, ds_path: Path, ckpt: Path | None = None, **over):
    torch.manual_seed(0)
    head = ProbeHead(b.num_features, len(load_dataset(ds_path).labels))
    return _fit(b, ds_path, head, FinetuneConfig(**finetune_strategy(**over)), ckpt)


def test_finetune_options_are_validated_by_the_config():
    base = {"data": {"path": "d"}, "backbone": {"name": "hf:x"}, "registry": {"model_name": "m"}}
    cfg = config_from_dict({**base, "strategy": {"name": "finetune", "trainable": 2, "unfreeze_every": 1, "lp_ft": True}})
    assert isinstance(cfg.strategy, FinetuneConfig) and cfg.strategy.trainable == 2 and cfg.strategy.lp_ft
    cases = [({"name": "finetune", "epoch": 3}, "strategy.epoch: unknown key"),
             ({"name": "finetune", "unfreeze_every": 2}, "unfreeze_every needs a starting number"),
             ({"name": "finetune", "trainable": -1}, "0 trains only the head"),
             ({"name": "finetune", "schedule": "step"}, "strategy.schedule"),
             ({"name": "finetune", "precision": "fp16"}, "strategy.precision"),
             ({"name": "fine_tune"}, "valid: " + ", ".join(sorted(all_strategies())))]
    for strategy, message in cases:
        with pytest.raises(ConfigError) as e:
            config_from_dict({**base, "strategy": strategy})
        assert message in str(e.value), str(e.value)
    with pytest.raises(ConfigError) as e:  # a probe key under finetune lists finetune's keys
        config_from_dict({**base, "strategy": {"name": "finetune", "C": 1.0}})
    assert "backbone_lr" in str(e.value) and "l2sp" in str(e.value)


def test_checkpoints_are_atomic_and_a_damaged_or_partial_one_is_never_picked(tmp_path):
    w = {"w": torch.arange(6.0)}
    save_checkpoint(tmp_path, "step-000000001", {"m.safetensors": w}, {"n": 1}, state={"opt": torch.ones(2)})
    save_checkpoint(tmp_path, "step-000000002", {"m.safetensors": {"w": w["w"] + 1}}, {"n": 2}, state={"opt": torch.zeros(2)})
    ckpt, skipped = latest_checkpoint(tmp_path)
    assert ckpt.meta == {"n": 2} and skipped == [] and torch.equal(ckpt.state()["opt"], torch.zeros(2))
    # a crash mid-write leaves a temp folder or a folder without manifest; a damaged file breaks its sha256
    (tmp_path / ".tmp-crashed").mkdir()
    (tmp_path / "step-000000004").mkdir()
    (tmp_path / "step-000000004" / "m.safetensors").write_bytes(b"partial")
    shutil.copytree(tmp_path / "step-000000002", tmp_path / "step-000000003")
    with open(tmp_path / "step-000000003" / "m.safetensors", "r+b") as f:
        f.truncate(20)
    ckpt, skipped = latest_checkpoint(tmp_path)
    assert ckpt.meta == {"n": 2} and skipped == ["step-000000004", "step-000000003"]
    assert read_checkpoint(tmp_path / "step-000000003") is None
    prune(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000002"]  # the newest sound one stays
    save_checkpoint(tmp_path, "best", {"m.safetensors": w}, {"e": 0})
    save_checkpoint(tmp_path, "best", {"m.safetensors": {"w": w["w"] * 2}}, {"e": 1})  # replaced, not merged
    best = read_checkpoint(tmp_path / "best")
    assert best.meta == {"e": 1} and torch.equal(best.tensors("m.safetensors")["w"], w["w"] * 2)
    assert json.loads((tmp_path / "best" / MANIFEST).read_text())["files"].keys() == {"m.safetensors"}


def test_a_signal_inside_torch_save_stays_a_stop_not_a_failure(tmp_path, monkeypatch):
    """SIGTERM/Ctrl-C raised inside torch.save's file writes comes out of torch as `RuntimeError: unexpected pos`
    (seen in CI: the run was then closed as failed and hung at exit); the checkpoint writer re-raises the stop."""
    import builtins

    import tlops.checkpoint as checkpoint

    class InterruptedFile:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, b):
            self.writes += 1
            if self.writes == 3:  # as a signal handler does: the exception comes out of a write call
                raise KeyboardInterrupt
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(checkpoint, "open", lambda *a, **k: InterruptedFile(builtins.open(*a, **k)), raising=False)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, "step-000000001", {"m.safetensors": {"w": torch.ones(3)}}, {"n": 1},
                        state={"opt": torch.ones(1000)})
    assert list(tmp_path.iterdir()) == []  # no half-written checkpoint or temp folder


def test_interruption_behind_finds_the_stop_on_the_chain_only():
    from tlops.errors import interruption_behind

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("unexpected pos 46 vs 0")
    except RuntimeError as e:
        assert isinstance(interruption_behind(e), KeyboardInterrupt)
    assert interruption_behind(RuntimeError("a real failure")) is None


def test_epoch_batches_are_reproducible_complete_and_length_bucketed():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=1000).tolist()
    a = epoch_batches(1000, 16, seed=1, epoch=2, lengths=lengths)
    assert a == epoch_batches(1000, 16, seed=1, epoch=2, lengths=lengths)  # rebuildable after a crash
    assert a != epoch_batches(1000, 16, seed=1, epoch=3, lengths=lengths)
    assert sorted(i for b in a for i in b) == list(range(1000))
    plain = epoch_batches(1000, 16, seed=1, epoch=2)
    padded = lambda batches: sum(len(b) * max(lengths[i] for i in b) for b in batches)  # noqa: E731
    assert padded(a) < 0.6 * padded(plain)


def test_finetune_learns_keeps_the_best_epoch_and_moves_only_trainable_groups(tmp_path, tiny_bert, text_dataset):
    b = load_backbone(f"hf:{tiny_bert}", max_length=32)
    before = [[p.detach().clone() for p in g] for g in b.parameter_groups()]
    r = _run(b, text_dataset, tmp_path / "ckpt", trainable=1, epochs=4).state
    assert [h["epoch"] for h in r.history] == [0, 1, 2, 3] and r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.best_metric == max(h["val_macro_f1"] for h in r.history) and r.best_epoch == int(np.argmax([h["val_macro_f1"] for h in r.history]))
    moved = [any(not torch.equal(p, q) for p, q in zip(g, old)) for g, old in zip(b.parameter_groups(), before)]
    # groups: embeddings, layer 0, layer 1, pooler. The pooler changes no mean-pooled feature, so the top group
    # that trains is layer 1 (it used to be the pooler: `trainable: 1` trained nothing in the backbone)
    assert moved == [False, False, True, False], moved
    best = read_checkpoint(tmp_path / "ckpt" / "best")
    assert best.meta["epoch"] == r.best_epoch
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in best.tensors("backbone.safetensors").items())
    assert all(h["lr_head"] / h["lr_backbone_top"] == pytest.approx(10.0) for h in r.history[:-1])


def test_loss_sums_read_every_n_steps_give_the_same_history_as_every_step(tiny_bert, text_dataset, monkeypatch):
    """A GPU reads the running loss every LOSS_FLUSH_STEPS optimizer steps instead of every batch (no host sync per
    step); the epoch's train_loss must not depend on when it was read. Forced here on the CPU: every 3 steps, with
    epochs whose step count is not a multiple of 3 (the epoch end flushes the rest)."""
    from tlops.training import loop

    def history(every: int):
        monkeypatch.setattr(loop, "loss_flush_steps", lambda device: every)
        b = load_backbone(f"hf:{tiny_bert}", max_length=32)
        return _run(b, text_dataset, epochs=2, batch_size=4).state.history

    each, every3 = history(1), history(3)
    assert -(-len(load_dataset(text_dataset).inputs("train")) // 4) % 3 != 0  # steps per epoch: the epoch end flushes a partial sum
    for a, b in zip(each, every3):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-9) and b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-6)


def test_feature_groups_leave_out_what_the_features_never_use(tiny_bert):
    from tlops.training.feature_groups import FeatureGroups

    b = load_backbone(f"hf:{tiny_bert}", max_length=32)
    groups = b.parameter_groups()
    fg = FeatureGroups(b, ["a dog", "a red car"])
    pooler = {id(p) for p in b.model.pooler.parameters()}
    assert len(fg.parameter_groups()) == len(groups) - 1  # the contract's groups, less the pooler
    assert not any(id(p) in pooler for g in fg.parameter_groups() for p in g)
    assert not any(p.requires_grad for p in b.model.pooler.parameters())  # frozen: no optimizer slot
    fg.fine_tuned = True  # attributes set on it are the backbone's
    assert b.fine_tuned and fg.model is b.model
    last = load_backbone(f"hf:{tiny_bert}", max_length=32, layers=[1])  # hidden state 1: only layer 0 feeds it
    assert len(FeatureGroups(last, ["a dog", "a red car"]).parameter_groups()) == 2  # embeddings + layer 0


def test_gradual_unfreezing_adds_one_group_per_epoch(tiny_bert, text_dataset):
    b = load_backbone(f"hf:{tiny_bert}", max_length=32)
    emb = [p.detach().clone() for p in b.parameter_groups()[0]]
    r = _run(b, text_dataset, trainable=0, unfreeze_every=1, epochs=3).state
    assert [h["trainable_groups"] for h in r.history] == [0, 1, 2]
    assert all(torch.equal(p, q) for p, q in zip(b.parameter_groups()[0], emb))  # never unfrozen


def test_early_stopping_stops_when_validation_stops_improving(tiny_bert, text_dataset):
    b = load_backbone(f"hf:{tiny_bert}", max_length=32)
    r = _run(b, text_dataset, head_lr=1e-12, backbone_lr=1e-12, epochs=6, patience=2)
    assert r.stopped_early and len(r.state.history) == 3 and r.state.best_epoch == 0


def test_l2sp_keeps_weights_closer_to_pretrained(tiny_bert, text_dataset):
    dist = {}
    for weight in (0.0, 50.0):
        b = load_backbone(f"hf:{tiny_bert}", max_length=32)
        start = [p.detach().clone() for g in b.parameter_groups() for p in g]
        _run(b, text_dataset, l2sp=weight, weight_decay=0.0, backbone_lr=3e-3, epochs=2)
        dist[weight] = sum(float(((p.detach() - q) ** 2).sum()) for p, q in zip((p for g in b.parameter_groups() for p in g), start))
    assert 0 < dist[50.0] < 0.8 * dist[0.0], dist


def test_gradient_accumulation_takes_fewer_optimizer_steps(tmp_path, tiny_bert, text_dataset):
    b = load_backbone(f"hf:{tiny_bert}", max_length=32)
    _run(b, text_dataset, tmp_path / "a", epochs=1, grad_accum_steps=2, max_grad_norm=None, schedule="linear")
    ckpt, _ = latest_checkpoint(tmp_path / "a")
    assert ckpt.meta["state"]["global_step"] == 3  # 42 rows / 8 = 6 batches -> 3 steps
    assert ckpt.state()["scheduler"]["last_epoch"] == 3


@pytest.mark.parametrize("norm_stats", ["frozen", "train"])
def test_batchnorm_running_statistics_frozen_by_default(tmp_path, norm_stats):
    from tests.helpers import make_image_dataset

    data = make_image_dataset(tmp_path / "img", per_split=(4, 2, 1))
    b = load_backbone("packaged:efficientnet-lite0", image_size=32)
    bn = b.model._bn0
    before, stem = bn.running_mean.clone(), b.model._conv_stem.weight.detach().clone()
    _fit(b, data, ProbeHead(b.num_features, 3), FinetuneConfig(**finetune_strategy(epochs=1, norm_stats=norm_stats, backbone_lr=1e-3)))
    assert torch.equal(bn.running_mean, before) == (norm_stats == "frozen")
    assert not torch.equal(b.model._conv_stem.weight, stem)  # the weights train either way


def test_finetune_head_scaler_floors_near_constant_dimensions():
    from tlops.training.probe import finetune_scaler

    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    x[:, 2] = 0.0  # a channel the pretrained CNN never fires
    mean, std = finetune_scaler(x)
    assert float(std[2]) == pytest.approx(0.1 * float(torch.from_numpy(x.std(0)).median()) + 1e-6) and torch.allclose(std[[0, 1, 3]], torch.from_numpy(x.std(0)[[0, 1, 3]]))


@pytest.mark.parametrize("kind", ["vit", "wav2vec2"])
def test_hf_image_and_audio_fine_tuned_export_round_trips(tmp_path, kind):
    from tlops.config import RunConfig
    from tlops.package import Predictor
    from tlops.pipeline import run_core

    if kind == "vit":
        from tests.helpers import make_image_dataset as make_data
        from tests.helpers import make_tiny_vit as make_model
    else:
        from tests.helpers import make_audio_dataset as make_data
        from tests.helpers import make_tiny_wav2vec2 as make_model
    data, model = make_data(tmp_path / "data"), make_model(tmp_path / kind)
    cfg = RunConfig.model_validate(tiny_config(tmp_path, data, model, strategy=finetune_strategy(epochs=1), backbone__clip_seconds=0.5))
    out = run_core(cfg, tmp_path / "work")
    pkg = Path(out.package)
    # every pretrained tensor is in the export (AutoModel may add an unused pooler the fixture lacks)
    assert load_file(str(model / "model.safetensors")).keys() <= load_file(str(pkg / "backbone" / "model.safetensors")).keys()
    ds = load_dataset(data)
    pred = Predictor(pkg).predict(ds.inputs("test"))
    assert np.mean(np.array(pred) == ds.splits["test"]["label"].to_numpy()) == pytest.approx(out.evaluation.metrics["accuracy"])
