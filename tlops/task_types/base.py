"""What a task type owns: what the model predicts (classes, a number, ...) selects the head's outputs, the probe
heads and how they are fitted, the training loop's loss and validation metrics with the selection metric and its
direction, the test metrics, report and plots, and which gate metrics apply with their direction. The pipeline
asks `task_type(name)`; it never branches on the task itself. (Named task *types*: `tasks/` is the Prefect task
package.) A task type module registers its class with `@register_task_type` (`tlops.task_types.registry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

if TYPE_CHECKING:
    from tlops.data.dataset import Dataset
    from tlops.training.probe import ProbeResult


def train_csv_header(root) -> list[str] | None:
    """The header cells of `root`/train.csv as written, for a task type's `recognise`; None when the file is missing or
    unreadable."""
    import csv

    f = Path(root) / "train.csv"
    if not f.is_file():
        return None
    try:
        with open(f, encoding="utf-8", newline="") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return None


class TaskType:
    name: ClassVar[str] = ""
    gate_metrics: ClassVar[tuple[str, ...]] = ()  # registry.metric must be one of these (test metrics)
    default_gate_metric: ClassVar[str] = ""
    higher_is_better: ClassVar[dict[str, bool]] = {}  # each gate / selection metric: whether higher is better
    heads: ClassVar[tuple[str, ...]] = ()  # linear_probe heads that fit this task; the first is the linear one (LP-FT's)
    selection_metric: ClassVar[str] = ""  # the validation metric (`val_<name>` in an epoch row) that selects the kept model
    val_metric_names: ClassVar[tuple[str, ...]] = ()  # a trained model's `val_metrics` (selection metric first)
    few_shot_plot: ClassVar[str] = ""  # file name of the few-shot evaluation's metric-vs-shots plot
    starters: ClassVar[dict[str, str]] = {}  # `tlops init` starter kind -> its starter's name for this task ({m}: the modality)
    starter_prefix: ClassVar[str] = ""  # starters named `<modality>_<prefix>_<kind>` (a task type with its own starter set)
    class_probabilities: ClassVar[bool] = False  # the head's outputs are class logits (what CDAN and the SND/IM/BNM criteria read)
    numeric_target: ClassVar[bool] = False  # the target column holds numbers: no class list, y is float targets, dataset.yaml
    # may name target/bounds/group (regression)
    feature_level: ClassVar[str] = "item"  # what one cached feature row is: an input ("item", pooled) or a word ("word")
    classic_baseline_head: ClassVar[str] = ""  # "logreg"/"ridge": the trivial baseline of `tlops.classic_baseline` scores this
    # task beside each probe and fine-tune; "": it has none (NER and QA score their own lexical baselines)
    embeds_in_features_step: ClassVar[bool] = True  # False: the trainers read the backbone themselves (QA windows, detection
    # and segmentation maps, speech frames); the features step saves one empty row per input and its targets

    @property
    def selection_higher_is_better(self) -> bool:
        return self.higher_is_better[self.selection_metric]

    @property
    def selection_key(self) -> str:
        """The epoch row's key of the selection metric (`val_macro_f1`, `val_mae`): the name it is logged under."""
        return f"val_{self.selection_metric}"

    def classic_baseline(self, ds: Dataset, seed: int = 0):
        """The classic baseline (hand-made features of the raw inputs + a linear model, chosen on val) scored on `ds`'s
        test split with this task's metrics (`tlops.classic_baseline.ClassicBaseline`); None when the task has none."""
        if not self.classic_baseline_head:
            return None
        from tlops.classic_baseline import fit_classic

        splits = ("train", "val", "test")
        labels = ds.labels
        return fit_classic(ds.modality, {s: ds.inputs(s) for s in splits}, {s: self.dataset_truth(ds, s) for s in splits},
                           numeric=self.numeric_target, metrics=lambda t, p: self.metrics(t, p, labels),
                           selection=self.selection_metric, higher_is_better=self.selection_higher_is_better, seed=seed)

    def val_metrics(self, row: dict[str, float]) -> dict[str, float]:
        """The kept model's validation metrics from its epoch row (`val_<name>` keys), selection metric first."""
        return {k: float(row[f"val_{k}"]) for k in self.val_metric_names}

    def starter_name(self, modality: str, kind: str) -> str:
        """The starter config (`tlops/starters/<name>.yaml`) `tlops init --strategy <kind>` writes for this task type; a kind
        without its own starter here uses the classification one (the init step overrides what differs)."""
        prefix = f"{self.starter_prefix}_" if self.starter_prefix else ""
        return self.starters.get(kind, "{m}_" + prefix + kind).format(m=modality)

    def predicts(self, labels: Sequence[str]) -> str:
        """What the model predicts, in words (the model card's task line)."""
        raise NotImplementedError

    def outputs(self, labels: Sequence[str]) -> int:
        """Width of the head's output layer."""
        raise NotImplementedError

    def loop_task(self, y: np.ndarray, opts: Any = None):
        """How the training loop scores this task (`tlops.training.objectives`), fitted to the train targets `y` and
        the strategy options `opts`."""
        raise NotImplementedError

    def fit_probe(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, n_classes: int, cfg: Any, seed: int,
                  scaler=None, curve: bool = True) -> ProbeResult:
        """The configured linear_probe head (`cfg.head`) on frozen features, selected on val (`tlops.training.probe`)."""
        raise NotImplementedError

    def truth(self, y: np.ndarray, labels: Sequence[str]) -> list:
        """The cached `y` of a split as what predictions are compared with."""
        raise NotImplementedError

    def dataset_truth(self, ds: Dataset, split: str) -> list:
        raise NotImplementedError

    def metrics(self, y_true: list, y_pred: list, labels: Sequence[str]) -> dict[str, float]:
        raise NotImplementedError

    def report_and_plots(self, y_true: list, y_pred: list, labels: Sequence[str], out_dir: Path) -> tuple[dict, str, list[Path]]:
        """(report, its file name, plots) of the test split."""
        raise NotImplementedError

    # ---- hooks with defaults: the CSV contract, one pooled vector and one target per row (classification, regression) ----
    # A task type with other files or another feature level (token_classification) overrides them; the pipeline
    # calls them and never branches on the task's name.

    def read_dataset(self, root: Path, meta: dict, modality: str, name: str, seed: int, val_fraction: float) -> Dataset | None:
        """The dataset folder read as this task's files (`tlops.data.dataset.load_dataset` calls it once dataset.yaml
        is read); None: the CSV contract (train.csv, [val.csv], test.csv)."""
        return None

    def reader_checks(self, ds: Dataset) -> list:
        """Failed `Check`s for what reading the files found (file and line), put first in the validation report."""
        return []

    def raise_reader_problems(self, ds: Dataset) -> None:
        """For a command that needs the files readable before anything else (`tlops init`, `tlops evaluate`): the reader's
        first problem as one DataError with its file, line and fix (and how many more `tlops validate` would list)."""
        failed = [c for c in self.reader_checks(ds) if not c.success]
        if failed:
            from tlops.errors import DataError

            c = failed[0]
            at = f" line {c.rows[0]}" if c.rows else ""
            more = f" (and {len(failed) - 1} more problem(s): `tlops validate` lists them)" if len(failed) > 1 else ""
            raise DataError(f"{c.file}{at}: {c.rule}; {c.fix}{more}")

    def validation_rules(self, ds: Dataset, cfg: Any, frame_of) -> list | None:
        """This task's GX rules (`tlops.validation.Rule`), on frames from `validation_frame`; None: the CSV rules."""
        return None

    def validation_frame(self, ds: Dataset, split: str, kind: str):
        """The DataFrame a rule of `kind` checks (only asked when `validation_rules` gives rules)."""
        raise NotImplementedError

    def validation_where(self, ds: Dataset, split: str, kind: str, frame, idx: list) -> tuple[str, list]:
        """(file, the file lines or names of the failing rows `idx` of `frame`) for the report."""
        raise NotImplementedError

    def feature_identity(self, identity: dict) -> dict:
        """The cache identity of this task's features: the backbone's, plus the feature level when it is not the item."""
        return identity

    def feature_meta(self, ds: Dataset) -> dict:
        """What the features step records about the data for later steps (`FeatureSet.task_meta`)."""
        return {}

    def split_features(self, backbone, ds: Dataset, split: str, cache, batch_size: int = 64, progress: bool = False,
                       identity: dict | None = None, label: str = "features"):
        """(x, y, extra arrays saved beside them in `<split>.npz`, CacheStats) of one split: pooled features of every
        input through the cache, and the split's targets (an empty row per input when the task's trainers read the
        backbone themselves: `embeds_in_features_step`)."""
        from tlops.features import cached_features

        if not self.embeds_in_features_step:
            from tlops.cache import CacheStats

            return np.zeros((len(ds.splits[split]), 0), np.float32), ds.y(split), {}, CacheStats()

        x, stats = cached_features(backbone, ds.inputs(split), cache, batch_size=batch_size, progress=progress,
                                   identity=identity, label=label)
        return x, ds.y(split), {}, stats

    def probe(self, feats, cfg: Any, seed: int) -> ProbeResult:
        """linear_probe's head on the cached train features, selected on val."""
        from tlops.task_types.registry import train_probe

        x, y = feats.arrays("train")
        xv, yv = feats.arrays("val")
        return train_probe(x, y, xv, yv, len(feats.labels), cfg, seed=seed, task=feats.task)

    def finetune_trainer(self, ctx) -> Any:
        """A whole `finetune` run of this task's own (its own loss and decoding), returning the TrainResult; None: the
        finetune strategy's shared loop with `loop_task`."""
        return None

    def episodic_trainer(self, ctx, algorithm: str) -> Any:
        """A whole few-shot (episodic) run of this task's own for the meta-learner `algorithm` (maml, fomaml, meta_sgd,
        protonet), returning the TrainResult; None: the shared episodic run (`tlops.strategies._episodic`) with `few_shot`."""
        return None

    def few_shot(self, ctx) -> Any:
        """What the shared few-shot (episodic) run needs from this task (`tlops.strategies._episodic` lists it): the episode
        sampler and targets, the meta-learner, the validation scoring (per-episode metrics and the selection direction), the
        registered model's adaptation to the support set, the test report with the task's baselines. None: no few-shot."""
        return None

    def few_shot_options(self) -> Any:
        """What the few-shot strategies' config reads for this task before any run (the class of what `few_shot` returns):
        `baselines` (the valid names), `default_baselines`, `default_inner_lr` and `refusal(strategy_config, task)` (why
        those options cannot train this task, or None); and what needs no run: a packaged meta-learner rebuilt and
        adapted at predict time (`restore_learner(encoder, meta, backbone_shapes)`, `restore_target(meta)`,
        `adapted_head(adapter, features, targets, n_classes)`: `tlops.fewshot_predictor.FewShotAdapter` asks these),
        the test report's metrics and plot (`report_kind`: the report's `kind`; `score_metrics(score, prefix)`,
        `plot_axes(report)`: `tlops.evaluate`). None: no few-shot."""
        return None

    def test_outputs(self, features, result, dataset) -> tuple[list, list]:
        """(truth, predictions) on the test split; `dataset`: a function returning the run's Dataset."""
        _, y = features.arrays("test")
        y_true = self.truth(y, features.labels)
        from tlops.package import result_predictions

        y_pred = result_predictions(result, features, lambda: dataset().inputs("test"))
        if result.test_rows is not None:  # a model for some test rows only (a few-shot regression model: its support task's)
            y_true, y_pred = [y_true[i] for i in result.test_rows], [y_pred[i] for i in result.test_rows]
        return y_true, y_pred

    def score_package(self, meta: dict, fetch, features, dataset) -> tuple[list, list, str] | None:
        """(truth, predictions, how) of a registered package (the champion, for the gate) on `dataset`'s test split;
        `fetch(relpath)` gives a package file. None: the package's head on this run's cached features when they are
        its backbone's, else the package on the raw test inputs, against `dataset_truth`."""
        return None

    def package_meta(self, features) -> dict:
        """More keys for the package's meta (tlops_model.json) that predict reads."""
        return {}

    def predict(self, predictor, items: list) -> list | None:
        """What `tlops.package.Predictor.predict` returns for raw inputs when this task's outputs are not a label or a
        number per row; None: the predictor's own (labels, numbers)."""
        return None

    pyfunc_params: ClassVar[tuple[tuple[str, str, Any], ...]] = ()  # the pyfunc's params of this task's own beyond proba and
    # support, each (name, MLflow type, default), in the model's signature (speech recognition: ("timings", "boolean", False))
    prediction_column: ClassVar[str] = "label"  # `tlops predict`'s name for a string prediction (speech recognition: transcript)

    def predict_with(self, predictor, items: list, params: dict) -> list | None:
        """The pyfunc's answer when `params` sets one of `pyfunc_params` (speech recognition's `timings`); None: `predict`'s."""
        return None

    # ---- hooks for a task whose input row is not one raw value (extractive QA: a question and a context) ----

    input_columns: ClassVar[tuple[str, ...]] = ()  # the named fields of one model input ({question, context}); (): one raw value

    def probe_trainer(self, ctx) -> Any:
        """A whole `linear_probe` run of this task's own (a head that needs the backbone on raw inputs, not cached
        vectors), returning the TrainResult; None: the probe on the cached features (`probe`)."""
        return None

    def prediction_inputs(self, predictor, items: list) -> list:
        """The rows `Predictor.predict` hands to `predict`, checked: by default raw strings (texts or file paths),
        none missing, empty or holding NUL, stripped as training stripped them."""
        return predictor._inputs(items)

    # ---- hooks for `tlops init` on a folder of this task's own files (not the CSV contract) ----

    default_starter: ClassVar[str | None] = None  # the `tlops init` kind without --strategy; None: the default strategy's

    def recognise(self, root: Path) -> str | None:
        """`tlops init` on a folder with no dataset.yaml: the modality when the folder holds this task's own files (e.g.
        train.conll), else None. The CSV contract (classification) is what init reads when no task type recognises it."""
        return None

    def init_summary(self, ds: Dataset) -> tuple[dict, str]:
        """(per split: what `tlops init` counts (a Counter), the summary's words for it) of a dataset read by
        `read_dataset`: e.g. entities per type, 'entities of 4 types (LOC, MISC, ORG, PER)'."""
        from collections import Counter

        return {s: Counter() for s in ds.splits}, self.name.replace("_", " ")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
