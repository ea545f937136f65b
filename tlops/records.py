"""Typed records that steps hand to each other (pydantic). They stay typed inside a process; they become
JSON only at process boundaries (Prefect task/flow parameters, the work pool's result file), through
`model_dump(mode="json")` and `model_validate`/`TRAIN_RESULT.validate_json`.

Records hold paths, hashes and small numbers, never large tensors: the feature arrays stay on disk in
the features folder and are loaded (once per process) by `FeatureSet.arrays`.

Records are data: what is done with one lives in the module that owns it (a trained head loaded by
`tlops.modules.heads.load_head`, a train result's test predictions and model package by `tlops.package`, a few-shot
report's metrics by `tlops.evaluate.few_shot_metrics`), so this module imports no other part of tlops. What is left
reads the record's own fields or files: `FeatureSet.arrays` / `extras` (its npz files), `ValidationReport.failed`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter

if TYPE_CHECKING:
    import numpy as np


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- features ----------------------------------------------------------------------------------------

class CacheTotals(Record):
    hits: int = 0
    misses: int = 0
    corrupt_shards: int = 0
    backbone_calls: int = 0


class FeatureSet(Record):
    """The features step's output: one `<split>.npz` (x: features, y: label indices, or float targets for a
    regression dataset) per split in `dir`."""

    dir: str
    splits: list[str]
    labels: list[str]
    task: str = Field("classification", description="dataset.yaml `task:`; regression: y holds float targets, labels is []")
    num_features: int
    identity: dict[str, Any] = Field(description="the backbone identity the features were computed with (cache key)")
    found_via: str
    cache: CacheTotals
    seconds: float
    task_meta: dict[str, Any] = Field({}, description="what the task type recorded about the data (token classification: its "
                                                       "tag scheme and feature level)")
    _arrays: dict[str, tuple[Any, Any]] = PrivateAttr(default_factory=dict)

    def path(self, split: str) -> Path:
        return Path(self.dir) / f"{split}.npz"

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, D) float32, label indices (N,) int64 or regression targets (N,) float64) of one split; read
        from disk once."""
        if split not in self.splits:
            raise KeyError(f"no cached features for split {split!r}; have {self.splits}")
        if split not in self._arrays:
            import numpy as np

            with np.load(self.path(split)) as z:
                self._arrays[split] = (z["x"], z["y"])
        return self._arrays[split]

    def extras(self, split: str) -> dict[str, Any]:
        """The arrays a task type saved beside x and y in `<split>.npz` (token classification: per-sentence `offsets`
        into the word rows, and `seen`); {} for a pooled task."""
        import numpy as np

        with np.load(self.path(split)) as z:
            return {k: z[k] for k in z.files if k not in ("x", "y")}


# ---- training ----------------------------------------------------------------------------------------

class LoopSummary(Record):
    """How a training loop went (strategies that train with `tlops.training.loop`)."""

    best_epoch: int
    epochs_run: int
    stopped_early: bool
    device: str
    precision: str
    resumed_from: dict[str, Any] | None = None
    skipped_checkpoints: list[str] = []
    checkpoint_dir: str | None = None
    train_samples_per_s: float | None = None


class Execution(Record):
    """Which process ran the train step (filled by the flow; shows a work pool's worker did)."""

    pid: int
    ppid: int
    host: str
    ancestors: list[int]
    work_pool: str | None = None
    flow_run_id: str | None = None


class Candidate(Record):
    """One trained domain-adaptation run (one trade_off) at its epoch chosen by the unsupervised criterion."""

    name: str | None = Field(None, description="the candidate's name in the run's selection record (e.g. source_only, dann@1, "
                                               "features:adabn)")
    mode: str | None = Field(None, description="features (adapter + head on the cached frozen features) or finetune (the "
                                               "backbone trained)")
    trade_off: float
    best_epoch: int
    criterion: float = Field(description="the criterion's value at best_epoch (dev_risk: lower is better; snd, source val "
                                         "macro-F1: higher)")
    val_metrics: dict[str, float] = Field(description="source validation metrics at best_epoch, as the task type names them "
                                                      "(macro_f1; mae, rmse, r2, spearman)")
    oracle_test_macro_f1: float | None = Field(None, description="target test macro-F1 at best_epoch: logged, never used to choose")
    oracle_test_mae: float | None = Field(None, description="regression: target test MAE at best_epoch: logged, never used to choose")


class OracleChoice(Record):
    """What choosing with the target test labels would have picked (for judging the criterion only)."""

    candidate: str | None = None  # its name in the selection record
    trade_off: float
    epoch: int
    test_macro_f1: float | None = None  # classification: the best target test macro-F1 of any epoch
    test_mae: float | None = None  # regression: the lowest target test MAE of any epoch


class AdaptationSummary(Record):
    """How a domain-adaptation run chose its model without target labels, next to the oracle's choice."""

    method: str
    mode: str
    criterion: str
    chosen: Candidate
    candidates: list[Candidate]
    oracle: OracleChoice | None = None


class ShotScore(Record):
    """Mean query accuracy over episodes of one N-way K-shot setting, with its 95% confidence half-width."""

    ways: int
    shots: int
    episodes: int
    accuracy: float
    ci95: float


class FewShotReport(Record):
    """Episodic evaluation on the novel classes of one split: the meta-learned model and the baselines
    (`linear_probe`: logistic regression fitted on each episode's support features; `protonet0`: prototypes
    of the frozen features, no meta-training), over the same episodes."""

    split: str
    queries: int
    model: list[ShotScore]
    baselines: dict[str, list[ShotScore]]
    skipped_shots: list[int] = Field([], description="shot counts with too few classes of >= shots + queries rows")
    support_classes: list[str] = Field(description="the registered model's classes (those of its support set)")


class ShotError(Record):
    """Mean query absolute error (in the target's unit) over few-shot regression episodes of one K-shot setting,
    with its 95% confidence half-width."""

    shots: int
    episodes: int
    mae: float
    ci95: float


class FewShotRegressionReport(Record):
    """Episodic evaluation on the new tasks of one split (a regression dataset's `group:` tasks): per episode, K
    labelled rows of a task, then the error on its query rows; the meta-learned model and the baselines over the
    same episodes (`support_mean`: predict the support targets' mean; `support_ridge`: ridge on each episode's
    support features; `pooled_ridge`: one ridge on all train rows, no adaptation)."""

    kind: Literal["regression"] = "regression"
    split: str
    queries: int
    model: list[ShotError]
    baselines: dict[str, list[ShotError]]
    skipped_shots: list[int] = Field([], description="shot counts no task of the split has shots + queries rows for")
    support_task: str = Field(description="the task (group) the registered model was adapted to and is evaluated on")


class MetaLearnerState(Record):
    """What adapting a meta-learned model to a new support set needs (few-shot serving), and the support set
    the registered head was adapted to. The tensors live in two safetensors files; this record says how to
    rebuild the encoder and the adaptation rule around them (`tlops.fewshot_predictor`)."""

    algorithm: str
    inner_lr: float
    inner_steps: int
    anil: bool
    encoder: dict[str, Any] = Field(description="Encoder construction: in_dim, kind, hidden, out_dim")
    state_path: str = Field(description="safetensors: encoder.* (standardisation, projection) and learner.* (Meta-SGD's alphas)")
    support_path: str = Field(description="safetensors: x (the support rows' backbone features), y (index into support_labels)")
    support_labels: list[str] = Field(description="the support set's classes, in the order of the head's outputs")
    backbone_params: list[str] = Field([], description="backbone parameters the inner loop adapts per support set (inner_groups)")
    adapted_backbone_path: str | None = Field(None, description="safetensors: those parameters adapted to the registered support set")
    task: str = Field("classification", description="regression: y holds the support rows' targets, adapted by the regression "
                                                    "learner (tlops.training.meta.RegressionMetaLearner) with the target scaler below")
    target_scaler: list[float] | None = Field(None, description="regression: the train targets' mean and std")


class _Trained(Record):
    strategy: str
    history: list[dict[str, float]] = Field(description="one row per epoch (or one row for a closed-form fit)")
    val_metrics: dict[str, float] = Field(description="validation metrics of the kept model as its task type names them, the "
                                                      "selection metric first (macro_f1; mae, rmse, r2, spearman)")
    size_curve: list[dict[str, float]] = Field([], description="a closed-form head's learning curve over data: the val metric "
                                                              "when fitted on growing subsets of train (train_rows, val_...)")
    seconds: float
    loop: LoopSummary | None = None
    execution: Execution | None = None
    adaptation: AdaptationSummary | None = None
    few_shot: FewShotReport | FewShotRegressionReport | None = None
    test_rows: list[int] | None = Field(None, description="the test rows the model is for, when not all of them (a few-shot "
                                                          "regression model: its support task's rows); evaluation scores these")


class HeadResult(_Trained):
    """A head trained on the cached features; the backbone is the pretrained one."""

    kind: Literal["head"] = "head"
    head_path: str
    spec: dict[str, Any]
    labels: list[str] | None = Field(None, description="the head's classes when they are not the features' label list "
                                                       "(a few-shot head adapted to its support set's classes)")
    meta_learner: MetaLearnerState | None = Field(None, description="a meta-transfer head: what re-adapting to a new support "
                                                                  "set at predict time needs (packaged with the head)")


class PackageResult(_Trained):
    """A whole model package (trained backbone + head) written by the train step itself."""

    kind: Literal["package"] = "package"
    package: str
    labels: list[str] | None = Field(None, description="the package's classes when they are not the features' label list "
                                                       "(a few-shot package with a meta-trained backbone: its support set's classes)")


TrainResult = Annotated[Union[HeadResult, PackageResult], Field(discriminator="kind")]
TRAIN_RESULT: TypeAdapter[HeadResult | PackageResult] = TypeAdapter(TrainResult)


# ---- evaluation and the whole core run ----------------------------------------------------------------

class Evaluation(Record):
    metrics: dict[str, float]
    report_path: str
    plots: list[str]
    n_test: int
    baseline: dict[str, Any] | None = Field(None, description="the classic baseline on the same splits "
                                            "(`tlops.classic_baseline`): name, test metrics, kept C/alpha, and `wins` on the gate metric")


class CoreResult(Record):
    """`run_core`'s result: every step's record."""

    features: FeatureSet
    train: TrainResult
    evaluation: Evaluation
    package: str


class Gate(Record):
    """The promotion gate's decision for one registered version."""

    promoted: bool
    reason: str
    metric: str
    challenger: float
    champion_version: str | None = None
    champion_metric: float | None = None
    champion_scored_via: str = ""
    margin: float
    version: str


class Registration(Record):
    model_name: str
    version: str
    aliases: list[str]
    gate: Gate
    model_uri: str


class RunOutcome(Record):
    """What `tlops run` reports (its `--json` object)."""

    run_id: str
    experiment: str
    experiment_id: str | None = Field(None, description="the experiment's MLflow id (its UI page: #/experiments/<id>)")
    tracking_uri: str
    model_name: str
    version: str
    aliases: list[str]
    promotion: Gate
    test_metrics: dict[str, float]
    val_metrics: dict[str, float] = Field(description="the model's validation metrics, the task type's selection metric first "
                                                      "(macro_f1; mae, rmse, r2, spearman)")
    cache: CacheTotals
    backbone: str
    strategy: str
    best_epoch: int | None = None
    resumed_from: dict[str, Any] | None = None
    train_executed_by: Execution | None = None
    work_pool: str | None = None
    train_flow_run_id: str | None = None
    flow_pid: int
    baseline: dict[str, Any] | None = Field(None, description="the classic baseline scored on the same test split, if any")
    selection: dict[str, Any] | None = Field(None, description="how the registered model was chosen among candidates without target "
                                             "labels (`tlops.selection_record.SelectionRecord`), when the strategy chose one")


class ChampionScore(Record):
    version: str
    metric: str
    value: float
    scored_via: str


# ---- validation --------------------------------------------------------------------------------------

class Check(Record):
    """One validation rule on one split: where it failed (CSV lines or classes), the values, the fix."""

    split: str
    file: str
    rule: str
    expectation: str
    success: bool
    unexpected_count: int | None = None
    rows: list[int | str] = []
    values: list[str] = []
    observed: Any = None
    fix: str


class ValidationReport(Record):
    success: bool
    dataset: str
    checks: list[Check]
    rows: dict[str, int]

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.success]


def dump_json(record: BaseModel, path: Path) -> Path:
    path.write_text(json.dumps(record.model_dump(mode="json"), indent=1))
    return path
