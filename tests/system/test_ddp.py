"""DDP fine-tuning: the train step under torchrun (torch.distributed.run) with 2 gloo processes on the CPU.

One in-process run is the reference. A 2-process run is stopped by the loop's fault injection right after
its first epoch's checkpoint (every rank raises at optimizer step 4); the failure comes back as one error
naming torchrun's exit code, the rank and its last lines. The same 2-process command then resumes from that
checkpoint and must end where the uninterrupted single process ends:

- tolerance 1e-5 (absolute) on every loss and on every trained weight: both runs see the same global
  batches in the same order (each rank takes every 2nd row of a batch, the loss weighted so DDP's gradient
  mean is the global batch's gradient; batches of 13 and 1 rows split 7/6 and 1/0, so the uneven and the
  empty share are both exercised); what differs is float rounding (per-rank padding widths change the
  matmul shapes, the gradient all-reduce adds in another order): measured max differences ~2e-7 on the
  weights and ~1e-7 on the losses, so 1e-5 leaves 50x room, while the naive weighting (each rank's mean
  loss, averaged by DDP) moved epoch 1's train loss by 0.043 (checked once by breaking `rank_weight`);
- validation macro-F1 and accuracy per epoch exactly equal, and the same test predictions (so the same test
  metrics): a flipped prediction would need two logits within ~1e-7 of each other.

Dropout is off in this backbone: with it, each rank draws masks for its own rows, so a DDP run matches one
process in distribution but not to 1e-5. The tiny BERT has random weights (a code-path fixture).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import make_text_dataset, tiny_config
from tlops.checkpoint import latest_checkpoint
from tlops.config import config_from_dict
from tlops.errors import ConfigError
from tlops.package import result_predictions
from tlops.pipeline import features_step, train_step
from tlops.resolve import open_dataset
from tlops.training.callbacks import RAISE_ENV
from tlops.training.ddp_launch import DistributedTrainingFailed, torchrun_command, train_step_distributed

TOL = 1e-5
STEPS_PER_EPOCH = 3  # 27 training rows (9 per class), batch_size 13: batches of 13, 13, 1 rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_bert):
    tmp = tmp_path_factory.mktemp("ddp")
    bert = tmp / "bert"
    shutil.copytree(tiny_bert, bert)
    conf = json.loads((bert / "config.json").read_text())
    conf.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (bert / "config.json").write_text(json.dumps(conf))
    data = make_text_dataset(tmp / "data", n_train=9, n_val=3, n_test=4)

    def cfg(name: str, **over):
        strategy = {"name": "finetune", "epochs": 2, "batch_size": 13, "head_lr": 1e-2, "backbone_lr": 1e-3, "warmup_ratio": 0.0,
                    "device": "cpu"}
        return config_from_dict(tiny_config(tmp, data, bert, strategy=strategy, execution__work_dir=str(tmp / name), **over))

    return tmp, cfg, features_step(cfg("one"), tmp / "features")


def _weights(result) -> dict[str, dict]:
    pkg = Path(result.package)
    return {f: load_file(str(pkg / f)) for f in ("backbone/model.safetensors", "head.safetensors")}


def test_two_gloo_processes_match_one_and_resume_after_a_failed_rank(setup, monkeypatch):
    tmp, cfg, feats = setup
    one = train_step(cfg("one"), feats, tmp / "one" / "train")
    two_cfg = cfg("two", execution__nproc_per_node=2)

    monkeypatch.setenv(RAISE_ENV, str(STEPS_PER_EPOCH + 1))  # first step of epoch 2, after epoch 1's checkpoint
    with pytest.raises(DistributedTrainingFailed) as failed:
        train_step_distributed(two_cfg, feats, tmp / "two" / "train")
    msg = str(failed.value)
    assert "torchrun exited with code 1" in msg and "first failure: rank" in msg, msg
    assert f"injected failure after optimizer step {STEPS_PER_EPOCH + 1}" in msg, msg  # the rank's own last lines
    ckpts = list((tmp / "two" / "checkpoints").iterdir())
    assert len(ckpts) == 1, ckpts
    ckpt, _ = latest_checkpoint(ckpts[0])
    assert ckpt is not None and ckpt.meta["state"]["epoch"] == 1, "rank 0 wrote epoch 1's checkpoint before the failure"
    assert len(ckpt.state()["rng_ranks"]) == 2, "each rank's RNG is checkpointed"

    monkeypatch.delenv(RAISE_ENV)
    two = train_step_distributed(two_cfg, feats, tmp / "two" / "train")
    assert two.loop.resumed_from == {"checkpoint": ckpt.path.name, "epoch": 1, "batch": 0, "global_step": STEPS_PER_EPOCH}
    assert not list((tmp / "two" / "train").glob(".rank*")), "other ranks' scratch folders are removed"

    assert len(one.history) == len(two.history) == 2 and one.loop.best_epoch == two.loop.best_epoch
    for r1, r2 in zip(one.history, two.history):
        for k in ("train_loss", "val_loss"):
            assert abs(r1[k] - r2[k]) <= TOL, (r1["epoch"], k, r1[k], r2[k])
        for k in ("val_macro_f1", "val_accuracy"):
            assert r1[k] == r2[k], (r1["epoch"], k, r1[k], r2[k])
    w1, w2 = _weights(one), _weights(two)
    for f in w1:
        diff = max(float((w1[f][k] - w2[f][k]).abs().max()) for k in w1[f])
        assert diff <= TOL, (f, diff)

    def test_inputs():
        return open_dataset(two_cfg).inputs("test")

    p1, p2 = result_predictions(one, feats, test_inputs), result_predictions(two, feats, test_inputs)
    assert p1 == p2, "the same test predictions, so the same test metrics"


def test_ddp_settings_are_checked_before_anything_starts(setup):
    tmp, cfg, _ = setup
    with pytest.raises(ConfigError, match="nnodes > 1 needs the rendezvous address"):
        cfg("x", execution__nnodes=2)
    with pytest.raises(ConfigError, match="host:port"):
        cfg("x", execution__nnodes=2, execution__rdzv_endpoint="10.0.0.5")
    with pytest.raises(ConfigError, match="strategy 'linear_probe' trains in one process"):  # at config time, before any step
        config_from_dict({**tiny_config(tmp, tmp / "data", tmp / "bert"), "execution": {"nproc_per_node": 2}})
    several = cfg("x", execution__nnodes=2, execution__nproc_per_node=4, execution__rdzv_endpoint="10.0.0.5:29400")
    cmd = torchrun_command(several.execution, Path("/shared/step_input.json"), Path("/shared/logs"))
    assert cmd[cmd.index("--nnodes") + 1] == "2" and cmd[cmd.index("--nproc-per-node") + 1] == "4"
    assert cmd[cmd.index("--rdzv-endpoint") + 1] == "10.0.0.5:29400" and "--standalone" not in cmd
    assert cmd[-3:] == ["-m", "tlops.training.ddp_main", "/shared/step_input.json"]
