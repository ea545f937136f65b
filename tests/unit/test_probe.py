import numpy as np
import pytest
import torch

from tlops.promotion import decide
from tlops.strategies.linear_probe import LinearProbeConfig
from tlops.task_types import train_probe
from tlops.training.probe import size_curve


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
    assert acc > 0.9 and res.val_metrics["macro_f1"] > 0.9


def test_mlp_keeps_best_epoch_and_is_seeded():
    x, y = _blobs()
    xv, yv = _blobs(seed=1)
    cfg = LinearProbeConfig(head="mlp", epochs=8)
    a = train_probe(x, y, xv, yv, 3, cfg, seed=5)
    b = train_probe(x, y, xv, yv, 3, cfg, seed=5)
    assert a.val_metrics["macro_f1"] == max(h["val_macro_f1"] for h in a.history)
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


def test_closed_form_heads_get_a_learning_curve_over_training_rows(tmp_path):
    """logreg and ridge have no epochs: their curve is the val metric when refitted on growing train subsets."""
    from PIL import Image

    from tlops.evaluate import curves_png

    x, y = _blobs(n=200)
    xv, yv = _blobs(n=60, seed=1)
    res = train_probe(x, y, xv, yv, 3, LinearProbeConfig(head="logreg"), seed=0)
    rows = [p["train_rows"] for p in res.size_curve]
    assert rows == sorted(rows) and rows[-1] == 200 and len(rows) == 4, res.size_curve
    assert res.size_curve[-1]["val_macro_f1"] == res.val_metrics["macro_f1"]
    seen = []  # the rows each refit gets: seeded, growing, every class in each (unbalanced classes too)
    labels = np.array([0] * 150 + [1] * 45 + [2] * 5)
    curve = size_curve(lambda rows: seen.append(rows) or len(rows), labels, seed=0, metric="m", full=-1.0, classes=True)
    assert [len(r) for r in seen] == [p["m"] for p in curve[:-1]] == [15 + 5 + 1, 38 + 12 + 2, 75 + 23 + 3]
    assert all(set(labels[r]) == {0, 1, 2} and set(seen[0]) <= set(r) for r in seen), "nested, stratified subsets"
    assert curve[-1] == {"train_rows": 200, "m": -1.0}
    target = x[:, 0] * 2.0 + 1.0
    ridge = train_probe(x, target, xv, xv[:, 0] * 2.0 + 1.0, 0, LinearProbeConfig(head="ridge"), seed=0, task="regression")
    assert [p["train_rows"] for p in ridge.size_curve] == [20, 50, 100, 200]
    assert ridge.size_curve[-1]["val_mae"] == ridge.val_metrics["mae"]
    assert train_probe(x, y, xv, yv, 3, LinearProbeConfig(head="mlp", epochs=2), seed=0).size_curve == []  # it has epochs

    png = curves_png(res.history, tmp_path / "size.png", res.size_curve, "val_macro_f1")
    assert png is not None and Image.open(png).size[0] == 500  # one panel: metric vs training rows
    one_epoch = curves_png([{"epoch": 0, "train_loss": 0.7, "val_macro_f1": 0.6}], tmp_path / "one.png", [], "val_macro_f1")
    assert one_epoch is not None and Image.open(one_epoch).size[0] == 1000  # a 1-epoch run still shows its point
    assert curves_png([], tmp_path / "none.png", [], "val_macro_f1") is None


def test_mlp_probe_survives_a_channel_dead_in_train_that_fires_at_test():
    """6 of EfficientNet-Lite0's channels are constant (0) on the image demo's train split and 2 fire on test; divided
    by their ~0 train std they reach |z| ~ 1e6, and an MLP (whose first-layer weights for them never train away
    from their init) then predicted chance (0.335 here); flooring the std as fine-tuning does still gave 0.715.
    A dimension constant on train carries nothing, so the probes ignore it."""
    rng = np.random.default_rng(0)

    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, n)
        x = rng.normal(0, 1, (n, 16)).astype(np.float32)
        x[np.arange(n), 1 + y] += 4.0  # class signal in dims 1..3
        x[:, 0] = 0.0  # dead on train
        return x, y

    (x, y), (xv, yv), (xt, yt) = rows(300), rows(60), rows(200)
    xt[:, 0] = 1.0  # fires at test, at a live channel's scale
    cfg = LinearProbeConfig(head="mlp", hidden=32, epochs=20, lr=1e-2)
    head = train_probe(x, y, xv, yv, 3, cfg, seed=0).head
    head.eval()
    with torch.no_grad():
        acc = float((head(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())
    assert acc > 0.9, acc
