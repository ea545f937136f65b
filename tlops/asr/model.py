"""The CTC transcriber: a backbone's frame features (`Backbone.frame_states`) -> a per-frame head -> characters.

Adapter (`FrameAdapter`): the frames standardised (train's mean and std), then with `strategy.head: mlp` a one-layer
bidirectional GRU of `hidden` units per direction over the clip's frames (the recurrent adapter: each frame's output sees
the whole clip), with `logreg` nothing more (a linear CTC head on each frame alone). The adapter's weights travel in the
package as `asr/adapter.safetensors`.

Slots: a frame of `frame_hop` seconds emits `k = ceil(frame_hop * SLOTS_PER_SECOND)` CTC symbols (speech_embedding's
80 ms frames: 4; wav2vec2's 20 ms frames: 1), so the head is a `ProbeHead` with `k * (1 + len(alphabet))` outputs on the adapter's output whose
output row is read as k consecutive slots: at least 50 symbols a second whatever the backbone. Frames are centred
(`centre_frames`): speech_embedding puts 0.4 s (5 frames) of silence before each clip, so its first word is heard in the
middle of some 775 ms windows and not only at their left edge. A clip's frames are the ones that start inside its lead
and audio (`ceil((lead + seconds) / frame_hop)`, at most what the padded clip gives); the rest is padding.

Training (frozen backbone, `train_head`): frame features of every clip computed once; the head (standardised input,
linear or MLP) trained with `torch.nn.CTCLoss` (blank 0, `zero_infinity`) by AdamW; after every epoch the greedy WER on
val, the epoch with the lowest kept. Then `select_decoder` picks on val, by WER, among greedy decoding and the beam search
with and without the train transcripts' word LM, and with the LM's words as a closed lexicon (`tlops.asr.decode`); the
choice and the LM go into the package.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tlops.asr.text import SLOTS_PER_SECOND


def slots_per_frame(backbone) -> int:
    return max(1, math.ceil(float(backbone.frame_hop) * SLOTS_PER_SECOND - 1e-9))


def centre_frames(backbone) -> float:
    """Give a backbone that can put silence before each clip (`lead_seconds`: speech_embedding) whole frames of it, so
    that the clip's first sounds fall in the middle of some frames' windows, as a centred STFT pads: ceil((window - hop)
    / 2 / hop) frames (speech_embedding's 775 ms windows, 80 ms hop: 5 frames, 0.4 s). Without it the first word is seen
    only at the left edge of the windows, and most errors on the demo were first words (bench/RESULTS.md, part 3).
    wav2vec2/HuBERT folders (25 ms windows) get none. Returns the lead in seconds."""
    if not hasattr(backbone, "lead_seconds"):
        return 0.0
    hop, window = float(backbone.frame_hop), float(backbone.frame_window)
    backbone.lead_seconds = round(math.ceil((window - hop) / 2 / hop - 1e-9) * hop, 6)
    return backbone.lead_seconds


def lead_of(backbone) -> float:
    """Seconds of silence the backbone puts before each clip (0: none)."""
    return float(getattr(backbone, "lead_seconds", 0.0) or 0.0)


def clip_frames(backbone, paths: Sequence[str], seconds: Sequence[float], batch_size: int = 16,
                progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Per clip, its frames' features (frames, D) float32: `frame_states` of the collated batch, cut to the frames that
    start inside the audio (and its lead of silence, `lead_of`)."""
    import torch

    hop, lead = float(backbone.frame_hop), lead_of(backbone)
    out: list[np.ndarray] = []
    backbone.model.eval()
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            states = backbone.frame_states(backbone.collate(list(paths[i:i + batch_size]))).numpy()
            for j, s in enumerate(seconds[i:i + batch_size]):
                n = max(1, min(states.shape[1], math.ceil((float(s) + lead) / hop)))
                out.append(np.ascontiguousarray(states[j, :n], dtype=np.float32))
            if progress:
                progress(min(i + batch_size, len(paths)), len(paths))
    return out


def _adapter_class():
    import torch
    from torch import nn

    class FrameAdapter(nn.Module):
        """(B, T, D) frames and their lengths -> (B, T, out_dim): standardised, then a bidirectional GRU (kind "bigru")
        or nothing more (kind "none")."""

        def __init__(self, in_dim: int, kind: str = "bigru", hidden: int = 256):
            super().__init__()
            self.spec = {"in_dim": int(in_dim), "kind": kind, "hidden": int(hidden)}
            self.register_buffer("mean", torch.zeros(in_dim))
            self.register_buffer("std", torch.ones(in_dim))
            self.rnn = nn.GRU(in_dim, hidden, batch_first=True, bidirectional=True) if kind == "bigru" else None
            self.out_dim = 2 * hidden if kind == "bigru" else in_dim

        def forward(self, x, lengths, keep=None):
            x = (x - self.mean) / self.std
            if keep is not None:  # training's masks (tlops.asr.training.Masking): masked values at the train mean
                x = x * keep
            if self.rnn is None:
                return x
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = self.rnn(packed)
            return nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])[0]

    return FrameAdapter


def make_adapter(spec: dict):
    return _adapter_class()(spec["in_dim"], spec["kind"], spec["hidden"])


def slot_log_probs(adapter, head, frames, lengths, k: int, n_symbols: int):
    """(B, T, D) frames -> (B, T * k, n_symbols) log-probabilities (torch)."""
    import torch

    out = head(adapter(frames, lengths))  # (B, T, k * V)
    b, t, _ = out.shape
    return torch.log_softmax(out.reshape(b, t * k, n_symbols), dim=-1)


def _pad(batch: list[np.ndarray]):
    import torch

    t = max(len(x) for x in batch)
    d = batch[0].shape[1]
    x = np.zeros((len(batch), t, d), np.float32)
    for i, f in enumerate(batch):
        x[i, :len(f)] = f
    return torch.from_numpy(x), torch.tensor([len(f) for f in batch], dtype=torch.long)


def log_probs_of(adapter, head, frames: list[np.ndarray], k: int, n_symbols: int, batch_size: int = 64) -> list[np.ndarray]:
    """Per clip its (slots, n_symbols) log-probabilities as numpy."""
    import torch

    head.eval()
    adapter.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), batch_size):
            x, n = _pad(frames[i:i + batch_size])
            lp = slot_log_probs(adapter, head, x, n, k, n_symbols).numpy()
            out += [lp[j, :int(n[j]) * k] for j in range(len(n))]
    return out


@dataclass
class HeadSettings:
    adapter: str = "bigru"  # "bigru" | "none"
    hidden: int = 256
    dropout: float = 0.1
    epochs: int = 60
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    seed: int = 0
    time_masks: int = 0  # SpecAugment-style masks while training (tlops.asr.training.Masking)
    time_width: int = 2
    feature_masks: int = 0
    feature_width: int = 8
    device: str = "auto"

    def masking(self):
        from tlops.asr.training import Masking

        return Masking(self.time_masks, self.time_width, self.feature_masks, self.feature_width)


@dataclass
class Trained:
    adapter: object
    head: object
    k: int
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    val_wer: float = math.nan
    val_cer: float = math.nan
    seconds: float = 0.0
    loop: object = None  # the shared loop's result (`tlops.training.loop.LoopResult`)


def new_head(train_frames: list[np.ndarray], alphabet: Sequence[str], k: int, adapter: str, hidden: int, dropout: float,
             seed: int):
    """A fresh `CTCHead` whose adapter standardises with the train frames' mean and std (floored at 1e-6)."""
    import torch

    from tlops.asr.training import CTCHead
    from tlops.modules.heads import ProbeHead

    torch.manual_seed(seed)
    v = len(alphabet) + 1
    a = make_adapter({"in_dim": int(train_frames[0].shape[1]), "kind": adapter, "hidden": int(hidden)})
    allf = np.concatenate(train_frames)
    with torch.no_grad():
        a.mean.copy_(torch.from_numpy(allf.mean(0)))
        a.std.copy_(torch.from_numpy(allf.std(0)).clamp(min=1e-6))
    return CTCHead(a, ProbeHead(a.out_dim, k * v, kind="linear"), k, v, dropout)  # the head's own scaler: identity


def trained_of(head, r, seconds: float) -> Trained:
    """The loop's outcome as a `Trained` (adapter, linear head, k, epoch rows, best epoch and its val rates)."""
    rows = r.state.history
    best = rows[r.state.best_epoch] if rows else {"val_wer": math.nan, "val_cer": math.nan}
    return Trained(head.adapter.eval(), head.head.eval(), head.k, list(rows), r.state.best_epoch, float(best["val_wer"]),
                   float(best["val_cer"]), seconds, loop=r)


def _line(row: dict) -> str:
    return f"{row['epoch']}: loss {row['train_loss']:.3f} val WER {row['val_wer']:.3f} CER {row['val_cer']:.3f}"


def train_head(train_frames: list[np.ndarray], train_texts: Sequence[str], val_frames: list[np.ndarray], val_texts: Sequence[str],
               alphabet: list[str], k: int, s: HeadSettings, log: Callable[[str], None] | None = None,
               checkpoint_dir=None, callbacks: Sequence = ()) -> Trained:
    """A CTC head on frozen frame features (see the module's docstring) trained on the shared loop
    (`tlops.asr.training`): AdamW at `lr`, constant LR; the epoch with the lowest val greedy WER kept; checkpoints in
    `checkpoint_dir` (a rerun resumes there)."""
    from tlops.asr.training import CachedFrames, ClipData, FrameNet, fit_ctc, probe_options

    t0 = time.perf_counter()
    masking = s.masking()
    head = new_head(train_frames, alphabet, k, s.adapter, s.hidden, s.dropout, s.seed)
    d = train_frames[0].shape[1]
    train = ClipData(train_texts, alphabet, [len(f) for f in train_frames], d, frames=train_frames, masking=masking)
    val = ClipData(val_texts, alphabet, [len(f) for f in val_frames], d, frames=val_frames)
    opts = probe_options(s.epochs, s.batch_size, s.lr, s.weight_decay, augment=masking.on, device=s.device)
    r = fit_ctc(FrameNet(CachedFrames(), head), train, val, alphabet, k, opts, seed=s.seed, checkpoint_dir=checkpoint_dir,
                callbacks=callbacks, log=(lambda row: log(_line(row))) if log else None)
    return trained_of(head, r, time.perf_counter() - t0)


# decoders tried on val (select_decoder): greedy, the beam without LM, with the train transcripts' word LM at a few
# weights, and with the LM's words as a closed lexicon
DECODERS = [{"kind": "greedy"}, {"kind": "beam", "beam": 12, "alpha": 0.0, "beta": 0.0}] + [
    {"kind": "beam", "beam": 12, "alpha": a, "beta": b} for a, b in ((0.3, 1.0), (0.3, 2.5), (0.7, 2.5))] + [
    {"kind": "beam", "beam": 12, "alpha": a, "beta": b, "lexicon": True} for a, b in ((0.0, 0.0), (0.3, 1.0), (0.7, 2.5))]


def select_decoder(val_log_probs: list[np.ndarray], val_texts: Sequence[str], alphabet: list[str], lm) -> tuple[dict, list[dict]]:
    """(the decoder with the lowest val WER (ties: the earlier, simpler one), every decoder's val WER/CER)."""
    from tlops.asr.decode import decode
    from tlops.asr.metrics import error_rates

    rows = []
    for how in DECODERS:
        hyp = [decode(p, alphabet, how, lm) for p in val_log_probs]
        rows.append({**how, **error_rates(list(val_texts), hyp)})
    best = min(range(len(rows)), key=lambda i: (rows[i]["wer"], rows[i]["cer"], i))
    return dict(DECODERS[best]), rows


def chosen_row(decoder: dict, tried: list[dict]) -> dict:
    """The val scores (`select_decoder`'s rows) of the chosen decoder: the row whose settings are exactly it."""
    return next(r for r in tried if {k: v for k, v in r.items() if k not in ("wer", "cer")} == decoder)


class Transcriber:
    """A backbone with frame features, a trained head, the alphabet and the chosen decoder: audio paths -> transcripts."""

    def __init__(self, backbone, adapter, head, alphabet: list[str], k: int, decoder: dict, lm=None, batch_size: int = 16):
        self.backbone, self.adapter, self.head, self.alphabet, self.k = backbone, adapter, head, list(alphabet), int(k)
        self.decoder, self.lm, self.batch_size = decoder, lm, batch_size

    def log_probs(self, paths: Sequence[str]) -> list[np.ndarray]:
        from tlops.asr.files import audio_seconds
        from tlops.errors import DataError

        seconds = []
        for p in paths:
            try:
                seconds.append(audio_seconds(p))
            except Exception as e:
                raise DataError(f"audio {p} could not be read ({str(e)[:80]}); give a WAV/FLAC/OGG file path") from None
        clip = float(self.backbone.clip_seconds)
        longest = max(seconds, default=0.0) + lead_of(self.backbone)
        if longest > clip:  # a longer clip than training's: padded to the longest of the call instead of cut
            self.backbone.clip_seconds = math.ceil(longest + float(self.backbone.frame_window))
        try:
            frames = clip_frames(self.backbone, list(paths), seconds, self.batch_size)
        finally:
            self.backbone.clip_seconds = clip
        return log_probs_of(self.adapter, self.head, frames, self.k, len(self.alphabet) + 1)

    def transcribe(self, paths: Sequence[str], timings: bool = False) -> list:
        """Per clip its transcript; with `timings`, {"text", "words": [{"word", "start", "end"} in seconds]} from the CTC
        alignment of that transcript (`tlops.asr.decode.word_timings`), a slot's time being the centre of its frame's
        window (the pyfunc param `timings`, `tlops predict --timings`)."""
        from tlops.asr.decode import decode, word_timings

        out = []
        for lp in self.log_probs(paths):
            text = decode(lp, self.alphabet, self.decoder, self.lm)
            if timings:  # slot times moved to the centre of the frames' windows (speech_embedding: +0.35 s), less the lead
                hop = float(self.backbone.frame_hop)
                shift = max(0.0, (float(self.backbone.frame_window) - hop) / 2) - lead_of(self.backbone)
                words = word_timings(lp, text, self.alphabet, hop / self.k)
                text = {"text": text, "words": [{**w, "start": round(max(0.0, w["start"] + shift), 3),
                                                 "end": round(max(0.0, w["end"] + shift), 3)} for w in words]}
            out.append(text)
        return out


@dataclass
class FinetuneSettings(HeadSettings):
    trainable: str | int = "all"  # backbone groups that train: "all" or the top N
    backbone_lr: float = 5e-5
    max_grad_norm: float | None = 1.0

    def loop_options(self):
        """The loop's options these settings stand for: AdamW (`backbone_lr` for the top groups, `lr` for adapter and
        head), constant LR, gradients clipped at `max_grad_norm`, BatchNorm statistics kept, no early stop."""
        from tlops.training.loop import LoopOptions

        return LoopOptions(epochs=self.epochs, batch_size=self.batch_size, head_lr=self.lr, backbone_lr=self.backbone_lr,
                           weight_decay=self.weight_decay, schedule="constant", warmup_ratio=0.0, max_grad_norm=self.max_grad_norm,
                           patience=self.epochs, trainable=self.trainable, bucket_by_length=False, augment=self.masking().on,
                           norm_stats="frozen", device=self.device, resume=False)


def finetune_ctc(backbone, train: tuple, val: tuple, alphabet: list[str], k: int, s: FinetuneSettings,
                 log: Callable[[str], None] | None = None, init: Trained | None = None, opts=None, checkpoint_dir=None,
                 callbacks: Sequence = ()) -> Trained:
    """The backbone's top `trainable` groups, the adapter and the CTC head trained together with CTCLoss on the shared
    loop (`opts`: the loop's options, a run's `FinetuneConfig`; None: `s.loop_options()`; `opts.l2sp` adds L2-SP).
    `train` and `val`: (paths, seconds, texts). The adapter's standardisation comes from the pretrained frames; the
    epoch with the lowest val greedy WER is kept (its backbone weights too). Each clip is decoded and preprocessed once
    (`collate`). `init`: start from a trained probe's adapter and head (LP-FT) instead of new ones."""
    import copy

    from tlops.asr.training import CTCHead, ClipData, FrameNet, fit_ctc

    t0 = time.perf_counter()
    hop, v = float(backbone.frame_hop), len(alphabet) + 1
    opts = opts if opts is not None else s.loop_options()
    (tp, ts, tt), (vp, vs, vt) = train, val
    frozen = clip_frames(backbone, tp, ts)
    if init is not None:
        head = CTCHead(copy.deepcopy(init.adapter), copy.deepcopy(init.head), k, v, s.dropout)
    else:
        head = new_head(frozen, alphabet, k, s.adapter, s.hidden, s.dropout, s.seed)
    d = frozen[0].shape[1]
    del frozen
    lead = lead_of(backbone)
    frames_of = (lambda seconds: [max(1, math.ceil((float(x) + lead) / hop)) for x in seconds])
    train_data = ClipData(tt, alphabet, frames_of(ts), d, backbone=backbone, paths=tp, masking=s.masking())
    val_data = ClipData(vt, alphabet, frames_of(vs), d, backbone=backbone, paths=vp)
    r = fit_ctc(FrameNet(backbone, head), train_data, val_data, alphabet, k, opts, seed=s.seed, checkpoint_dir=checkpoint_dir,
                callbacks=callbacks, log=(lambda row: log(_line(row))) if log else None, l2sp=float(getattr(opts, "l2sp", 0.0)))
    for p in backbone.model.parameters():
        p.requires_grad_(True)
    backbone.model.eval()
    backbone.fine_tuned = opts.trainable == "all" or int(opts.trainable) > 0 or bool(getattr(opts, "unfreeze_every", 0))
    return trained_of(head, r, time.perf_counter() - t0)
