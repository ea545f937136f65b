"""Extractive question answering: the answer to a question is a span of its context.

Data: dataset.yaml `task: extractive_qa` and per split a SQuAD v1.1 / v2.0 JSON file (`train.json`, optional
`val.json` (else carved from train by article), `test.json`), read and checked by `tlops.qa.files`: every problem of
every file (the JSON line and column of a syntax error; the article, question id and JSON path of a bad record; an
answer that is not at its `answer_start`; ids shared across splits; a context of val/test that train also holds)
becomes a failed check of the validation report, with its fix. GX then checks that each split has questions and that
train has answerable ones. `is_impossible` questions (SQuAD v2.0) make the model able to abstain.

Features: the features step caches nothing (feature level `question`: it stores one empty row per question). A
question's token states depend on the (question, context) window they sit in, so both trainers read them from the
backbone themselves (`tlops.qa.model`); the probe's frozen states go through the feature cache at level `token` (one
row per sub-word token of a window, keyed by the window's model input and the token's position, in a namespace of the
backbone identity, the level and the layers), so a rerun on the same backbone and data embeds nothing: contexts longer than a window are read in overlapping windows (`stride`
tokens of overlap); windows of `backbone.max_length` tokens, the question cut to half of that (at most 64 tokens),
stride 3/8 of the window (48 for 128), answers up to 30 tokens.

Training: `linear_probe` (`probe_trainer`): a start/end head, Linear(D, 2) on standardised token states of the
frozen backbone (the config's `backbone.layers`), softmax over the window's positions (multinomial logistic
regression over positions), AdamW 3e-3 for 30 epochs, the epoch with the best val F1 kept. `finetune`
(`finetune_trainer`): backbone and head together (AdamW, `backbone_lr`/`head_lr`, `weight_decay`, `warmup_ratio` of
the steps warming up, then `schedule`; backbone groups, `layer_decay`, `l2sp`, gradient clipping and accumulation as
for any task), the epoch with the best val F1 kept. Both run on the shared training loop (`QAModel.fit`: per-epoch
rows with val F1 and exact match, the best epoch kept with its checkpoint, early-stopping patience, resume, device and
precision, live progress; the probe's states are computed once). SQuAD v2.0 data: the null threshold is
chosen on val (the official script's best threshold). Both write a package: the backbone (fine-tuned or not), the head
as a linear `ProbeHead` with 2 outputs (its scaler is the span head's standardisation) and the window settings and
null threshold under `extractive_qa` in the package meta.

Metrics: SQuAD exact match and F1 (the official normalisation); F1 on val selects, F1 on test gates (higher is
better); exact_match is a gate metric too. Predict: rows `{"question", "context"}` -> `{"answer", "start", "end",
"score"}` per row (`context[start:end] == answer`; "" and -1, -1 when a v2.0 model abstains).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlops.task_types.base import TaskType
from tlops.task_types.registry import register_task_type

NAME = "extractive_qa"
LEVEL = "question"  # the feature level: one (empty) row per question; token states are read by the trainers
META_KEY = NAME  # the package meta's section: window settings, layers, null threshold
COLUMNS = ("question", "context")  # one model input
SPLITS = ("train", "val", "test")


def window_settings(max_length: int) -> dict:
    """The windows for a backbone's `max_length`: the question cut to half the window (at most 64 tokens), 3/8 of the
    window shared by consecutive windows of one context (48 of 128), answers of up to 30 tokens."""
    query = min(64, max_length // 2)
    stride = min(max_length * 3 // 8, max(0, max_length - query - 4))
    return {"max_length": int(max_length), "stride": int(stride), "max_query_length": int(query), "max_answer_length": 30}


def _qa_dataset_class():
    from tlops.data.dataset import Dataset

    @dataclass
    class QuestionDataset(Dataset):
        """An extractive-QA dataset as the pipeline sees it: one row per question (`id`, `question`, `context`,
        `answers` (texts), `answer_starts`, `is_impossible`, `title`, `group`); no labels."""

        problems: list = field(default_factory=list)  # the reader's problems (validation reports them)

        @property
        def labels(self) -> list[str]:
            return []

        @property
        def version2(self) -> bool:
            return any(bool(v) for df in self.splits.values() for v in df["is_impossible"])

        def examples(self, split: str):
            from tlops.qa.files import Answer, QAExample

            df = self.splits[split]
            return [QAExample(id=i, question=q, context=c, answers=tuple(Answer(t, s) for t, s in zip(a, st)), is_impossible=bool(imp),
                              title=ti, group=g)
                    for i, q, c, a, st, imp, ti, g in zip(df["id"], df["question"], df["context"], df["answers"], df["answer_starts"],
                                                          df["is_impossible"], df["title"], df["group"])]

        def y(self, split: str) -> np.ndarray:
            return np.arange(len(self.splits[split]), dtype=np.int64)

        def inputs(self, split: str) -> list[dict]:
            df = self.splits[split]
            return [{"question": q, "context": c} for q, c in zip(df["question"], df["context"])]

    return QuestionDataset


def _frame(examples, source: str):
    import pandas as pd

    df = pd.DataFrame({"id": [e.id for e in examples], "question": [e.question for e in examples],
                       "context": [e.context for e in examples], "answers": [[a.text for a in e.answers] for e in examples],
                       "answer_starts": [[a.start for a in e.answers] for e in examples],
                       "is_impossible": [e.is_impossible for e in examples], "title": [e.title for e in examples],
                       "group": [e.group for e in examples]})
    df.attrs["source"] = source
    return df


def _split_problem(rest: str) -> tuple[str, str]:
    """(where in the file, what) of a reader problem after its file path: split at the first ': ' outside quotes
    (titles and ids are quoted with repr, and may hold ': ')."""
    quote, i = None, 0
    while i < len(rest):
        c = rest[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif rest.startswith(": ", i):
            return rest[:i].strip(), rest[i + 2:]
        i += 1
    return "", rest.strip()


class _Answerer:
    """A package's backbone and span head as a `QAModel` (its windows, decoding and null threshold)."""

    def __init__(self, predictor):
        import torch

        from tlops.qa.model import QAConfig, QAModel, SpanHead

        spec = predictor.meta.get(META_KEY) or {}
        cfg = QAConfig(**{**spec.get("config", {}), "layers": tuple(spec.get("config", {}).get("layers", (-1,)))})
        probe = predictor.head
        head = SpanHead(int(probe.spec["in_dim"]))
        with torch.no_grad():
            head.mean.copy_(probe.mean)
            head.std.copy_(probe.std)
            head.linear.weight.copy_(probe.net[0].weight)
            head.linear.bias.copy_(probe.net[0].bias)
        self.model = QAModel(predictor.backbone, cfg, head.eval())
        self.model.null_threshold = spec.get("null_threshold")
        predictor.backbone.model.eval()

    def predict(self, rows: list[dict]) -> list[dict]:
        return [{"answer": p["answer"], "start": int(p["start"]), "end": int(p["end"]), "score": float(p["score"])}
                for p in self.model.predict(rows)]


@register_task_type
class ExtractiveQA(TaskType):
    name = NAME
    gate_metrics = ("f1", "exact_match")
    default_gate_metric = "f1"
    higher_is_better = {"f1": True, "exact_match": True}
    heads = ("logreg",)  # the probe's start/end head: softmax over the window's positions
    selection_metric = "f1"
    val_metric_names = ("f1", "exact_match")
    few_shot_plot = "f1_vs_shots.png"
    class_probabilities = False
    feature_level = LEVEL
    embeds_in_features_step = False  # the trainers read token states per question-context window themselves
    input_columns = COLUMNS
    starter_prefix = "qa"  # `tlops init` starters: text_qa_linear_probe, text_qa_finetune
    # a frozen start/end probe trails the sliding-window lexical baseline on the demo (bench/RESULTS.md): init
    # writes the fine-tuning starter unless --strategy linear_probe is asked for
    default_starter = "finetune"

    def recognise(self, root):
        """A folder whose train.json is SQuAD's shape (a top-level `data` list; COCO's has `images`) is a QA folder."""
        f = Path(root) / "train.json"
        if not f.is_file():
            return None
        import json

        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None  # not readable as JSON: init falls back to the CSV contract and names what is missing
        return "text" if isinstance(doc, dict) and isinstance(doc.get("data"), list) else None

    def init_summary(self, ds):
        """Questions per split, answerable and not (SQuAD v2.0's is_impossible)."""
        from collections import Counter

        counts = {s: Counter("unanswerable" if bool(v) else "answerable" for v in df["is_impossible"]) for s, df in ds.splits.items()}
        contexts = len(set(ds.splits["train"]["context"])) if "context" in ds.splits["train"] else 0
        return counts, f"questions over {contexts} training contexts (SQuAD JSON)"

    # ---- data ------------------------------------------------------------------------------------------------

    def read_dataset(self, root, meta, modality, name, seed, val_fraction):
        """The folder's SQuAD JSON splits (`tlops.qa.files.check_qa_splits`); the reader's problems are kept for
        validation, not raised, so `tlops validate` and `tlops run` report each as a failed check."""
        from tlops.qa.files import SPLIT_FILES, check_qa_splits

        root = Path(root)
        splits, carved, problems = check_qa_splits(root, seed=seed, val_fraction=val_fraction)
        sources = {s: str(root / SPLIT_FILES["train" if (s == "val" and carved) else s]) for s in SPLITS}
        frames = {s: _frame(splits.get(s, []), sources[s]) for s in SPLITS}
        return _qa_dataset_class()(root=root, modality=modality, name=name, splits=frames, val_carved=carved, meta=meta,
                                   problems=list(problems))

    def feature_meta(self, ds) -> dict:
        return {"level": LEVEL, "version2": bool(getattr(ds, "version2", False))}

    # ---- validation ------------------------------------------------------------------------------------------

    def reader_checks(self, ds) -> list:
        """The reader's problems as failed checks, one per problem: the file, the record (line and column of a JSON
        syntax error; else the article / question id / JSON path, in the rule) and the fix."""
        import re

        from tlops.qa.files import SPLIT_FILES
        from tlops.records import Check

        files = {str(Path(ds.root) / f): s for s, f in SPLIT_FILES.items()}
        checks = []
        for p in getattr(ds, "problems", []):
            file = next((f for f in sorted(files, key=len, reverse=True) if p.startswith(f)), str(ds.root))
            where, what = _split_problem(p[len(file):] if p.startswith(file) else p)
            rule, _, fix = what.partition("; ")
            line = re.fullmatch(r"line (\d+) column \d+", where)
            record = "" if line or not where else f" {where}"
            checks.append(Check(split=files.get(file, "train"), file=file, rule=f"SQuAD file{record}: {rule}"[:300],
                                expectation="tlops_squad_reader", success=False, unexpected_count=1,
                                rows=[int(line.group(1))] if line else [], values=[], observed=None, fix=fix or "see the rule"))
        return checks

    def validation_rules(self, ds, cfg, frame_of) -> list:
        """GX rules: each split has at least one question (a carved val too: train needs two articles), and train has
        answerable questions (a start/end head learns from answers)."""
        import great_expectations.expectations as gxe

        from tlops.validation import Rule

        if getattr(ds, "problems", None):
            return []  # the reader's checks already failed: nothing was read to check further
        rules = []
        for split in SPLITS:
            fix = (f"add questions to {Path(ds.splits[split].attrs['source']).name}" if not (split == "val" and ds.val_carved) else
                   "val is carved from train by article and train.json has a single one: add a val.json, or more articles")
            rules.append(Rule(split, "rows", gxe.ExpectTableRowCountToBeBetween(min_value=1), "at least one question", fix))
        rules.append(Rule("train", "rows", gxe.ExpectColumnDistinctValuesToContainSet(column="answerable", value_set=[True]),
                          "answerable questions in train", "add questions with answers to train.json (is_impossible: false)"))
        return rules

    def validation_frame(self, ds, split, kind):
        import pandas as pd

        df = ds.splits[split]
        return pd.DataFrame({"id": list(df["id"]), "answerable": [not bool(v) for v in df["is_impossible"]]})

    def validation_where(self, ds, split, kind, frame, idx):
        return ds.splits[split].attrs.get("source", f"{split}.json"), []

    # ---- features --------------------------------------------------------------------------------------------

    def feature_identity(self, identity: dict) -> dict:
        return {**identity, "level": LEVEL}

    # ---- training --------------------------------------------------------------------------------------------

    def predicts(self, labels):
        return "the answer to a question as a span of its context (text and character offsets)"

    def outputs(self, labels):
        return 2  # a start and an end logit per token

    def loop_task(self, y, opts=None):
        from tlops.errors import ConfigError

        raise ConfigError("extractive QA trains through its own trainers (linear_probe, finetune); the shared loop's item-level "
                          "tasks do not apply")

    def _config(self, ctx, **over):
        from tlops.qa.model import QAConfig

        b = ctx.cfg.backbone
        return QAConfig(**window_settings(b.max_length), layers=tuple(b.layers), seed=ctx.cfg.seed, **over)

    def _fit(self, ctx, qcfg, mode: str, opts):
        """Train a QAModel on the run's train split on the shared loop (val selects; `opts`: the loop's options);
        (model, history rows, val_metrics, seconds, the loop's summary)."""
        from tlops.qa.model import QAModel
        from tlops.strategies.context import NOT_IN_FINGERPRINT, loop_summary, run_checkpoint_dir

        ds = ctx.dataset()
        train, val = ds.examples("train"), ds.examples("val")
        model = QAModel(ctx.backbone(), qcfg)
        s = ctx.cfg.strategy
        ckpt_dir = run_checkpoint_dir(ctx, {**s.model_dump(exclude=NOT_IN_FINGERPRINT), "qa": qcfg.__dict__ | {"layers": list(qcfg.layers)}},
                                      [_data_digest(ds)])
        cache = None
        if mode == "probe":  # the frozen backbone's token states of each window, through the feature cache (level `token`)
            from tlops.cache import FeatureCache

            cache = FeatureCache(ctx.cfg.features.cache_dir)
        t0 = time.perf_counter()
        model.fit(train, val, mode=mode, opts=opts, checkpoint_dir=ckpt_dir, callbacks=ctx.callbacks, cache=cache)
        seconds = time.perf_counter() - t0
        r = model.loop
        rows = r.state.history
        return model, rows, self.val_metrics(rows[r.state.best_epoch]), seconds, loop_summary(r, ckpt_dir)

    def _package(self, ctx, model, rows, val_metrics, seconds, loop):
        import torch

        from tlops.modules.heads import ProbeHead
        from tlops.package import save_package
        from tlops.records import PackageResult

        s = ctx.cfg.strategy
        head = ProbeHead(model.head.in_dim, 2, kind="linear")
        with torch.no_grad():
            head.mean.copy_(model.head.mean)
            head.std.copy_(model.head.std)
            head.net[0].weight.copy_(model.head.linear.weight)
            head.net[0].bias.copy_(model.head.linear.bias)
        summary = {**loop.model_dump(include={"best_epoch", "epochs_run", "stopped_early", "device", "precision"}),
                   **{f"val_{k}": v for k, v in val_metrics.items() if not math.isnan(v)}}
        package = save_package(ctx.out_dir / "package", model.backbone, head.eval(), [],
                               extra={"strategy": s.model_dump(), "seed": ctx.cfg.seed, **self.package_meta(ctx.features),
                                      META_KEY: self._meta(model), "fine_tune" if model.fine_tuned else "probe": summary})
        return PackageResult(strategy=s.name, package=str(package), history=rows, val_metrics=val_metrics, seconds=seconds, loop=loop)

    @staticmethod
    def _meta(model) -> dict:
        from dataclasses import asdict

        return {"config": {**asdict(model.cfg), "layers": list(model.cfg.layers)}, "null_threshold": model.null_threshold,
                "level": LEVEL}

    def probe_trainer(self, ctx):
        """linear_probe: the start/end head on the frozen backbone's token states (`QAModel.fit(mode="probe")`), on
        the shared loop with the probe's fixed settings (`QAModel.loop_options("probe")`)."""
        check_probe_settings(ctx.cfg.strategy)
        qcfg = self._config(ctx)
        return self._package(ctx, *self._fit(ctx, qcfg, "probe", None))

    def finetune_trainer(self, ctx):
        """finetune: backbone and start/end head together (`QAModel.fit(mode="finetune")`) on the shared loop with the
        run's finetune settings (epochs, LRs, schedule, patience, backbone groups, L2-SP, device, checkpoints)."""
        s = ctx.cfg.strategy
        check_finetune_settings(s)
        qcfg = self._config(ctx, epochs=s.epochs, batch_size=s.batch_size, lr=s.backbone_lr, head_lr=s.head_lr,
                            weight_decay=s.weight_decay, warmup=s.warmup_ratio, schedule=s.schedule)
        return self._package(ctx, *self._fit(ctx, qcfg, "finetune", s))

    # ---- evaluation --------------------------------------------------------------------------------------------

    def dataset_truth(self, ds, split):
        return [list(a) for a in ds.splits[split]["answers"]]

    def truth(self, y, labels):
        raise NotImplementedError("extractive QA's truth is the dataset's answers (dataset_truth)")

    def test_outputs(self, features, result, dataset):
        """(gold answer texts per test question, the package's answer per question)."""
        from tlops.package import Predictor

        ds = dataset()
        answers = self.predict(Predictor(result.package), ds.inputs("test"))
        return self.dataset_truth(ds, "test"), [a["answer"] for a in answers]

    def scores(self, y_true, y_pred) -> dict[str, float]:
        from tlops.qa.metrics import squad_scores

        return squad_scores({str(i): list(g) for i, g in enumerate(y_true)}, {str(i): p for i, p in enumerate(y_pred)})

    def metrics(self, y_true, y_pred, labels):
        s = self.scores(y_true, y_pred)
        out = {"f1": s["f1"], "exact_match": s["exact"]}
        if "NoAns_f1" in s:  # SQuAD v2.0: answerable and unanswerable questions apart
            out |= {"has_answer_f1": s["HasAns_f1"], "has_answer_exact_match": s["HasAns_exact"], "no_answer_accuracy": s["NoAns_exact"]}
        return out

    def report_and_plots(self, y_true, y_pred, labels, out_dir):
        from tlops.qa.metrics import question_scores

        per = [question_scores(g, p) for g, p in zip(y_true, y_pred)]
        buckets: dict[str, list] = {}
        for g, (em, f1) in zip(y_true, per):
            words = len(g[0].split()) if g else 0
            key = "no answer" if not g else "1 word" if words == 1 else "2 words" if words == 2 else "3-5 words" if words <= 5 else "6+ words"
            buckets.setdefault(key, []).append((em, f1))
        by_length = {k: {"questions": len(v), "exact_match": float(np.mean([e for e, _ in v])), "f1": float(np.mean([f for _, f in v]))}
                     for k, v in sorted(buckets.items(), key=lambda kv: _ORDER.index(kv[0]))}
        wrong = [{"gold": g, "predicted": p, "f1": round(f1, 3)} for g, p, (em, f1) in zip(y_true, y_pred, per) if not em][:25]
        report = {"overall": self.metrics(y_true, y_pred, labels) | {"questions": len(y_true)}, "by_gold_answer_length": by_length,
                  "missed_examples": wrong}
        return report, "qa_report.json", [_by_length_png(by_length, Path(out_dir) / "f1_by_answer_length.png")]

    # ---- package and predict -----------------------------------------------------------------------------------

    def score_package(self, meta, fetch, features, dataset):
        """The champion package's answers to the test questions (its own backbone and windows)."""
        from tlops.package import Predictor

        answers = self.predict(Predictor(fetch("")), dataset.inputs("test"))
        return self.dataset_truth(dataset, "test"), [a["answer"] for a in answers], "champion package on the test questions"

    def package_meta(self, features) -> dict:
        return {"task": NAME}

    def prediction_inputs(self, predictor, items) -> list[dict]:
        """Each row a mapping with a non-empty `question` and `context` string (no NUL); other keys are ignored."""
        from tlops.errors import DataError
        from tlops.support_set import check_value

        rows = []
        for i, r in enumerate(items, start=1):
            if not isinstance(r, Mapping):
                raise DataError(f"input row {i} is a {type(r).__name__} ({str(r)[:40]!r}); an extractive QA model takes rows with "
                                'a question and a context, e.g. {"question": "Who ...?", "context": "..."}')
            rows.append({k: check_value(r.get(k), f"input row {i} {k}") for k in COLUMNS})
        return rows

    def predict(self, predictor, items) -> list[dict]:
        """Per row, the answer: {"answer", "start", "end", "score"} (`context[start:end] == answer`; "" and -1, -1 when a
        SQuAD v2.0 model abstains; score: the span's probability among the spans it weighed)."""
        if getattr(predictor, "_qa", None) is None:
            predictor._qa = _Answerer(predictor)
        return predictor._qa.predict(list(items))


# settings the QA trainers do not apply, with the value that they do apply
UNSUPPORTED_FINETUNE = {"head": "linear", "lp_ft": False}
UNSUPPORTED_PROBE = {"head": "logreg", "C": 1.0, "max_iter": 1000}


def _refuse(s, unsupported: dict, what: str) -> None:
    from tlops.errors import ConfigError

    odd = {k: getattr(s, k) for k, v in unsupported.items() if getattr(s, k, v) != v}
    if odd:
        raise ConfigError(f"{s.name} on extractive_qa data does not apply {', '.join(f'strategy.{k}: {v}' for k, v in odd.items())} "
                          f"({what}); remove them or set {', '.join(f'{k}: {unsupported[k]}' for k in odd)}")


def _data_digest(ds) -> np.ndarray:
    """The train and val questions, contexts and answers as bytes (a checkpoint folder is this data's only)."""
    import hashlib
    import json

    h = hashlib.sha256()
    for split in ("train", "val"):
        df = ds.splits[split]
        h.update(json.dumps([list(map(str, df[c])) for c in ("id", "question", "context", "answers", "answer_starts", "is_impossible")]).encode())
    return np.frombuffer(h.digest(), dtype=np.uint8)


def check_finetune_settings(s) -> None:
    """Refuse finetune settings the QA trainer would otherwise ignore."""
    _refuse(s, UNSUPPORTED_FINETUNE, "it trains a linear start/end head with the backbone, from scratch")


def check_probe_settings(s) -> None:
    """Refuse linear_probe settings the QA probe would otherwise ignore."""
    _refuse(s, UNSUPPORTED_PROBE, "its start/end head trains by AdamW, 3e-3, 30 epochs, the best val F1 kept")


_ORDER = ("no answer", "1 word", "2 words", "3-5 words", "6+ words")


def _by_length_png(by_length: dict, path: Path) -> Path:
    from tlops.evaluate import _plt

    plt = _plt()
    keys = list(by_length) or ["(none)"]
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(keys) + 2), 3.5))
    f1 = [by_length[k]["f1"] if k in by_length else 0.0 for k in keys]
    ax.bar(keys, f1, color="#4c72b0")
    for i, k in enumerate(keys):
        if k in by_length:
            ax.text(i, f1[i] + 0.01, f"{f1[i]:.2f}\n({by_length[k]['questions']})", ha="center", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("F1 (test)")
    ax.set_xlabel("gold answer length")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
