"""Live progress: what a person at a terminal sees during `tlops run`, and what CI logs and `--json` get.

The backbone is the tiny random-weight fixture (code path only)."""

from __future__ import annotations

import io

from rich.console import Console

from tlops.progress import Display, LoopProgress, use
from tlops.training.loop import LoopState


def test_off_a_terminal_only_plain_epoch_lines_are_written():
    """CI logs: no bars or cursor codes, one readable line per epoch (1-based), the best one marked."""
    out = io.StringIO()
    with use(Display(Console(file=out, force_terminal=False, width=200))) as display:
        cb, state = LoopProgress(display), LoopState()
        for epoch, f1 in enumerate([0.5, 0.4]):
            state.epoch = epoch
            cb.on_epoch_begin(state, batches=3, epochs=2)
            for b in range(3):
                state.batch, state.epoch_seen, state.epoch_losses = b + 1, 4 * (b + 1), {"task": 2.0 * (b + 1)}
                cb.on_step_end(state)
            if epoch == 0:
                state.best_epoch = 0
            cb.on_epoch_end(state, {"epoch": epoch, "train_loss": 0.5, "val_macro_f1": f1, "lr_head": 1e-3, "epoch_train_seconds": 1.25})
        cb.on_fit_end(state)
    text = out.getvalue()
    assert "\x1b[" not in text and "\r" not in text, repr(text)
    lines = text.splitlines()
    assert lines == ["epoch 1/2  train_loss 0.5000  val_macro_f1 0.5000  1.2 s  best so far",
                     "epoch 2/2  train_loss 0.5000  val_macro_f1 0.4000  1.2 s"], lines
