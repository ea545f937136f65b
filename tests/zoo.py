"""Registered models trained once per test session and shared (the `zoo` fixture in tests/conftest.py): the
read-only registry, predict, evaluate, serve, fresh-process and audit-verdict tests look at these instead of each
training its own. Every model is built the first time a test asks for it, by the real flow on the session's Prefect
API (or, for the few-shot serving model, by the core pipeline and the register task), each in an MLflow SQLite store
of its own. A test that moves aliases or adds versions works on `copy_store` (the registry database copied; the
artifacts stay shared and are only read). A test that tampers with files trains its own model.

With `TLOPS_TEST_ZOO` set to a folder (`make test` sets it to one folder for all its pytest processes: the two xdist
workers of unit+flow and the serial system session), each model is built once in that folder, under a file lock, and
every later process loads what the first one registered (`shared`) instead of training it again.

The backbones are the tiny random-weight BERT (a code path, not a pretrained model) and the small packaged
EfficientNet-Lite0, speech_embedding and CREPE tiny (real weights, tiny inputs). The task types whose input or answer is
not one label (extractive QA, speech recognition, object detection, semantic segmentation) each have one model here too,
so one fresh process checks all their pyfuncs (tests/system/test_fresh_process.py)."""

from __future__ import annotations

import functools
import os
import pickle
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tests.helpers import (STRATEGY_INNER_GROUPS, make_asr_dataset, make_audio_dataset, make_detection_dataset, make_few_shot_text,
                           make_image_dataset, make_qa_dataset, make_segmentation_dataset, make_task_dataset, make_text_dataset,
                           tiny_config)


@contextmanager
def mlflow_uris_kept():
    """MLflow's process-wide URIs (and the variables it exports for child processes) as they were: a zoo model is built
    inside whichever test first asks for it, and must not move the store that test's own subprocesses see."""
    import mlflow

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {k: os.environ.get(k) for k in keys}
    tracking, registry = mlflow.tracking._tracking_service.utils._tracking_uri, mlflow.tracking._model_registry.utils._registry_uri
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        mlflow.tracking._tracking_service.utils._tracking_uri = tracking
        mlflow.tracking._model_registry.utils._registry_uri = registry


def flow_run(cfg: dict):
    from tests.helpers import flow_run as run

    with mlflow_uris_kept():
        return run(cfg)


@dataclass
class Registered:
    """One store: its tracking URI, the dataset the models trained on, the config of each version and what each
    run returned (a `RunOutcome` from the flow, or the core's result for a model registered without Prefect)."""

    name: str
    uri: str
    data: Path
    configs: list[dict] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return Path(self.uri.removeprefix("sqlite:///")).parent.parent

    def model_uri(self, ref: str = "@champion", name: str | None = None) -> str:
        return f"models:/{name or self.name}{ref if ref.startswith('@') else '/' + ref}"

    def copy_store(self, dest: Path) -> str:
        """The registry database copied to `dest` (aliases, tags, versions and history of the copy are the test's own)."""
        import sqlite3

        db = dest / "mlruns" / "mlflow.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        src, dst = sqlite3.connect(self.uri.removeprefix("sqlite:///")), sqlite3.connect(db)
        try:
            src.backup(dst)  # a consistent copy, with what still sits in the write-ahead log
        finally:
            src.close()
            dst.close()
        return f"sqlite:///{db}"


SHARED_ENV = "TLOPS_TEST_ZOO"


def shared(build):
    """A zoo model built once per zoo folder, whichever process asks first: under `<root>/<name>.lock`, a model another
    process already built is loaded from its pickle (its store and artifacts sit in the same folder and are only read)."""

    @functools.wraps(build)
    def get(self):
        from filelock import FileLock

        done = self.root / f"{build.__name__}.pickle"
        with FileLock(self.root / f"{build.__name__}.lock"):
            if done.exists():
                return pickle.loads(done.read_bytes())
            made = build(self)
            tmp = done.with_suffix(".part")
            tmp.write_bytes(pickle.dumps(made))
            tmp.replace(done)  # whole or absent: a process killed mid-write leaves no half pickle
            return made

    return get


class Zoo:
    def __init__(self, root: Path, tiny_bert: Path):
        self.root, self.tiny_bert = root, tiny_bert

    def _dir(self, name: str) -> Path:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    @cached_property
    @shared
    def text(self) -> Registered:
        """tiny-text by the gate: v1 weak (C=1e-6, champion first), v2 good (takes champion), v3 an MLP head kept out by
        a margin of 0.5 (challenger only)."""
        tmp = self._dir("text")
        data = make_text_dataset(tmp / "data")
        configs = [tiny_config(tmp, data, self.tiny_bert, strategy__C=1e-6), tiny_config(tmp, data, self.tiny_bert),
                   tiny_config(tmp, data, self.tiny_bert, strategy__head="mlp", strategy__epochs=5, registry__margin=0.5)]
        reg = Registered("tiny-text", configs[0]["tracking"]["uri"], data, configs)
        reg.results = [flow_run(c) for c in configs]
        return reg

    @cached_property
    @shared
    def image(self) -> Registered:
        """tiny-image: a probe on packaged EfficientNet-Lite0 features of three visually distinct patterns."""
        tmp = self._dir("image")
        data = make_image_dataset(tmp / "images")
        cfg = tiny_config(tmp, data, tmp, backbone__name="packaged:efficientnet-lite0", backbone__image_size=32,
                          registry__model_name="tiny-image")
        return Registered("tiny-image", cfg["tracking"]["uri"], data, [cfg], [flow_run(cfg)])

    @cached_property
    @shared
    def audio(self) -> Registered:
        """tiny-audio: a probe on packaged speech_embedding features of tones, chirps and noise bursts."""
        tmp = self._dir("audio")
        data = make_audio_dataset(tmp / "audio")
        cfg = tiny_config(tmp, data, tmp, backbone__name="packaged:speech-embedding", registry__model_name="tiny-audio")
        return Registered("tiny-audio", cfg["tracking"]["uri"], data, [cfg], [flow_run(cfg)])

    @cached_property
    @shared
    def fewshot(self) -> Registered:
        """tiny-fewshot-serving: Meta-SGD meta-trained by the core pipeline, then logged and registered by the pipeline's
        own register task (`register_task.fn`, no Prefect); `results[0]` is the core's result."""
        from mlflow.tracking import MlflowClient

        from tasks.register import register_task
        from tasks.tracking import setup
        from tlops.config import RunConfig
        from tlops.pipeline import run_core

        tmp = self._dir("fewshot")
        data = make_few_shot_text(tmp / "data")
        raw = tiny_config(tmp, data, self.tiny_bert, registry__model_name="tiny-fewshot-serving",
                          strategy={"name": "meta_sgd", "meta_epochs": 2, "episodes_per_epoch": 16, "hidden": 16, "embedding_dim": 8,
                                    "shots": 2, "queries": 5, "eval_shots": [1], "inner_lr": 0.05, "inner_steps": 2, "baselines": []})
        cfg = RunConfig.model_validate(raw)
        core = run_core(cfg, tmp / "work")
        with mlflow_uris_kept():
            client, exp = setup(cfg)
            run_id = client.create_run(exp).info.run_id
            reg = register_task.fn(cfg, run_id, core.features, core.train, core.evaluation.metrics, str(tmp / "work" / "registered"))
            MlflowClient(cfg.tracking.uri).set_terminated(run_id)
        assert reg.version == "1" and "champion" in reg.aliases, reg
        return Registered("tiny-fewshot-serving", cfg.tracking.uri, data, [raw], [core])

    @cached_property
    @shared
    def inner_groups(self) -> Registered:
        """tiny-inner-groups: MAML with `trainable: 1, inner_groups: 1` (second-order through the top backbone group)."""
        tmp = self._dir("inner-groups")
        data = make_few_shot_text(tmp / "data", per_class=14)
        cfg = tiny_config(tmp, data, self.tiny_bert, registry__model_name="tiny-inner-groups",
                          strategy={**STRATEGY_INNER_GROUPS, "name": "maml", "inner_lr": 0.05, "inner_groups": 1})
        return Registered("tiny-inner-groups", cfg["tracking"]["uri"], data, [cfg], [flow_run(cfg)])

    @cached_property
    @shared
    def task_regression(self) -> Registered:
        """tiny-task-regression: FOMAML few-shot regression over a dataset's `group:` tasks."""
        tmp = self._dir("task-regression")
        data = make_task_dataset(tmp / "data")
        cfg = tiny_config(tmp, data, self.tiny_bert, registry__model_name="tiny-task-regression", registry__metric="mae", strategy={
            "name": "fomaml", "shots": 2, "queries": 3, "projection": "linear", "embedding_dim": 8, "meta_epochs": 1,
            "episodes_per_epoch": 8, "val_episodes": 10, "eval_shots": [1, 2]})
        return Registered("tiny-task-regression", cfg["tracking"]["uri"], data, [cfg], [flow_run(cfg)])

    @cached_property
    @shared
    def media_regression(self) -> dict[str, Registered]:
        """tiny-tilt (image: tilt of turned items, EfficientNet-Lite0), tiny-rate (audio: words per minute,
        speech_embedding), tiny-pitch (audio: voice pitch in Hz, CREPE tiny): ridge probes in one store, on tiny sets
        made by the demo builders' own code."""
        from tlops.data import build_pitch_audio, build_regression_audio, build_regression_image

        tmp = self._dir("media-regression")
        sets = {"tilt": (build_regression_image, "PER_CLASS", {"train": 3, "val": 1, "test": 1},
                         {"backbone__name": "packaged:efficientnet-lite0", "backbone__image_size": 32}),
                "rate": (build_regression_audio, "VOICES", {"train": 3, "val": 1, "test": 1},
                         {"backbone__name": "packaged:speech-embedding", "backbone__clip_seconds": 1.0}),
                "pitch": (build_pitch_audio, "VOICES", {"train": 3, "val": 1, "test": 1},
                          {"backbone__name": "packaged:crepe-tiny", "backbone__clip_seconds": 0.6})}
        uri = f"sqlite:///{tmp}/mlruns/mlflow.db"
        out = {}
        for name, (builder, knob, size, over) in sets.items():
            saved = getattr(builder, knob)
            setattr(builder, knob, size)
            try:
                builder.build(tmp / f"{name}-data")
            finally:
                setattr(builder, knob, saved)
            cfg = tiny_config(tmp / name, tmp / f"{name}-data", tmp, strategy={"name": "linear_probe", "head": "ridge"},
                              registry={"model_name": f"tiny-{name}", "metric": "mae", "margin": 0.0}, tracking__uri=uri, **over)
            out[name] = Registered(f"tiny-{name}", uri, tmp / f"{name}-data", [cfg], [flow_run(cfg)])
        return out

    @cached_property
    @shared
    def qa(self) -> Registered:
        """tiny-qa: a start/end probe on the tiny BERT's token states, on the tiny SQuAD set, gated on F1."""
        tmp = self._dir("qa")
        data = make_qa_dataset(tmp / "data")
        cfg = tiny_config(tmp, data, self.tiny_bert, registry__metric="f1", registry__model_name="tiny-qa")
        return Registered("tiny-qa", cfg["tracking"]["uri"], data, [cfg], [flow_run(cfg)])

    @cached_property
    @shared
    def asr(self) -> Registered:
        """tiny-asr: a CTC MLP head on packaged speech_embedding frames of noise clips with made-up transcripts over 'a', 'b'
        and space (a code path: nothing is learnt), gated on WER."""
        tmp = self._dir("asr")
        data = make_asr_dataset(tmp / "data")
        cfg = tiny_config(tmp, data, tmp, backbone__name="packaged:speech-embedding", backbone__clip_seconds=1.5,
                          registry__metric="wer", registry__model_name="tiny-asr",
                          strategy={"name": "linear_probe", "head": "mlp", "hidden": 8, "epochs": 2, "batch_size": 4})
        return Registered("tiny-asr", cfg["tracking"]["uri"], data, [cfg], [flow_run(cfg)])

    def _vision(self, kind: str, make, metric: str) -> Registered:
        tmp = self._dir(kind)
        data = make(tmp / "data")
        cfg = tiny_config(tmp, data, tmp, registry__metric=metric, registry__model_name=f"tiny-{kind}",
                          backbone__name="packaged:efficientnet-lite0", backbone__image_size=64, backbone__batch_size=8,
                          strategy={"name": "linear_probe", "head": "mlp", "epochs": 2, "batch_size": 4, "lr": 0.003})
        return Registered(f"tiny-{kind}", cfg["tracking"]["uri"], data, [cfg], [flow_run(cfg)])

    @cached_property
    @shared
    def detection(self) -> Registered:
        """tiny-detect: FPN + FCOS on the frozen packaged EfficientNet-Lite0, two epochs on 8 images of squares and discs
        (64 px), gated on mAP."""
        return self._vision("detect", make_detection_dataset, "map")

    @cached_property
    @shared
    def segmentation(self) -> Registered:
        """tiny-segment: LR-ASPP on the frozen packaged EfficientNet-Lite0, two epochs on the same shapes' masks (labels
        background, square, disc), gated on mIoU."""
        return self._vision("segment", make_segmentation_dataset, "miou")
