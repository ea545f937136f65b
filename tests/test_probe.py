import numpy as np
import pytest
import torch

from tlops.promotion import decide
from tlops.strategies.linear_probe import LinearProbeConfig
from tlops.training.probe import train_probe


def _blobs(n=60, d=16, k=3, seed=0):
    centers = np.random.default_rng(123).normal(0, 4, (k, d))  # same classes in every split
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_heads_learn_separable_features(head):
    x, y = _blobs()
    xv, yv = _blobs(seed=1)
    res = train_probe(x, y, xv, yv, 3, LinearProbeConfig(head=head, epochs=30), seed=0)
    with torch.inference_mode():
        acc = (res.head(torch.from_numpy(xv)).argmax(1).numpy() == yv).mean()
    assert acc > 0.9 and res.val_macro_f1 > 0.9


def test_mlp_keeps_best_epoch_and_is_seeded():
    x, y = _blobs()
    xv, yv = _blobs(seed=1)
    cfg = LinearProbeConfig(head="mlp", epochs=8)
    a = train_probe(x, y, xv, yv, 3, cfg, seed=5)
    b = train_probe(x, y, xv, yv, 3, cfg, seed=5)
    assert a.val_macro_f1 == max(h["val_macro_f1"] for h in a.history)
    for (ka, va), (kb, vb) in zip(a.head.state_dict().items(), b.head.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_logreg_head_covers_classes_absent_from_train():
    x, y = _blobs(k=3)
    res = train_probe(x, y, x, y, 5, LinearProbeConfig(), seed=0)  # labels 3, 4 never seen
    with torch.inference_mode():
        pred = res.head(torch.from_numpy(x)).argmax(1).numpy()
    assert set(pred) <= {0, 1, 2}


def test_promotion_gate():
    first = decide("macro_f1", 0.5, None, 0.0)
    assert first.promote and "no champion" in first.reason
    assert decide("macro_f1", 0.81, 0.80, 0.0).promote
    fail = decide("macro_f1", 0.81, 0.80, 0.02)
    assert not fail.promote and "champion unchanged" in fail.reason
    assert not decide("macro_f1", 0.80, 0.80, 0.0).promote  # a tie keeps the champion
