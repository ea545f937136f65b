"""Live progress for a person watching a run: a bar per feature split (named), and for the training loop
(fine-tuning, domain adaptation, meta-training) an overall bar and a step bar with running loss, samples/s
and ETA, plus one line per finished epoch with its validation result.

Progress is a presentation concern: the core reports to whatever `Display` a front end installed with
`use()` (the CLI does), and shows nothing otherwise. Bars are drawn only on a terminal; on a plain stream
(CI logs) only the per-split and per-epoch lines are written, and never to stdout (`--json` stays pure).
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tlops.training.callbacks import Callback

_display: Display | None = None
# Row keys that are bookkeeping, not results: kept out of the epoch line (they still reach MLflow).
_NOT_SHOWN = ("epoch", "lr_head", "lr_backbone_top", "trainable_groups", "epoch_train_seconds")


class Display:
    """Where progress goes: one rich console (stderr for the CLI)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)

    @property
    def live(self) -> bool:
        """Bars redraw in place only on a terminal; elsewhere they would be noise."""
        return self.console.is_terminal

    def bars(self, *fields: str) -> Progress:
        """A transient rich Progress on this console: description, bar, n/total, ETA, extra text fields."""
        return Progress(TextColumn("{task.description:<14}"), BarColumn(bar_width=24), MofNCompleteColumn(), TextColumn("eta"),
                        TimeRemainingColumn(), *(TextColumn(f"{{task.fields[{f}]}}") for f in fields), console=self.console,
                        transient=True, redirect_stdout=False)

    def line(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)


def active() -> Display | None:
    return _display


@contextlib.contextmanager
def use(display: Display | None) -> Iterator[Display | None]:
    """Install `display` for this process while the block runs (None: no progress)."""
    global _display
    previous, _display = _display, display
    try:
        yield display
    finally:
        _display = previous


@contextlib.contextmanager
def item_bar(label: str, total: int) -> Iterator:
    """A bar of `total` items named `label` on the installed display; yields `advance(n)` (a no-op without a
    display or off a terminal)."""
    if _display is None or not _display.live:
        yield lambda n: None
        return
    with _display.bars() as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def note(text: str) -> None:
    """One line on the installed display (nothing without one)."""
    if _display is not None:
        _display.line(text)


def loop_callbacks() -> list[Callback]:
    """What `fit` adds to its callbacks: the installed display's loop progress, if any."""
    return [LoopProgress(_display)] if _display is not None else []


def _fmt(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"


def epoch_line(row: dict[str, float], epochs: int, best: bool, resumed: bool = False) -> str:
    """`epoch 2/5  train_loss 0.4311  val_loss 0.52  val_macro_f1 0.8123 ...  3.1 s  best` (epochs 1-based)."""
    shown = [f"{k} {_fmt(v)}" for k, v in row.items() if k not in _NOT_SHOWN and not k.startswith("train_loss_")]
    seconds = f"  {row['epoch_train_seconds']:.1f} s" if "epoch_train_seconds" in row else ""
    tail = "  [green]best so far[/green]" if best else ""
    of = f"/{epochs}" if epochs else ""
    return f"epoch {int(row['epoch']) + 1}{of}  " + "  ".join(shown) + seconds + tail + ("  (from the checkpoint resumed)" if resumed else "")


class LoopProgress(Callback):
    """The training loop on a display: bars while an epoch runs (terminal only), one line per epoch."""

    def __init__(self, display: Display):
        self.display = display
        self.bar: Progress | None = None
        self.epochs = 0  # known from the first epoch begun

    def on_epoch_begin(self, state, batches: int, epochs: int) -> None:
        self.epochs, self.batches = epochs, batches
        self.t0, self.seen0, self.batch0 = time.perf_counter(), state.epoch_seen, state.batch
        if not self.display.live:
            return
        if self.bar is None:
            self.bar = self.display.bars("info")
            self.bar.start()
            self.total = self.bar.add_task("training", total=epochs * batches, completed=state.epoch * batches + state.batch, info="")
            self.step = self.bar.add_task("", total=batches, info="")
        self.bar.reset(self.step, total=batches, completed=state.batch, description=f"epoch {state.epoch + 1}/{epochs}", info="")

    def on_step_end(self, state) -> None:
        if self.bar is None:
            return
        seen = state.epoch_seen - self.seen0
        loss = sum(state.epoch_losses.values()) / max(1, state.epoch_seen)
        rate = seen / max(1e-9, time.perf_counter() - self.t0)
        info = f"loss {loss:.4f}  {rate:.1f} samples/s"
        self.bar.update(self.step, completed=state.batch, info=info)
        self.bar.update(self.total, completed=state.epoch * self.batches + state.batch)
        if state.batch >= self.batches:
            self.bar.update(self.step, info=f"{info}  validating...")

    def on_epoch_end(self, state, row: dict[str, float]) -> None:
        resumed = self.epochs == 0  # replayed rows of a resumed run come before any epoch begins
        self.display.line(epoch_line(row, self.epochs, state.best_epoch == int(row["epoch"]), resumed))

    def on_fit_end(self, state) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
