"""Typed run configuration: one pydantic model per concern, unknown keys rejected by name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from tlops.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    path: str = Field(description="dataset directory (dataset.yaml + train/val/test CSV)")
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5, description="carved from train when val.csv is absent")


class ValidationConfig(_Strict):
    min_per_class: int = Field(5, ge=1, description="each class needs at least this many training rows")
    min_chars: int = Field(3, ge=1)
    max_chars: int = Field(2000, ge=1)
    min_image_side: int = Field(8, ge=1, description="image: smallest allowed width/height in pixels")
    max_image_side: int = Field(8192, ge=1)
    min_audio_seconds: float = Field(0.05, ge=0)
    max_audio_seconds: float = Field(60.0, gt=0)
    min_audio_peak: float = Field(1e-3, ge=0, description="audio whose absolute peak is below this is called silent")


class BackboneConfig(_Strict):
    name: str = Field(description="hf:<hub id or local folder>, packaged:efficientnet-lite0, packaged:speech-embedding")
    layers: list[int] = Field(default_factory=lambda: [-1], description="hidden-state layers to pool; several are concatenated")
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = Field(128, ge=8, le=4096, description="text: tokens per input")
    image_size: int = Field(96, ge=16, le=1024, description="image: square input side in pixels")
    clip_seconds: float = Field(1.0, gt=0.1, le=60, description="audio: clips are zero-padded or centre-cropped to this")
    batch_size: int = Field(64, ge=1)

    @field_validator("layers")
    @classmethod
    def _layers_not_empty(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one layer, e.g. [-1] for the last hidden layer")
        if len(set(v)) != len(v):
            raise ValueError(f"layers {v} repeat a layer; list each once")
        return v


class FeaturesConfig(_Strict):
    cache_dir: str = ".tlops/cache"


class LinearProbeConfig(_Strict):
    name: Literal["linear_probe"] = "linear_probe"
    head: Literal["logreg", "mlp"] = "logreg"
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic-regression head")
    max_iter: int = Field(1000, ge=10)
    hidden: int = Field(256, ge=1, description="MLP head hidden width")
    epochs: int = Field(60, ge=1, description="MLP head epochs (best epoch on validation is kept)")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_size: int = Field(128, ge=1)


class FinetuneConfig(_Strict):
    """Train the backbone (all, the top N groups, or gradually more) together with a new head."""

    name: Literal["finetune"] = "finetune"
    head: Literal["linear", "mlp"] = "linear"
    hidden: int = Field(256, ge=1, description="MLP head hidden width")
    dropout: float = Field(0.1, ge=0, lt=1, description="MLP head dropout")
    trainable: Literal["all"] | int = Field("all", description="backbone groups that train: 'all', or the top N (0: head only)")
    unfreeze_every: int = Field(0, ge=0, description="gradual unfreezing: one more group every N epochs, starting from `trainable` (0: off)")
    lp_ft: bool = Field(False, description="LP-FT: fit a logistic-regression head on the cached frozen features first, fine-tune from it")
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    grad_accum_steps: int = Field(1, ge=1, description="optimizer step every N batches (effective batch = batch_size * N)")
    head_lr: float = Field(1e-3, gt=0)
    backbone_lr: float = Field(5e-5, gt=0, description="learning rate of the top backbone group")
    layer_decay: float = Field(1.0, gt=0, le=1, description="each lower group's LR is multiplied by this once more")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay (not on biases/norms; backbone gets none when l2sp > 0)")
    l2sp: float = Field(0.0, ge=0, description="L2-SP weight: l2sp/2 * ||w - w_pretrained||^2 over the backbone")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of optimizer steps spent warming up linearly")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the global gradient norm (null: no clipping)")
    patience: int = Field(3, ge=1, description="early stopping: stop after this many epochs without a better val macro-F1")
    bucket_by_length: bool = Field(True, description="text: batches of similar length (less padding), in shuffled order")
    augment: bool = Field(True, description="image: random resized crop + horizontal flip; audio: random time shift + gain")
    flip: bool = Field(True, description="image augmentation: horizontal flips (turn off for text-like images)")
    norm_stats: Literal["frozen", "train"] = Field("frozen", description="BatchNorm running statistics: kept from pretraining (small target sets) or updated")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on a GPU that supports it, else fp32")
    compile: bool = Field(False, description="torch.compile the backbone (pays off on GPU; off by default)")
    checkpoint_every_steps: int = Field(0, ge=0, description="also checkpoint inside an epoch every N optimizer steps (0: end of epoch only)")
    resume: bool = Field(True, description="a rerun of the same config + data resumes from the last complete checkpoint")
    eval_batch_size: int = Field(64, ge=1)

    @field_validator("trainable")
    @classmethod
    def _trainable_non_negative(cls, v):
        if isinstance(v, int) and v < 0:
            raise ValueError("give 'all' or a number of top groups >= 0 (0 trains only the head)")
        return v

    @model_validator(mode="after")
    def _gradual_needs_a_start(self):
        if self.unfreeze_every and self.trainable == "all":
            raise ValueError("unfreeze_every needs a starting number of groups: set trainable to an int (e.g. 0) or unfreeze_every to 0")
        return self


STRATEGIES: dict[str, type[BaseModel]] = {"linear_probe": LinearProbeConfig, "finetune": FinetuneConfig}


def _strategy_name(v: Any) -> str:
    return v.get("name", "linear_probe") if isinstance(v, dict) else getattr(v, "name", "linear_probe")


StrategyConfig = Annotated[
    Union[Annotated[LinearProbeConfig, Tag("linear_probe")], Annotated[FinetuneConfig, Tag("finetune")]],
    Discriminator(_strategy_name, custom_error_type="unknown_strategy",
                  custom_error_message="unknown strategy name; valid: linear_probe, finetune"),
]


class RegistryConfig(_Strict):
    model_name: str = Field(description="MLflow registered model name")
    metric: Literal["accuracy", "macro_f1"] = "macro_f1"
    margin: float = Field(0.0, ge=0.0, description="challenger must beat the champion by more than this")


class ExecutionConfig(_Strict):
    train_pool: str | None = Field(None, description="Prefect work pool for the train step; None runs it in-process")
    work_dir: str = ".tlops/runs"
    pool_timeout_s: float = Field(1800, gt=0)


class TrackingConfig(_Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db")
    experiment: str = "tlops"


class RunConfig(_Strict):
    seed: int = 0
    data: DataConfig
    validation: ValidationConfig = ValidationConfig()
    backbone: BackboneConfig
    features: FeaturesConfig = FeaturesConfig()
    strategy: StrategyConfig = LinearProbeConfig()
    registry: RegistryConfig
    execution: ExecutionConfig = ExecutionConfig()
    tracking: TrackingConfig = TrackingConfig()


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        loc = _without_union_tags(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = _model_at(RunConfig, e["loc"][:-1])
            valid = ", ".join(parent.model_fields) if parent else "?"
            lines.append(f"  {where}: unknown key; valid keys here: {valid}")
        elif e["type"] == "missing":
            lines.append(f"  {where}: required key is missing")
        else:
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _without_union_tags(loc: tuple) -> tuple:
    """('strategy', 'finetune', 'epochs') -> ('strategy', 'epochs'): pydantic puts the chosen tag in the path."""
    return tuple(p for i, p in enumerate(loc) if not (i > 0 and loc[i - 1] == "strategy" and p in STRATEGIES))


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    if len(loc) >= 2 and loc[0] == "strategy" and loc[1] in STRATEGIES:
        return _model_at(STRATEGIES[loc[1]], loc[2:])
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{k}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set strategy.head=mlp")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw != "" else None))
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass a YAML file such as configs/text_linear_probe.yaml")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(tree).__name__}")
    for key, value in parse_overrides(overrides or []):
        set_dotted(tree, key, value)
    return config_from_dict(tree, source=str(path))


def config_from_dict(tree: dict, source: str = "(dict)") -> RunConfig:
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
