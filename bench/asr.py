"""Speech recognition on the demo set (data/audio_asr: digit strings spoken by espeak-ng and flite voices, test voices
never heard in training): test WER/CER (jiwer) of
- tlops: the CTC head of configs/audio_asr_probe.yaml (BiGRU adapter + linear CTC layer) on the frozen, pretrained
  speech_embedding frames, decoder chosen on val (greedy / beam / beam + the train transcripts' word bigram LM);
- tlops fine-tuned: configs/audio_asr_finetune.yaml (LP-FT: from that probe, the CNN's top groups, adapter and CTC
  layer trained together);
- the control: the very same head, training and decoder choice on speech_embedding with its CNN re-initialised at random
  (PyTorch's default conv init, BatchNorm reset to identity; the log-mel front end is fixed DSP and stays);
- pocketsphinx 5.1.1 (CMU Sphinx, the wheel's US-English acoustic model and CMU dictionary), decoding the same clips as
  16 kHz mono int16, twice: with its general US-English trigram LM, and with an LM of the same train transcripts tlops
  learns from (built by pocketsphinx's own `pocketsphinx.lm.ArpaBoLM`, the fair peer: it knows the task's words).

    .venv/bin/python -m bench.asr                 # about 30 min on 2 busy CPU cores; bench/out/asr.json after each part
    .venv/bin/python -m bench.asr --no-finetune --no-control
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.common import REPO, save
from tlops.asr.decode import WordLM, decode, greedy
from tlops.asr.files import read_splits
from tlops.asr.metrics import error_rates
from tlops.asr.model import (
    FinetuneSettings,
    HeadSettings,
    centre_frames,
    clip_frames,
    finetune_ctc,
    log_probs_of,
    select_decoder,
    slots_per_frame,
    train_head,
)
from tlops.asr.text import normalise
from tlops.backbones import load_backbone

CONFIG = REPO / "configs" / "audio_asr_probe.yaml"
FINETUNE = REPO / "configs" / "audio_asr_finetune.yaml"


def randomise(backbone, seed: int = 0) -> None:
    """Re-initialise speech_embedding's CNN (the control)."""
    from torch import nn

    from tlops.backbones.speech_embedding import OnnxConv

    torch.manual_seed(seed)
    for m in backbone.model.modules():
        if isinstance(m, OnnxConv):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
            m.reset_running_stats()


def scores(trained, frames: dict, texts: dict, alphabet: list[str], k: int, t0: float) -> dict:
    """Decoder chosen on val, then test WER/CER (and greedy's) of a trained adapter + head on the frames."""
    lm = WordLM.fit(texts["train"])
    v = len(alphabet) + 1
    decoder, tried = select_decoder(log_probs_of(trained.adapter, trained.head, frames["val"], k, v), texts["val"], alphabet, lm)
    test_lp = log_probs_of(trained.adapter, trained.head, frames["test"], k, v)
    t1 = time.perf_counter()
    hyp = [decode(p, alphabet, decoder, lm) for p in test_lp]
    seconds = time.perf_counter() - t1
    return {"decoder": decoder, "best_epoch": trained.best_epoch, "train_seconds": round(t1 - t0, 1),
            "test": error_rates(texts["test"], hyp), "test_greedy": error_rates(texts["test"], [greedy(p, alphabet) for p in test_lp]),
            "val_chosen": next(r for r in tried if all(r.get(key) == val for key, val in decoder.items())),
            "decode_seconds_per_clip": round(seconds / len(hyp), 4), "examples": list(zip(texts["test"], hyp))[:8]}


def pcm16(path: str) -> bytes:
    from tlops.data.audio import read_audio, resample

    data, rate = read_audio(path)
    x = resample(data.mean(axis=1), rate, 16000)
    return (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


def pocketsphinx_scores(paths: list[str], truth: list[str], lm_text: str | None) -> dict:
    from pocketsphinx import Decoder

    with tempfile.TemporaryDirectory() as tmp:
        kwargs = {}
        if lm_text is not None:
            from pocketsphinx.lm import ArpaBoLM

            arpa = ArpaBoLM(text=lm_text, add_start=True)  # <s> and </s> around each transcript (the decoder needs them)
            arpa.compute()
            arpa.write_file(str(Path(tmp) / "task.arpa"))
            kwargs["lm"] = str(Path(tmp) / "task.arpa")
        dec = Decoder(samprate=16000, loglevel="FATAL", **kwargs)
        hyp = []
        t0 = time.perf_counter()
        for p in paths:
            dec.start_utt()
            dec.process_raw(pcm16(p), full_utt=True)
            dec.end_utt()
            h = dec.hyp()
            hyp.append(normalise(h.hypstr if h is not None else ""))
        seconds = time.perf_counter() - t0
    return {"test": error_rates(truth, hyp), "decode_seconds_per_clip": round(seconds / len(paths), 4),
            "examples": list(zip(truth, hyp))[:8]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO / "data" / "audio_asr"))
    ap.add_argument("--no-control", action="store_true")
    ap.add_argument("--no-finetune", action="store_true")
    ap.add_argument("--no-pocketsphinx", action="store_true")
    ap.add_argument("--no-probe", action="store_true", help="skip the pretrained probe (with --no-finetune: the control alone)")
    ap.add_argument("--out", default="asr", help="bench/out/NAME.json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 threads spin on a busy 2-core machine)")
    args = ap.parse_args()
    if args.no_probe and not args.no_finetune:
        ap.error("fine-tuning starts from the probe: --no-probe needs --no-finetune")
    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(CONFIG.read_text())
    s = cfg["strategy"]
    from tlops.task_types.speech_recognition import MASKING

    settings = HeadSettings(adapter="none" if s.get("head") == "logreg" else "bigru", hidden=s["hidden"], dropout=s["dropout"],
                            epochs=s["epochs"], lr=s["lr"], batch_size=s["batch_size"], seed=cfg["seed"], **MASKING)  # as a run
    root = Path(args.data)
    ds, _, alphabet, problems = read_splits(root)
    assert not problems, problems[:3]
    paths = {split: [str(root / p) for p in ds[split]["path"]] for split in ds}
    seconds = {split: list(ds[split]["seconds"]) for split in ds}
    texts = {split: list(ds[split]["text"]) for split in ds}
    out = {"data": str(root), "clips": {k: len(v) for k, v in paths.items()}, "config": str(CONFIG.relative_to(REPO)),
           "head": {"adapter": settings.adapter, "hidden": settings.hidden, "epochs": settings.epochs}}
    clip = max(cfg["backbone"]["clip_seconds"], max(max(v) for v in seconds.values()) + 0.8) + 0.4  # + the lead (centre_frames)

    def frames_of(backbone) -> dict:
        return {split: clip_frames(backbone, paths[split], seconds[split], batch_size=32) for split in ("train", "val", "test")}

    backbone = load_backbone(cfg["backbone"]["name"], clip_seconds=clip)
    centre_frames(backbone)  # whole frames of silence before each clip, as a run puts them (fit_clips)
    k = slots_per_frame(backbone)

    def head_on_frames(bb) -> tuple:
        """(the CTC head trained on `bb`'s frames, its scores): the probe, or the random-weights control."""
        t0 = time.perf_counter()
        frames = frames_of(bb)
        frame_seconds = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        head = train_head(frames["train"], texts["train"], frames["val"], texts["val"], alphabet, k, settings)
        return head, {"frame_seconds": frame_seconds, **scores(head, frames, texts, alphabet, k, t0)}

    if not args.no_probe:
        probe, out["tlops_pretrained_probe"] = head_on_frames(backbone)
        print("probe", out["tlops_pretrained_probe"]["test"], flush=True)
        save(args.out, out)
    if not args.no_pocketsphinx:
        out["pocketsphinx_train_transcript_lm"] = pocketsphinx_scores(paths["test"], texts["test"], "\n".join(texts["train"]) + "\n")
        print("pocketsphinx task LM", out["pocketsphinx_train_transcript_lm"]["test"], flush=True)
        out["pocketsphinx_general_lm"] = pocketsphinx_scores(paths["test"], texts["test"], None)
        print("pocketsphinx general", out["pocketsphinx_general_lm"]["test"], flush=True)
        save(args.out, out)
    if not args.no_control:
        control = load_backbone(cfg["backbone"]["name"], clip_seconds=clip)
        centre_frames(control)
        randomise(control)
        _, out["tlops_random_weights_control"] = head_on_frames(control)
        print("control", out["tlops_random_weights_control"]["test"], flush=True)
        save(args.out, out)
    if not args.no_finetune:
        f = yaml.safe_load(FINETUNE.read_text())["strategy"]
        fs = FinetuneSettings(adapter=settings.adapter, hidden=f["hidden"], dropout=f["dropout"], epochs=f["epochs"], lr=f["head_lr"],
                              weight_decay=f.get("weight_decay", 0.01), batch_size=f["batch_size"], seed=cfg["seed"],
                              trainable=f["trainable"], backbone_lr=f["backbone_lr"], **MASKING)
        t0 = time.perf_counter()
        from tlops.strategies.finetune import FinetuneConfig

        tuned = finetune_ctc(backbone, (paths["train"], seconds["train"], texts["train"]), (paths["val"], seconds["val"], texts["val"]),
                             alphabet, k, fs, init=probe, log=lambda line: print("finetune epoch", line, flush=True),
                             opts=FinetuneConfig(**f))  # the loop settings a run of the config gets
        tframes = frames_of(backbone)
        out["tlops_finetuned_lp_ft"] = {"config": str(FINETUNE.relative_to(REPO)), "trainable_groups": f["trainable"],
                                        "history": tuned.history, **scores(tuned, tframes, texts, alphabet, k, t0)}
        print("finetuned", out["tlops_finetuned_lp_ft"]["test"], flush=True)
        save(args.out, out)


if __name__ == "__main__":
    main()
