"""Speech recognition: an audio clip -> its transcript, by a CTC head over characters on a pretrained speech backbone.

Data: dataset.yaml `modality: audio`, `task: speech_recognition` and per split a CSV `path,text` (`train.csv`, optional
`val.csv` (else a seeded 15% of train), `test.csv`), read and checked by `tlops.asr.files`: transcripts normalised by
the documented rule (`tlops.asr.text`: NFC, lower case, whitespace runs -> one space); each row's problem is a failed
check naming the file and line, the value and the fix (an empty transcript; a missing, undecodable or outside-the-folder
audio file; a val/test transcript with characters train never shows; audio too short for its transcript at CTC's 50
symbols a second). GX then checks that every split has rows.

Features: nothing is cached (feature level `frame`: the features step stores one empty row per clip). The trainer reads
each clip's frame features (`Backbone.frame_states`: speech_embedding's 80 ms steps, a wav2vec2/HuBERT folder's 20 ms
frames) once, padding every clip to `backbone.clip_seconds` or, when a clip is longer, to the longest clip plus one frame
window (no clip is ever cut), after a lead of silence that centres the frames (speech_embedding: 0.4 s, `tlops.asr.model.centre_frames`;
on the demo val WER 0.127 -> 0.003, bench/RESULTS.md).

Training runs on the shared loop (`tlops.training.loop.fit` through `tlops.asr.training`): per-epoch rows with the val
greedy WER/CER, the epoch with the lowest val WER kept (logged as `best_epoch`), a checkpoint every epoch and resume
after a crash, device and precision. `linear_probe` (`probe_trainer`, frozen backbone): a CTC head on the frames
(`tlops.asr.model`): with `strategy.head: logreg` a linear layer on each standardised frame alone; with `mlp`, a
recurrent adapter first (one bidirectional GRU layer of `hidden` units a direction over the clip's frames, `dropout` on
its output) then the linear layer; k CTC symbols per frame; trained with `torch.nn.CTCLoss` by AdamW (`lr`,
`weight_decay`, `epochs`, `batch_size`, constant LR), with SpecAugment-style masks on its input frames (`MASKING`); then the decoder (greedy, or the CTC prefix beam search with or
without a word bigram LM of the train transcripts at a few weights) is chosen on val by WER.

`finetune` (`finetune_trainer`): the backbone's top `trainable` groups, the adapter (`strategy.head`: linear -> none, mlp
-> the BiGRU) and the CTC head trained together with the run's loop settings (AdamW: `backbone_lr` for the top group,
`layer_decay` below it, `head_lr` for the rest, `weight_decay`, `schedule`/`warmup_ratio`, `epochs`, `patience`,
`batch_size`, `grad_accum_steps`, `max_grad_norm`, `unfreeze_every`, `l2sp`, `norm_stats`); each clip is preprocessed
once; then the decoder chosen on val as for the probe. With `lp_ft: true` the CTC probe is trained on the frozen frames
first (30 epochs, AdamW at max(head_lr, 2e-3)) and fine-tuning starts from it. `loss`/`huber_delta` (regression
settings) are refused.

Metrics: WER and CER (jiwer); WER on val selects and on test gates (lower is better); CER is a gate metric too. The
package: the backbone export, the head (a linear `ProbeHead` with k * (1 + alphabet) outputs), the adapter
(`asr/adapter.safetensors`), and under `speech_recognition` in
its meta the alphabet, k, the chosen decoder, the LM's n-gram counts and every decoder's val scores. Predict: audio file
paths -> transcripts (strings); with the pyfunc param `timings: true` (`tlops predict --timings`) per clip its words, each
{word, start, end} in seconds, from the CTC alignment of the transcript (`tlops.asr.decode.word_timings`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlops.task_types.base import TaskType, train_csv_header
from tlops.task_types.registry import register_task_type

NAME = "speech_recognition"
LEVEL = "frame"
META_KEY = NAME
SPLITS = ("train", "val", "test")
ADAPTER_FILE = "asr/adapter.safetensors"  # in the package: the frame adapter (standardisation, and the GRU if any)


def _asr_dataset_class():
    from tlops.data.dataset import Dataset

    @dataclass
    class SpeechDataset(Dataset):
        """Clips and transcripts: per split a frame with `path`, `text` (normalised), `seconds`, `line` (in its CSV)."""

        alphabet: list = field(default_factory=list)
        problems: list = field(default_factory=list)  # the reader's row problems (validation reports them)

        @property
        def labels(self) -> list[str]:
            return []

        def texts(self, split: str) -> list[str]:
            return self.splits[split]["text"].tolist()

        def seconds(self, split: str) -> list[float]:
            return [float(s) for s in self.splits[split]["seconds"]]

        def y(self, split: str) -> np.ndarray:
            return np.arange(len(self.splits[split]), dtype=np.int64)

    return SpeechDataset


class _Model:
    """A package's backbone, head, alphabet and decoder as a `Transcriber`."""

    def __init__(self, predictor):
        from safetensors.torch import load_file

        from tlops.asr.decode import WordLM
        from tlops.asr.model import Transcriber, make_adapter

        spec = predictor.meta[META_KEY]
        lm = WordLM.from_json(spec["lm"]) if spec.get("lm") else None
        adapter = make_adapter(spec["adapter"])
        adapter.load_state_dict(load_file(str(Path(predictor.root) / ADAPTER_FILE)))
        predictor.backbone.model.eval()
        self.transcriber = Transcriber(predictor.backbone, adapter.eval(), predictor.head, spec["alphabet"], spec["slots_per_frame"],
                                       spec["decoder"], lm, batch_size=min(predictor.batch_size, 16))


@register_task_type
class SpeechRecognition(TaskType):
    name = NAME
    gate_metrics = ("wer", "cer")
    default_gate_metric = "wer"
    higher_is_better = {"wer": False, "cer": False}
    heads = ("logreg", "mlp")  # the CTC head: logreg -> a linear layer on each frame, mlp -> a BiGRU adapter then the linear layer
    selection_metric = "wer"
    val_metric_names = ("wer", "cer")
    few_shot_plot = "wer_vs_shots.png"
    class_probabilities = False
    feature_level = LEVEL
    embeds_in_features_step = False  # the trainers read frame features themselves
    starter_prefix = "asr"  # `tlops init` starters: audio_asr_linear_probe, audio_asr_finetune
    default_starter = "linear_probe"

    def recognise(self, root):
        """A folder whose train.csv has `path` and `text` columns and no `label` holds transcribed audio clips."""
        header = [c.strip() for c in train_csv_header(root) or []]
        return "audio" if "path" in header and "text" in header and "label" not in header else None

    def init_summary(self, ds):
        """Clips and words per split; the alphabet train's transcripts spell."""
        from collections import Counter

        counts = {s: Counter({"clips": len(df), "words": sum(len(t.split()) for t in df["text"])}) for s, df in ds.splits.items()}
        seconds = sum(ds.seconds("train"))
        letters = "".join(c for c in ds.alphabet if c != " ")
        return counts, (f"transcribed clips ({seconds / 60:.1f} min of training audio; alphabet of {len(ds.alphabet)} characters: "
                        f"space and {letters!r})")

    # ---- data ------------------------------------------------------------------------------------------------

    def read_dataset(self, root, meta, modality, name, seed, val_fraction):
        from tlops.asr.files import read_splits
        from tlops.errors import DataError

        root = Path(root)
        if modality != "audio":
            raise DataError(f"{root / 'dataset.yaml'}: task: speech_recognition needs `modality: audio` (found {modality!r}); "
                            "set modality: audio")
        frames, carved, alphabet, problems = read_splits(root, seed=seed, val_fraction=val_fraction)
        return _asr_dataset_class()(root=root, modality=modality, name=name, splits=frames, val_carved=carved, meta=meta,
                                    alphabet=alphabet, problems=problems)

    def feature_meta(self, ds) -> dict:
        return {"level": LEVEL, "alphabet": list(getattr(ds, "alphabet", []))}

    # ---- validation ------------------------------------------------------------------------------------------

    def reader_checks(self, ds) -> list:
        """The reader's row problems as failed checks, one per (file, rule): the lines, the values, the fix."""
        from tlops.records import Check

        grouped: dict[tuple, list] = {}
        for p in getattr(ds, "problems", []):
            grouped.setdefault((p.split, p.file, p.rule), []).append(p)
        return [Check(split=split, file=file, rule=f"speech CSV: {rule}", expectation="tlops_asr_reader", success=False,
                      unexpected_count=len(ps), rows=[p.line for p in ps][:20], values=[p.value[:300] for p in ps][:20],
                      observed=None, fix=ps[0].fix)
                for (split, file, rule), ps in grouped.items()]

    def validation_rules(self, ds, cfg, frame_of) -> list:
        import great_expectations.expectations as gxe

        from tlops.validation import Rule

        if getattr(ds, "problems", None):
            return []  # the reader's checks already failed
        return [Rule(split, "rows", gxe.ExpectTableRowCountToBeBetween(min_value=1), "at least one clip",
                     f"add rows path,text to {Path(ds.splits[split].attrs.get('source', split + '.csv')).name}"
                     if not (split == "val" and ds.val_carved) else "val is carved from train: add a val.csv or more train rows")
                for split in SPLITS]

    def validation_frame(self, ds, split, kind):
        import pandas as pd

        df = ds.splits[split]
        return pd.DataFrame({"text": list(df["text"]), "seconds": list(df["seconds"])})

    def validation_where(self, ds, split, kind, frame, idx):
        df = ds.splits[split]
        return df.attrs.get("source", f"{split}.csv"), [int(df["line"].iloc[i]) for i in idx]

    # ---- features --------------------------------------------------------------------------------------------

    def feature_identity(self, identity: dict) -> dict:
        return {**identity, "level": LEVEL}

    # ---- training --------------------------------------------------------------------------------------------

    def predicts(self, labels):
        return "the transcript of an audio clip (normalised text in the training alphabet)"

    def outputs(self, labels):
        raise NotImplementedError("a speech-recognition head's width is k * (1 + alphabet), set by its trainer")

    def loop_task(self, y, opts=None):
        from tlops.errors import ConfigError

        raise ConfigError("speech recognition trains through its own CTC trainer (linear_probe); the shared loop's item-level "
                          "tasks do not apply")

    def _checkpoint_dir(self, ctx, ds, part: str):
        """The run's checkpoint folder for one loop part (`probe`, `finetune`): strategy options, seed, backbone, data."""
        from tlops.asr.training import data_digest
        from tlops.strategies.context import NOT_IN_FINGERPRINT, run_checkpoint_dir

        digest = data_digest([ds.inputs(x) for x in ("train", "val")], [ds.texts(x) for x in ("train", "val")],
                             [ds.seconds(x) for x in ("train", "val")])
        return run_checkpoint_dir(ctx, {**ctx.cfg.strategy.model_dump(exclude=NOT_IN_FINGERPRINT), "asr": part,
                                        "masking": MASKING}, [digest])

    def probe_trainer(self, ctx):
        """linear_probe: a CTC head on the frozen backbone's frame features (`tlops.asr.model.train_head`, on the shared loop:
        per-epoch val WER/CER, the best epoch kept, checkpoints and resume)."""
        from tlops.asr.model import HeadSettings, clip_frames, slots_per_frame, train_head
        from tlops.progress import note
        from tlops.strategies.context import loop_summary

        s = ctx.cfg.strategy
        check_probe_settings(s)
        ds, backbone = ctx.dataset(), ctx.backbone()
        fit_clips(backbone, ds)  # (with the lead of silence that centres the frames, `centre_frames`)
        k = slots_per_frame(backbone)
        t0 = time.perf_counter()
        frames = {split: clip_frames(backbone, ds.inputs(split), ds.seconds(split), batch_size=ctx.cfg.backbone.batch_size)
                  for split in ("train", "val")}
        feature_seconds = time.perf_counter() - t0
        settings = HeadSettings(adapter="none" if s.head == "logreg" else "bigru", hidden=s.hidden, dropout=s.dropout, epochs=s.epochs,
                                lr=s.lr, weight_decay=s.weight_decay, batch_size=s.batch_size, seed=ctx.cfg.seed, **MASKING)
        ckpt_dir = self._checkpoint_dir(ctx, ds, "probe")
        trained = train_head(frames["train"], ds.texts("train"), frames["val"], ds.texts("val"), ds.alphabet, k, settings,
                             log=lambda line: note(f"ctc epoch {line}"), checkpoint_dir=ckpt_dir, callbacks=ctx.callbacks)
        return self._package(ctx, backbone, trained, frames["val"], trained.seconds + feature_seconds, "probe",
                             loop_summary(trained.loop, ckpt_dir))

    def finetune_trainer(self, ctx):
        """finetune: the backbone's top `trainable` groups, the adapter and the CTC head together (`finetune_ctc`) on the
        shared loop with the run's finetune settings (epochs, LRs, schedule, patience, backbone groups, L2-SP, device,
        checkpoints and resume)."""
        from tlops.asr.model import FinetuneSettings, clip_frames, finetune_ctc, slots_per_frame
        from tlops.progress import note
        from tlops.strategies.context import loop_summary

        s = ctx.cfg.strategy
        check_finetune_settings(s)
        ds, backbone = ctx.dataset(), ctx.backbone()
        fit_clips(backbone, ds)  # (with the lead of silence that centres the frames, `centre_frames`)
        k = slots_per_frame(backbone)
        settings = FinetuneSettings(adapter="none" if s.head == "linear" else "bigru", hidden=s.hidden, dropout=s.dropout,
                                    epochs=s.epochs, lr=s.head_lr, weight_decay=s.weight_decay, batch_size=s.batch_size,
                                    seed=ctx.cfg.seed, trainable=s.trainable, backbone_lr=s.backbone_lr, max_grad_norm=s.max_grad_norm,
                                    device=s.device, **MASKING)
        init = None
        if s.lp_ft:  # LP-FT: the CTC probe on the frozen frames first (LP_FT_EPOCHS), fine-tuned from there
            from dataclasses import replace

            from tlops.asr.model import train_head

            frames = {split: clip_frames(backbone, ds.inputs(split), ds.seconds(split)) for split in ("train", "val")}
            init = train_head(frames["train"], ds.texts("train"), frames["val"], ds.texts("val"), ds.alphabet, k,
                              replace(settings, epochs=LP_FT_EPOCHS, lr=max(settings.lr, 2e-3)),
                              log=lambda line: note(f"ctc probe (lp_ft) epoch {line}"))
        ckpt_dir = self._checkpoint_dir(ctx, ds, "finetune")
        trained = finetune_ctc(backbone, (ds.inputs("train"), ds.seconds("train"), ds.texts("train")),
                               (ds.inputs("val"), ds.seconds("val"), ds.texts("val")), ds.alphabet, k, settings,
                               log=lambda line: note(f"ctc finetune epoch {line}"), init=init, opts=s, checkpoint_dir=ckpt_dir,
                               callbacks=ctx.callbacks)
        return self._package(ctx, backbone, trained, clip_frames(backbone, ds.inputs("val"), ds.seconds("val")), trained.seconds,
                             "fine_tune", loop_summary(trained.loop, ckpt_dir))

    def _package(self, ctx, backbone, trained, val_frames, seconds, mode, loop):
        """The decoder chosen on val (`select_decoder`), then the package: backbone, head, adapter, alphabet, decoder, LM."""
        from safetensors.torch import save_file

        from tlops.asr.decode import WordLM
        from tlops.asr.model import chosen_row, log_probs_of, select_decoder
        from tlops.package import save_package
        from tlops.records import PackageResult

        s = ctx.cfg.strategy
        ds = ctx.dataset()
        lm = WordLM.fit(ds.texts("train"), order=2)
        val_lp = log_probs_of(trained.adapter, trained.head, val_frames, trained.k, len(ds.alphabet) + 1)
        decoder, tried = select_decoder(val_lp, ds.texts("val"), ds.alphabet, lm)
        chosen = chosen_row(decoder, tried)
        val_metrics = {"wer": float(chosen["wer"]), "cer": float(chosen["cer"])}
        rows = trained.history
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        adapter_file = ctx.out_dir / "adapter.safetensors"
        save_file({k: v.contiguous() for k, v in trained.adapter.state_dict().items()}, str(adapter_file))
        spec = {"alphabet": list(ds.alphabet), "slots_per_frame": int(trained.k), "decoder": decoder, "val_decoders": tried,
                "adapter": trained.adapter.spec,
                "lm": lm.to_json() if (decoder.get("alpha") or decoder.get("lexicon")) else None, "level": LEVEL,
                "normalisation": "NFC, lower case, whitespace runs -> one space, stripped"}
        summary = {**loop.model_dump(include={"best_epoch", "epochs_run", "stopped_early", "device", "precision"}),
                   "val_greedy_wer": trained.val_wer, **{f"val_{k}": v for k, v in val_metrics.items()}}
        package = save_package(ctx.out_dir / "package", backbone, trained.head, [],
                               extra={"strategy": s.model_dump(), "seed": ctx.cfg.seed, **self.package_meta(ctx.features),
                                      META_KEY: spec, mode: summary}, files={ADAPTER_FILE: adapter_file})
        return PackageResult(strategy=s.name, package=str(package), history=rows, val_metrics=val_metrics, seconds=seconds, loop=loop)

    # ---- evaluation --------------------------------------------------------------------------------------------

    def dataset_truth(self, ds, split):
        return ds.texts(split)

    def truth(self, y, labels):
        raise NotImplementedError("speech recognition's truth is the dataset's transcripts (dataset_truth)")

    def test_outputs(self, features, result, dataset):
        from tlops.package import Predictor

        ds = dataset()
        return self.dataset_truth(ds, "test"), self.predict(Predictor(result.package), ds.inputs("test"))

    def metrics(self, y_true, y_pred, labels):
        from tlops.asr.metrics import error_rates

        return error_rates(y_true, y_pred)

    def report_and_plots(self, y_true, y_pred, labels, out_dir):
        from tlops.asr.metrics import error_rates

        buckets: dict[int, list] = {}
        for t, p in zip(y_true, y_pred):
            buckets.setdefault(len(t.split()), []).append((t, p))
        by_words = {f"{n} words": {"utterances": len(v), **error_rates([t for t, _ in v], [p for _, p in v])}
                    for n, v in sorted(buckets.items())}
        wrong = [{"truth": t, "predicted": p} for t, p in zip(y_true, y_pred) if t != p][:25]
        report = {"overall": {**self.metrics(y_true, y_pred, labels), "utterances": len(y_true),
                              "sentence_error_rate": float(np.mean([t != p for t, p in zip(y_true, y_pred)])) if y_true else float("nan")},
                  "by_reference_words": by_words, "errors": wrong}
        return report, "asr_report.json", [_by_words_png(by_words, Path(out_dir) / "wer_by_words.png")]

    # ---- package and predict -----------------------------------------------------------------------------------

    def score_package(self, meta, fetch, features, dataset):
        from tlops.package import Predictor

        return (self.dataset_truth(dataset, "test"), self.predict(Predictor(fetch("")), dataset.inputs("test")),
                "champion package on the test clips")

    def package_meta(self, features) -> dict:
        return {"task": NAME}

    pyfunc_params = (("timings", "boolean", False),)
    prediction_column = "transcript"

    def predict(self, predictor, items) -> list[str]:
        """Per audio file path, its transcript."""
        return self._transcriber(predictor).transcribe(list(items))

    def predict_with(self, predictor, items, params):
        """With the pyfunc param `timings`: per audio file path a list of its words, each {word, start, end} (seconds
        from the clip's start) from the CTC alignment of its transcript (`Transcriber.transcribe(timings=True)`)."""
        if not params.get("timings"):
            return None
        found = self._transcriber(predictor).transcribe(self.prediction_inputs(predictor, list(items)), timings=True)
        return [t["words"] for t in found]

    @staticmethod
    def _transcriber(predictor):
        if getattr(predictor, "_asr", None) is None:
            predictor._asr = _Model(predictor)
        return predictor._asr.transcriber


def fit_clips(backbone, ds) -> None:
    """Centre the frames (`tlops.asr.model.centre_frames`: whole frames of silence before each clip, speech_embedding's
    0.4 s), then pad every clip to `backbone.clip_seconds`, or to that lead, the longest clip and one frame window when
    that is longer: a transcript is never cut."""
    import math

    from tlops.asr.model import centre_frames

    lead = centre_frames(backbone)
    longest = max((s for split in SPLITS for s in ds.seconds(split)), default=0.0)
    need = lead + longest + float(backbone.frame_window)
    if need > float(backbone.clip_seconds):
        backbone.clip_seconds = float(math.ceil(need * 10) / 10)


UNSUPPORTED_PROBE = {"C": 1.0, "max_iter": 1000, "loss": "mse", "huber_delta": 1.0}


# finetune settings the CTC fine-tuning does not apply, with the value it does apply
LP_FT_EPOCHS = 30  # finetune with lp_ft: the CTC probe's epochs before fine-tuning
UNSUPPORTED_FINETUNE = {"loss": "mse", "huber_delta": 1.0}
# SpecAugment-style masks on the adapter's input frames while training (`tlops.asr.training.Masking`; the finetune
# strategy's `augment: false` turns them off there): per clip 3 spans of up to 2 frames and 3 bands of up to 8 of the
# frame's dimensions set to the train mean. On the demo (probe, 60 epochs) val greedy WER 0.45 -> 0.29, val WER with the
# chosen decoder 0.163 -> 0.127 (bench/RESULTS.md)
MASKING = {"time_masks": 3, "time_width": 2, "feature_masks": 3, "feature_width": 8}


def check_finetune_settings(s) -> None:
    """Refuse finetune settings the CTC fine-tuning would otherwise ignore."""
    from tlops.errors import ConfigError

    odd = {k: getattr(s, k) for k, v in UNSUPPORTED_FINETUNE.items() if getattr(s, k, v) != v}
    if odd:
        raise ConfigError(f"finetune on speech_recognition data does not apply {', '.join(f'strategy.{k}: {v}' for k, v in odd.items())} "
                          "(its loss is CTC over the transcript's characters); remove them or set {', '.join(f'{k}: {UNSUPPORTED_FINETUNE[k]}' for k in odd)}")


def check_probe_settings(s) -> None:
    """Refuse linear_probe settings the CTC probe would otherwise ignore (and the ridge head, which fits no CTC)."""
    from tlops.errors import ConfigError

    if s.head == "ridge":
        raise ConfigError("strategy.head: ridge fits numbers, not a CTC head; set strategy.head: logreg (a linear CTC head) or mlp")
    odd = {k: getattr(s, k) for k, v in UNSUPPORTED_PROBE.items() if getattr(s, k, v) != v}
    if odd:
        raise ConfigError(f"linear_probe on speech_recognition data does not apply {', '.join(f'strategy.{k}: {v}' for k, v in odd.items())} "
                          "(its CTC head trains by AdamW with lr, weight_decay, epochs, batch_size); remove them")


def _by_words_png(by_words: dict, path: Path) -> Path:
    from tlops.evaluate import _plt

    plt = _plt()
    keys = list(by_words) or ["(none)"]
    wer = [by_words[k]["wer"] if k in by_words else 0.0 for k in keys]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(keys) + 2), 3.5))
    ax.bar(keys, wer, color="#c44e52")
    for i, k in enumerate(keys):
        if k in by_words:
            ax.text(i, wer[i] + 0.01, f"{wer[i]:.2f}\n({by_words[k]['utterances']})", ha="center", fontsize=8)
    ax.set_ylabel("WER (test, lower is better)")
    ax.set_xlabel("reference length")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
