"""Token classification (named-entity recognition): a tag per word, entities as spans.

Data: dataset.yaml `task: token_classification` and per split a CoNLL column file (`train.conll`, optional
`val.conll` (else carved from train), `test.conll`) or JSON lines (`train.jsonl`), read and checked by
`tlops.ner.files` (IOB2/IOBES; its file/line problems become the validation report's failed checks, GX then checks
each split has sentences and that val/test tags are in train's tag set).

Features: the feature *level* is the word. With a frozen backbone, token classification is item classification over
word vectors (the first sub-token's state, `tlops.ner.model.word_states`), so the features step caches one vector per
word (cache key: the sentence and the word's index, in a namespace of the backbone identity plus `level: word`) and
saves `x (words, D)`, `y` (tag ids) and per-sentence `offsets` (and `seen`: the word was within max_length) beside
them; linear_probe's logistic-regression head fits as is. Validation and test regroup the words into sentences,
decode the most probable *valid* tag sequence (Viterbi) and score entities with seqeval (strict): entity F1 selects
(higher is better) and gates by default; precision, recall and token accuracy are gate metrics too.

Fine-tuning (`finetune`) trains the backbone with the token loss on the shared training loop
(`tlops.ner.training.fit_tokens`, through `finetune_trainer`): per-epoch val rows, the best epoch by val entity F1 kept
(its checkpoint too), early-stopping patience, resume, device and precision, backbone groups and L2-SP as for any task.

The package is the backbone export + a linear head over word states + the tag list (`labels`) + the scheme
(`token_classification.scheme` in the package meta); predict takes raw strings and returns, per string, a list of
entity spans `{"start", "end", "type", "text", "score"}` with character offsets into that string.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlops.task_types.base import TaskType
from tlops.task_types.registry import register_task_type

NAME = "token_classification"
LEVEL = "word"  # the feature level: one vector per word (its first sub-token's state)
META_KEY = NAME  # the package meta's section: {"scheme": ...}


def _ner_dataset_class():
    from tlops.data.dataset import Dataset

    @dataclass
    class TokenDataset(Dataset):
        """A token-classification dataset as the pipeline sees it: one row per sentence (`text`: its words joined by
        spaces, `tokens`, `tags`); `labels` is the tag set (scheme tags of train's entity types, 'O' first)."""

        scheme: str = "IOB2"
        tag_list: list = field(default_factory=list)
        problems: list = field(default_factory=list)  # the reader's file/line problems (validation reports them)

        @property
        def labels(self) -> list[str]:
            return list(self.tag_list)

        def sentences(self, split: str):
            from tlops.ner.files import Sentence

            df = self.splits[split]
            lines = df.attrs.get("lines", ())
            return [Sentence(list(t), list(g), lines[i] if i < len(lines) else 0)
                    for i, (t, g) in enumerate(zip(df["tokens"], df["tags"]))]

        def y(self, split: str) -> np.ndarray:
            index = {t: i for i, t in enumerate(self.tag_list)}
            return np.array([index[t] for tags in self.splits[split]["tags"] for t in tags], dtype=np.int64)

        def inputs(self, split: str) -> list[str]:
            return self.splits[split]["text"].tolist()

    return TokenDataset


def _frame(sentences, source: str):
    import pandas as pd

    df = pd.DataFrame({"text": [" ".join(s.tokens) for s in sentences], "tokens": [s.tokens for s in sentences],
                       "tags": [s.tags for s in sentences]})
    df.attrs["source"] = source
    df.attrs["lines"] = tuple(s.line for s in sentences)
    return df


def _scheme_of(labels) -> str:
    return "IOBES" if any(str(t)[:2] in ("E-", "S-") for t in labels) else "IOB2"


def regroup(values, offsets: np.ndarray) -> list:
    """Per-word values -> per-sentence lists (`offsets`: the sentences' start rows, and the total last)."""
    return [list(values[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]


def decode(log_probs: np.ndarray, offsets: np.ndarray, seen: np.ndarray | None, tags: list[str], scheme: str):
    """(per sentence tags, per sentence per-word scores): the most probable valid sequence of each sentence; a word the
    backbone did not see (past max_length) is 'O'."""
    from tlops.ner.model import transition_masks, viterbi

    masks = transition_masks(tags, scheme)
    o = tags.index("O")
    out_tags, out_scores = [], []
    for i in range(len(offsets) - 1):
        lp = log_probs[offsets[i]:offsets[i + 1]].copy()
        if seen is not None:
            unseen = ~seen[offsets[i]:offsets[i + 1]].astype(bool)
            lp[unseen] = -1e9
            lp[unseen, o] = 0.0
        ids = viterbi(lp, masks)
        out_tags.append([tags[k] for k in ids])
        out_scores.append([float(math.exp(lp[t, k])) for t, k in enumerate(ids)])
    return out_tags, out_scores


def _log_probs(head, x: np.ndarray) -> np.ndarray:
    import torch

    head.eval()
    with torch.inference_mode():
        return torch.log_softmax(head(torch.from_numpy(np.asarray(x, dtype=np.float32))), dim=-1).numpy()


def word_vectors(backbone, token_lists, batch_size: int = 32, progress: bool = False, label: str = "features"):
    """(x (words, D) float32, seen (words,) bool): first-sub-token states of every word of every sentence, in order."""
    import torch

    from tlops.ner.model import align, word_states, word_tokenizer
    from tlops.ner.words import normal_token

    d = backbone.num_features
    if not token_lists:
        return np.zeros((0, d), np.float32), np.zeros(0, bool)
    aligned = align(word_tokenizer(backbone), [[normal_token(w) for w in s] for s in token_lists], backbone.max_length)
    backbone.model.eval()
    with torch.inference_mode():
        states = word_states(backbone, aligned, batch_size)
    x = np.concatenate([s.float().numpy() for s in states]) if states else np.zeros((0, d), np.float32)
    seen = np.array([j >= 0 for f in aligned.first for j in f], dtype=bool)
    return x.astype(np.float32, copy=False), seen


class _NerPredictor:
    """Raw strings -> entity spans with a package's backbone and linear word head."""

    def __init__(self, backbone, head, tags: list[str], scheme: str, batch_size: int = 32):
        self.backbone, self.head, self.tags, self.scheme, self.batch_size = backbone, head, list(tags), scheme, batch_size

    def predict_tags(self, token_lists):
        keep = [i for i, s in enumerate(token_lists) if s]
        x, seen = word_vectors(self.backbone, [token_lists[i] for i in keep], self.batch_size)
        offsets = np.concatenate([[0], np.cumsum([len(token_lists[i]) for i in keep])]).astype(np.int64)
        got_tags, got_scores = decode(_log_probs(self.head, x), offsets, seen, self.tags, self.scheme)
        tags, scores = [[] for _ in token_lists], [[] for _ in token_lists]
        for i, t, s in zip(keep, got_tags, got_scores):
            tags[i], scores[i] = t, s
        return tags, scores

    def predict(self, texts) -> list[list[dict]]:
        from tlops.ner.tags import spans
        from tlops.ner.words import split_words

        words = [split_words(t) for t in texts]
        tags, scores = self.predict_tags([[w.text for w in ws] for ws in words])
        out = []
        for text, ws, tg, sc in zip(texts, words, tags, scores):
            ents = []
            for s in spans(tg):
                start, end = ws[s.start].start, ws[s.end - 1].end
                ents.append({"start": int(start), "end": int(end), "type": s.type, "text": text[start:end],
                             "score": float(np.mean(sc[s.start:s.end]))})
            out.append(ents)
        return out


@register_task_type
class TokenClassification(TaskType):
    name = NAME
    gate_metrics = ("f1", "precision", "recall", "token_accuracy")
    default_gate_metric = "f1"
    higher_is_better = {"f1": True, "precision": True, "recall": True, "token_accuracy": True}
    heads = ("logreg",)
    selection_metric = "f1"
    val_metric_names = ("f1", "precision", "recall", "token_accuracy")
    few_shot_plot = "f1_vs_shots.png"
    class_probabilities = False
    feature_level = LEVEL
    starter_prefix = "ner"  # `tlops init` starters: text_ner_linear_probe, text_ner_finetune

    def recognise(self, root):
        """A folder with train.conll or train.jsonl (and no dataset.yaml) is a token-classification folder of texts."""
        return "text" if any((Path(root) / f).is_file() for f in ("train.conll", "train.jsonl")) else None

    def init_summary(self, ds):
        """Entities per type in each split (a B-/S- tag starts one), and their types."""
        from collections import Counter

        counts = {s: Counter(t[2:] for tags in df["tags"] for t in tags if t[:2] in ("B-", "S-")) for s, df in ds.splits.items()}
        types = sorted(counts["train"])
        return counts, f"entities of {len(types)} types ({', '.join(types)}; {getattr(ds, 'scheme', 'IOB2')} tags)"

    # ---- data ------------------------------------------------------------------------------------------------

    def read_dataset(self, root, meta, modality, name, seed, val_fraction):
        """The folder's CoNLL / JSON-lines splits (`tlops.ner.files`); the reader's problems are kept for validation
        (an empty dataset then), not raised, so `tlops validate` and `tlops run` report them as failed checks."""
        from tlops.errors import DataError
        from tlops.ner.files import NerDataError, read_ner_dataset

        cls = _ner_dataset_class()
        try:
            nd = read_ner_dataset(root, seed=seed, val_fraction=val_fraction)
        except NerDataError as e:
            empty = {s: _frame([], str(root / f"{s}.conll")) for s in ("train", "val", "test")}
            return cls(root=Path(root), modality=modality, name=name, splits=empty, val_carved=False, meta=meta,
                       problems=list(e.problems))
        except DataError as e:
            empty = {s: _frame([], str(root / f"{s}.conll")) for s in ("train", "val", "test")}
            return cls(root=Path(root), modality=modality, name=name, splits=empty, val_carved=False, meta=meta, problems=[str(e)])
        splits = {s: _frame(nd.splits[s], str(nd.sources.get(s, nd.sources["train"]))) for s in ("train", "val", "test")}
        return cls(root=Path(root), modality=modality, name=name, splits=splits, val_carved=nd.val_carved, meta=meta,
                   scheme=nd.scheme, tag_list=nd.tags)

    def feature_meta(self, ds) -> dict:
        return {"scheme": getattr(ds, "scheme", "IOB2"), "level": LEVEL}

    # ---- validation ------------------------------------------------------------------------------------------

    def reader_checks(self, ds) -> list:
        """The reader's problems as failed checks, one per problem, with its file and line."""
        import re

        from tlops.records import Check

        checks = []
        for p in getattr(ds, "problems", []):
            m = re.match(r"(?P<file>.+?)(?: line (?P<line>\d+))?(?:, token \d+ \(.*?\))?: (?P<what>.*)$", p, re.DOTALL)
            file, line, what = (m["file"], m["line"], m["what"]) if m else (str(ds.root), None, p)
            rule, _, fix = what.partition("; ")
            checks.append(Check(split=_split_of(file), file=file, rule=f"token-classification file: {rule}"[:300],
                                expectation="tlops_ner_reader", success=False, unexpected_count=1,
                                rows=[int(line)] if line else [], values=[], observed=None if line else what[:200],
                                fix=fix or "see the rule"))
        return checks

    def validation_rules(self, ds, cfg, frame_of) -> list:
        """GX rules: each split has at least one sentence, and every val/test tag is one of train's tags."""
        import great_expectations.expectations as gxe

        from tlops.validation import Rule

        if getattr(ds, "problems", None):
            return []  # the reader's checks already failed: nothing was read to check further
        rules = []
        for split in ("train", "val", "test"):
            if not (split == "val" and ds.val_carved):
                rules.append(Rule(split, "rows", gxe.ExpectTableRowCountToBeBetween(min_value=1), "at least one sentence",
                                  f"add sentences to the {split} file"))
        for split in ("val", "test"):
            rules.append(Rule(split, "tokens", gxe.ExpectColumnValuesToBeInSet(column="tag", value_set=list(ds.labels)),
                              "tags in train's tag set", "tag these words O, or add training sentences with their entity types"))
        return rules

    def validation_frame(self, ds, split, kind):
        import pandas as pd

        df = ds.splits[split]
        if kind == "rows":
            return df[["text"]].reset_index(drop=True)
        lines = df.attrs.get("lines", ())
        rows = [(t, g, (lines[i] + j) if i < len(lines) else 0) for i, (ts, gs) in enumerate(zip(df["tokens"], df["tags"]))
                for j, (t, g) in enumerate(zip(ts, gs))]
        return pd.DataFrame(rows, columns=["token", "tag", "line"])

    def validation_where(self, ds, split, kind, frame, idx):
        source = ds.splits[split].attrs.get("source", f"{split}.conll")
        if kind == "tokens":
            return source, [int(frame.loc[i, "line"]) for i in idx]
        lines = ds.splits[split].attrs.get("lines", ())
        return source, [lines[i] if i < len(lines) else i + 1 for i in idx]

    # ---- features --------------------------------------------------------------------------------------------

    def feature_identity(self, identity: dict) -> dict:
        return {**identity, "level": LEVEL}

    def split_features(self, backbone, ds, split, cache, batch_size=64, progress=False, identity=None, label="features"):
        """(x (words, D), y (words,) tag ids, {"offsets", "seen"}, CacheStats): word vectors through the cache, one
        entry per word keyed by its sentence and index (a sentence is embedded once, when any of its words misses)."""
        from tlops.cache import CacheStats, item_hash, namespace_of, row_key
        from tlops.progress import note

        identity = identity or self.feature_identity(backbone.identity())
        ns = namespace_of(identity)
        sentences = ds.splits[split]["tokens"].tolist()
        t0 = time.perf_counter()
        stats = CacheStats()
        base = [row_key(item_hash(json.dumps(s, ensure_ascii=False)), "")[:-1] for s in sentences]  # "<base>:<row>" fits a key
        keys = [f"{b}:{j}" for b, s in zip(base, sentences) for j in range(len(s))]
        seen_keys = [f"{b}:seen" for b in base]
        found = cache.lookup(ns, keys + seen_keys, stats) if keys else {}
        todo = [i for i, (b, s) in enumerate(zip(base, sentences))
                if f"{b}:seen" not in found or any(f"{b}:{j}" not in found for j in range(len(s)))]
        todo = list({base[i]: i for i in reversed(todo)}.values())[::-1]  # one per distinct sentence
        stats.hits, stats.misses = len(sentences) - len(todo), len(todo)
        if todo:
            x, seen = word_vectors(backbone, [sentences[i] for i in todo], batch_size, progress, label)
            new_keys, rows, k = [], [], 0
            for i in todo:
                n = len(sentences[i])
                new_keys += [f"{base[i]}:{j}" for j in range(n)]
                rows.append(x[k:k + n])
                found.update({f"{base[i]}:{j}": x[k + j] for j in range(n)})
                # whether each word was seen (within max_length), stored as one padded vector per sentence
                mask = np.zeros(backbone.num_features, np.float32)
                mask[:min(n, len(mask))] = seen[k:k + n][:len(mask)]
                found[f"{base[i]}:seen"] = mask
                new_keys.append(f"{base[i]}:seen")
                rows.append(mask[None])
                k += n
            cache.put(ns, new_keys, np.concatenate(rows).astype(np.float32), meta=identity)
        if progress:
            note(f"{label}: {len(sentences)} sentences, {len(keys)} words, {stats.hits} sentences from the cache, "
                 f"{stats.misses} embedded ({time.perf_counter() - t0:.1f} s)")
        d = backbone.num_features
        x = np.stack([found[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, d), np.float32)
        seen = np.array([bool(found[f"{b}:seen"][j]) if j < d else False for b, s in zip(base, sentences) for j in range(len(s))],
                        dtype=bool)
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype(np.int64)
        return x, ds.y(split), {"offsets": offsets, "seen": seen}, stats

    # ---- training --------------------------------------------------------------------------------------------

    def predicts(self, labels):
        types = sorted({t[2:] for t in labels if t != "O"})
        return f"entity spans of {len(types)} types ({', '.join(types)}) in raw text, with character offsets"

    def outputs(self, labels):
        return len(labels)

    def loop_task(self, y, opts=None):
        from tlops.errors import ConfigError

        raise ConfigError("token classification trains through its own trainers (linear_probe, finetune); the shared loop's "
                          "item-level tasks do not apply")

    def scores(self, truth, predicted, labels):
        from tlops.ner.metrics import entity_scores

        return entity_scores(truth, predicted, _scheme_of(labels))

    def _named(self, s) -> dict[str, float]:
        return {"f1": s.f1, "precision": s.precision, "recall": s.recall, "token_accuracy": s.accuracy}

    def probe(self, feats, cfg, seed):
        """linear_probe: logistic regression on the train words' vectors (`tlops.training.probe.fit_logreg`, so the
        head is a packaged `ProbeHead`), scored on val as entities (Viterbi-valid decoding, seqeval strict)."""
        from tlops.training.probe import fit_logreg

        x, y = feats.arrays("train")
        xv, yv = feats.arrays("val")
        tags = list(feats.labels)
        result = fit_logreg(x, y, xv, yv, len(tags), cfg, seed)
        extra = feats.extras("val")
        pred, _ = decode(_log_probs(result.head, xv), extra["offsets"], extra.get("seen"), tags, self._scheme(feats))
        truth = regroup([tags[i] for i in yv], extra["offsets"])
        result.val_metrics = self._named(self.scores(truth, pred, tags))
        result.history = [{"epoch": 0, **{f"val_{k}": v for k, v in result.val_metrics.items()},
                           "train_iters": result.history[0].get("train_iters", 0)}]
        result.size_curve = []
        return result

    def _scheme(self, feats) -> str:
        return (feats.task_meta or {}).get("scheme") or _scheme_of(feats.labels)

    def finetune_trainer(self, ctx):
        """finetune: the backbone and a linear token head on the shared training loop (`tlops.ner.training.fit_tokens`:
        cross-entropy on each word's first sub-token; per-epoch val entity scores, the epoch with the best val entity
        F1 kept, early-stopping patience, checkpoints and resume, device, backbone groups and L2-SP as for any task),
        written as a package (the fine-tuned backbone + the head)."""
        from tlops.ner.training import fit_tokens
        from tlops.strategies.context import NOT_IN_FINGERPRINT, run_checkpoint_dir

        cfg, feats, s = ctx.cfg, ctx.features, ctx.cfg.strategy
        check_finetune_settings(s)
        ds = ctx.dataset()
        tags, scheme = list(feats.labels), self._scheme(feats)
        backbone = ctx.backbone()
        x, y = feats.arrays("train")  # the cached word vectors and tag ids: the data's part of the checkpoint folder
        xv, yv = feats.arrays("val")
        ckpt_dir = run_checkpoint_dir(ctx, s.model_dump(exclude=NOT_IN_FINGERPRINT), [x, y, xv, yv])
        t0 = time.perf_counter()
        r, head = fit_tokens(backbone, ds.sentences("train"), ds.sentences("val"), tags, scheme, s, seed=cfg.seed,
                             checkpoint_dir=ckpt_dir, callbacks=ctx.callbacks)
        return self._loop_package(ctx, r, ckpt_dir, backbone, head.eval(), time.perf_counter() - t0)

    def _loop_package(self, ctx, r, ckpt_dir, backbone, head, seconds):
        from tlops.package import save_package
        from tlops.records import PackageResult
        from tlops.strategies.context import loop_summary

        cfg, feats, s = ctx.cfg, ctx.features, ctx.cfg.strategy
        loop = loop_summary(r, ckpt_dir)
        val_metrics = self.val_metrics(r.state.history[r.state.best_epoch])
        summary = {**loop.model_dump(include={"best_epoch", "epochs_run", "stopped_early", "device", "precision"}),
                   **{f"val_{k}": v for k, v in val_metrics.items() if not math.isnan(v)}}
        package = save_package(ctx.out_dir / "package", backbone, head, list(feats.labels),
                               extra={"strategy": s.model_dump(), "seed": cfg.seed, **self.package_meta(feats), "fine_tune": summary})
        return PackageResult(strategy=s.name, package=str(package), history=r.state.history, val_metrics=val_metrics,
                             seconds=seconds, loop=loop)

    # ---- evaluation --------------------------------------------------------------------------------------------

    def test_outputs(self, features, result, dataset):
        """(true tag sequences, predicted ones) of the test sentences: the head on the cached word vectors, or the
        fine-tuned package on the test sentences' words."""
        from tlops.modules.heads import load_head
        from tlops.records import HeadResult

        tags = list(features.labels)
        _, y = features.arrays("test")
        extra = features.extras("test")
        truth = regroup([tags[i] for i in y], extra["offsets"])
        if isinstance(result, HeadResult):
            x, _ = features.arrays("test")
            pred, _ = decode(_log_probs(load_head(result), x), extra["offsets"], extra.get("seen"), tags, self._scheme(features))
        else:
            from tlops.package import Predictor

            token_lists = dataset().splits["test"]["tokens"].tolist()
            pred, _ = self.load_predictor(Predictor(result.package)).predict_tags(token_lists)
        return truth, pred

    def metrics(self, y_true, y_pred, labels):
        return self._named(self.scores(y_true, y_pred, labels))

    def report_and_plots(self, y_true, y_pred, labels, out_dir):
        s = self.scores(y_true, y_pred, labels)
        report = {"overall": {"precision": s.precision, "recall": s.recall, "f1": s.f1, "token_accuracy": s.accuracy,
                              "entities": s.support, "predicted": s.predicted},
                  "per_type": {t: {"precision": v.precision, "recall": v.recall, "f1": v.f1, "support": v.support}
                               for t, v in s.per_type.items()}}
        return report, "entity_report.json", [_per_type_png(s, Path(out_dir) / "entity_f1_per_type.png")]

    # ---- package and predict -----------------------------------------------------------------------------------

    def score_package(self, meta, fetch, features, dataset):
        """The champion's tags on the test sentences: its head on this run's cached word vectors when they are its
        backbone's, else the package on the test sentences' words."""
        from tlops.modules.heads import ProbeHead
        from tlops.package import Predictor

        truth = dataset.splits["test"]["tags"].tolist()
        tags = list(meta["labels"])
        scheme = (meta.get(META_KEY) or {}).get("scheme") or _scheme_of(tags)
        if features is not None and self.feature_identity(meta["backbone"]["identity"]) == features.identity:
            head = ProbeHead.load(meta["head"], fetch("head.safetensors"))
            x, _ = features.arrays("test")
            extra = features.extras("test")
            pred, _ = decode(_log_probs(head, x), extra["offsets"], extra.get("seen"), tags, scheme)
            return truth, pred, "champion head on this run's cached test word vectors (same backbone identity)"
        pred, _ = self.load_predictor(Predictor(fetch(""))).predict_tags(dataset.splits["test"]["tokens"].tolist())
        return truth, pred, "champion package on the test sentences' words (different backbone)"

    def package_meta(self, features) -> dict:
        return {"task": NAME, META_KEY: {"scheme": self._scheme(features), "level": LEVEL}}

    def load_predictor(self, predictor):
        return _NerPredictor(predictor.backbone, predictor.head, predictor.labels,
                             (predictor.meta.get(META_KEY) or {}).get("scheme") or _scheme_of(predictor.labels), predictor.batch_size)

    def predict(self, predictor, items) -> list:
        """Per raw string, its entity spans: [{"start", "end", "type", "text", "score"}] (text[start:end] == "text")."""
        if getattr(predictor, "_ner", None) is None:
            predictor._ner = self.load_predictor(predictor)
        return predictor._ner.predict(list(items))


# finetune settings the token trainer does not apply yet, with the value that it does apply
UNSUPPORTED_FINETUNE = {"head": "linear", "lp_ft": False}


def check_finetune_settings(s) -> None:
    """Refuse finetune settings the token trainer would otherwise ignore (a linear token head, trained from scratch with
    the backbone: no MLP head, no LP-FT probe first)."""
    from tlops.errors import ConfigError

    odd = {k: getattr(s, k) for k, v in UNSUPPORTED_FINETUNE.items() if getattr(s, k, v) != v}
    if odd:
        raise ConfigError(f"finetune on token_classification data does not apply {', '.join(f'strategy.{k}: {v}' for k, v in odd.items())} "
                          f"yet (it trains a linear token head with the backbone); remove them or set "
                          f"{', '.join(f'{k}: {UNSUPPORTED_FINETUNE[k]}' for k in odd)}")


def _split_of(file: str) -> str:
    stem = Path(file).stem
    return stem if stem in ("train", "val", "test") else "train"


def _per_type_png(s, path: Path) -> Path:
    from tlops.evaluate import _plt

    plt = _plt()
    types = list(s.per_type)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(types) + 2), 3.5))
    ax.bar(types or ["(none)"], [s.per_type[t].f1 for t in types] or [0.0], color="#4c72b0")
    for i, t in enumerate(types):
        ax.text(i, s.per_type[t].f1 + 0.01, f"{s.per_type[t].f1:.2f}\n({s.per_type[t].support})", ha="center", fontsize=8)
    ax.axhline(s.f1, color="#c44e52", ls="--", label=f"overall F1 {s.f1:.3f}")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("entity F1 (test)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
