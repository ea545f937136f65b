"""Typed run configuration: one pydantic model per concern, unknown keys rejected by name."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from tlops.config_base import Strict as _Strict
from tlops.errors import ConfigError
from tlops.strategies.registry import all_strategies, check_ddp
from tlops.text_files import parse_yaml, read_utf8


class DataConfig(_Strict):
    path: str = Field(description="dataset directory (dataset.yaml + train/val/test CSV); relative to the config file")
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5, description="carved from train when val.csv is absent")
    dvc_cache: str | None = Field(None, description="DVC cache that keeps every trained data version for audits "
                                                    "(default: this repository's, `dvc cache dir`)")


class ValidationConfig(_Strict):
    min_per_class: int = Field(5, ge=1, description="each class needs at least this many training rows")
    min_chars: int = Field(3, ge=1)
    max_chars: int = Field(2000, ge=1)
    min_image_side: int = Field(8, ge=1, description="image: smallest allowed width/height in pixels")
    max_image_side: int = Field(8192, ge=1)
    min_audio_seconds: float = Field(0.05, ge=0)
    max_audio_seconds: float = Field(60.0, gt=0)
    min_audio_peak: float = Field(1e-3, ge=0, description="audio whose absolute peak is below this is called silent")
    max_duplicate_fraction: float = Field(0.5, ge=0, le=1, description="refuse a split when more than this share of its rows "
                                          "repeat another row's input (all copies counted); fewer only warn")
    allow_unlabeled_test_overlap: bool = Field(False, description="unlabeled.csv may share inputs with test.csv "
                                                                  "(transductive adaptation to the test inputs, on purpose)")
    control_characters: Literal["refuse", "strip"] = Field("refuse", description="text holding control characters (backspace, "
                                                           "escape, form feed...): refuse those rows, or strip the characters "
                                                           "(in training and, recorded in the package, from the model's inputs at "
                                                           "predict time); NUL is refused either way")


class BackboneConfig(_Strict):
    name: str = Field(description="hf:<hub id or local folder>, timm:<model>, torchvision:<model>, packaged:efficientnet-lite0, "
                                  "packaged:speech-embedding, packaged:crepe-tiny")
    layers: list[int] = Field(default_factory=lambda: [-1], description="hidden-state layers to pool; several are concatenated")
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = Field(128, ge=8, le=4096, description="text: tokens per input")
    image_size: int = Field(96, ge=16, le=1024, description="image: square input side in pixels")
    clip_seconds: float = Field(1.0, gt=0.1, le=60, description="audio: clips are zero-padded or centre-cropped to this")
    batch_size: int = Field(64, ge=1)
    precision: Literal["fp32", "bf16"] = Field("fp32", description="feature extraction's math: bf16 autocasts the backbone "
                                               "on CPUs with native bf16 (AVX-512 BF16 or AMX; others warn and use fp32), "
                                               "recorded in the package; text 1.6-2.2x faster, images lose ~1e-2 cosine "
                                               "(bench/RESULTS.md)")

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
    shard_rows: int = Field(0, ge=0, description="large datasets: cut the distinct uncached inputs into shards of this many rows, "
                            "one Prefect task each (mapped on execution.task_runner); 0 embeds every split in one pass")


DEFAULT_STRATEGY = "linear_probe"  # what a `strategy:` section without `name` means


def _strategy_name(v: Any) -> str:
    return v.get("name", DEFAULT_STRATEGY) if isinstance(v, dict) else getattr(v, "name", DEFAULT_STRATEGY)


def _strategy_union() -> Any:
    """`strategy:` as a discriminated union over the registered strategies' config models."""
    entries = all_strategies()
    names = sorted(entries)
    members = tuple(Annotated[entries[n].config, Tag(n)] for n in names)
    return Annotated[Union[members], Discriminator(_strategy_name, custom_error_type="unknown_strategy",
                                                   custom_error_message=f"unknown strategy name; valid: {', '.join(names)}")]


StrategyConfig = _strategy_union()


class RegistryConfig(_Strict):
    model_name: str = Field(description="MLflow registered model name")
    metric: Literal["accuracy", "macro_f1", "mae", "rmse", "r2", "spearman", "f1", "precision", "recall", "token_accuracy",
                    "exact_match", "wer", "cer", "map", "map_50", "map_75", "miou", "pixel_accuracy"] = Field(
        "macro_f1", description="gate metric on test: accuracy, macro_f1 (classes); mae, rmse (lower is better), r2, spearman (numbers); "
                                "f1, precision, recall (entities), token_accuracy (token classification); f1, exact_match "
                                "(extractive QA); wer, cer (speech recognition, lower is better); map, map_50, map_75 (object detection: COCO "
                                "mAP@[.5:.95], @.5, @.75); miou, pixel_accuracy (semantic segmentation)")
    margin: float = Field(0.0, ge=0.0, description="challenger must beat the champion by more than this")


class ExecutionConfig(_Strict):
    train_pool: str | None = Field(None, description="Prefect work pool for the train step; None runs it in-process")
    work_dir: str = ".tlops/runs"
    pool_timeout_s: float = Field(1800, gt=0)
    # DDP fine-tuning (tlops.training.ddp_launch): the train step launches torchrun when nproc_per_node * nnodes > 1
    nproc_per_node: int = Field(1, ge=1, description="training processes per machine (one per GPU; gloo on CPU); "
                                "1 trains in the step's own process")
    nnodes: int = Field(1, ge=1, description="machines training together; > 1 needs rdzv_endpoint, and each other machine "
                        "runs the join command the train step logs (work_dir on a shared filesystem)")
    rdzv_endpoint: str | None = Field(None, validate_default=True, description="host:port of the rendezvous on the first "
                                      "machine (torchrun's c10d store) when nnodes > 1")

    @field_validator("rdzv_endpoint")
    @classmethod
    def _endpoint_for_several_nodes(cls, v: str | None, info) -> str | None:
        if info.data.get("nnodes", 1) > 1 and not v:
            raise ValueError("nnodes > 1 needs the rendezvous address of the first machine, e.g. rdzv_endpoint: 10.0.0.5:29400")
        if v is not None and not re.fullmatch(r"[^\s:]+:\d{1,5}", v):
            raise ValueError("write it as host:port, e.g. 10.0.0.5:29400")
        return v
    task_runner: Literal["local", "dask"] = Field("local", description="where feature shards run: local (one after another in "
                                                  "the flow's process) or dask (Dask workers; needs features.shard_rows)")
    dask_address: str | None = Field(None, description="Dask scheduler to send shards to, e.g. tcp://10.0.0.5:8786 (its workers "
                                     "must see the same data, features.cache_dir and execution.work_dir paths); "
                                     "None starts a local cluster of dask_workers processes for the run")
    dask_workers: int = Field(2, ge=1, description="worker processes of that local cluster (one torch thread each)")


RUN_NAME_MAX = 250  # MLflow's runs.name column


def default_run_name(model_name: str) -> str:
    """`<model>-<YYYYmmdd-HHMMSS>`: the run's name when neither the config nor the command line gives one."""
    return f"{model_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def with_overrides(name: str, items: list[str]) -> str:
    """`name` followed by the --set overrides as typed (masked, cut to MLflow's length): runs that differ only by
    an override (C=0.1, C=10) tell apart in the run list."""
    from tlops.secrets import mask

    full = " ".join([name, *(mask(_shown(i, 120)) for i in items)])
    return full if len(full) <= RUN_NAME_MAX else full[: RUN_NAME_MAX - 3] + "..."


class EvaluationConfig(_Strict):
    classic_baseline: bool = Field(True, description="probes and fine-tunes of classes or numbers also fit the trivial "
                                   "baseline (text: TF-IDF, image: raw pixels, audio: MFCC statistics; + logistic or ridge "
                                   "regression) on the same splits and report it beside the model, with a warning when it wins")


class TrackingConfig(_Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db")
    experiment: str | None = Field(None, max_length=256, description="MLflow experiment of the run; default registry.model_name "
                                   "(every run of a model in one experiment); `tlops run --experiment NAME`")
    run_name: str | None = Field(None, max_length=RUN_NAME_MAX, description="the run's name in MLflow; default "
                                 "<model_name>-<YYYYmmdd-HHMMSS>, followed by the command line's --set overrides; "
                                 "`tlops run --run-name NAME`")


class _SectionError(ConfigError):
    """A cross-key check of a config section (raised as is, not as a ValueError: pydantic would echo the whole config):
    `config_from_dict` puts the file line (or --set item) of the key its message names first in front of it."""

    def __init__(self, message: str, section: tuple[str, ...]):
        super().__init__(message)
        self.section = section


class RunConfig(_Strict):
    seed: int = 0
    data: DataConfig
    validation: ValidationConfig = ValidationConfig()
    backbone: BackboneConfig
    features: FeaturesConfig = FeaturesConfig()
    strategy: StrategyConfig = Field(default_factory=lambda: all_strategies()[DEFAULT_STRATEGY].config())
    registry: RegistryConfig
    execution: ExecutionConfig = ExecutionConfig()
    tracking: TrackingConfig = TrackingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    search: dict[str, Any] | None = Field(None, description="`tlops tune` only: dotted strategy./backbone. keys mapped to distributions (loguniform(a, b), uniform(a, b), int(a, b), logint(a, b), a list of choices); `tlops run` ignores it")

    @model_validator(mode="after")
    def _experiment_of_the_model(self) -> RunConfig:
        if not self.tracking.experiment:  # a copied config logs where the model's other runs are, not in its source's experiment
            self.tracking.experiment = self.registry.model_name
        return self

    @model_validator(mode="after")
    def _dask_maps_shards(self) -> RunConfig:
        if self.execution.task_runner == "dask" and not self.features.shard_rows:
            raise _SectionError("execution.task_runner: dask sends feature shards to Dask workers, but features.shard_rows is 0 "
                              "(no shards); set it too, e.g. --set features.shard_rows=5000", ("execution",))
        return self

    @model_validator(mode="after")
    def _ddp_strategy(self) -> RunConfig:
        if self.execution.nproc_per_node * self.execution.nnodes > 1:  # refused here, not after the features step
            try:
                check_ddp(self.strategy.name, self.execution)
            except ConfigError as e:
                raise _SectionError(str(e), ("execution",)) from None
        return self


MAX_ERRORS_SHOWN = 20  # a config with 700k unknown keys gets 20 lines and a count, not 700k lines


class _Origins:
    """Where each key of a config came from: its line and column in the config file (the YAML composed again, only
    when the config is wrong), or the --set override that gave it."""

    def __init__(self, text: str | None = None, overrides: list[tuple[str, str]] | None = None):
        self.root = None
        if text is not None:
            import yaml

            try:  # the text already passed the bounded loader: composing it again builds no value and expands no alias
                self.root = yaml.compose(text, Loader=yaml.SafeLoader)
            except yaml.YAMLError:
                self.root = None
        self.overrides = [(tuple(key.split(".")), item) for key, item in overrides or []]

    def override(self, loc: tuple, kind: str) -> str | None:
        """The --set item (as typed) that gave the value at `loc`: the last one naming `loc` or a section above it."""
        parts = tuple(str(p) for p in loc)
        for path, item in reversed(self.overrides):
            if parts[: len(path)] == path or (kind == "unknown_strategy" and path == (*parts, "name")):
                return item
        return None

    def line(self, loc: tuple, kind: str) -> str | None:
        """`line L column C` of the key (an unknown key), of the value (a wrong one), or of the section holding `loc`
        (a missing key, or one the file does not set); None when the file has no part of `loc`."""
        import yaml

        def child(node, part):
            if isinstance(node, yaml.MappingNode):
                return next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and -len(node.value) <= part < len(node.value):
                return None, node.value[part]
            return None

        node, mark, found = self.root, None, 0
        for part in loc:
            pair = child(node, part)
            if pair is None:
                break
            key, node = pair
            found += 1
            mark = (key or node).start_mark  # the deepest key found so far
        if mark is None:
            return None
        if found == len(loc) and kind != "extra_forbidden":
            pair = child(node, "name") if kind == "unknown_strategy" else None  # the strategy's name is wrong, not the section
            mark = (pair[1] if pair else node).start_mark  # the value itself
        return f"line {mark.line + 1} column {mark.column + 1}"


def _closest(word: str, options) -> str | None:
    """The option a near-miss meant (case first, then spelling), for a 'did you mean' hint."""
    import difflib

    options = [str(o) for o in options]
    same_case = [o for o in options if o.lower() == word.lower()]
    if same_case:
        return same_case[0]
    close = difflib.get_close_matches(word.lower(), [o.lower() for o in options], n=1, cutoff=0.6)
    return next(o for o in options if o.lower() == close[0]) if close else None


def _key_elsewhere(key: str, cfg_tree: dict | None) -> str | None:
    """The section that has `key` (`max_length` under strategy: it is a backbone key), or None."""
    for section, field in RunConfig.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) and key in field.annotation.model_fields:
            return section
    strategy = cfg_tree.get("strategy") if isinstance(cfg_tree, dict) else None
    config = all_strategies().get(_strategy_name(strategy) if isinstance(strategy, dict) or strategy is None else DEFAULT_STRATEGY)
    if config is not None and key in config.config.model_fields:
        return "strategy"
    return None


def _choices(loc: tuple, kind: str) -> list[str]:
    """The values a field takes when they are a fixed set (a Literal, the strategy names)."""
    import typing

    if kind == "unknown_strategy":
        return sorted(all_strategies())
    parent = _model_at(RunConfig, loc[:-1])
    field = parent.model_fields.get(str(loc[-1])) if parent and loc else None
    if field is None:
        return []
    args = [field.annotation, *typing.get_args(field.annotation)]
    return [str(v) for a in args if typing.get_origin(a) is Literal for v in typing.get_args(a)]


def _format_errors(err: ValidationError, source: str, origins: _Origins | None = None, tree: dict | None = None) -> str:
    origins = origins or _Origins()
    errors = err.errors(include_url=False, include_context=False)
    lines = []
    from_file = False
    for e in errors[:MAX_ERRORS_SHOWN]:
        loc = _without_union_tags(e["loc"])
        refined = e["type"] == "value_error" and (loc := _named_key(loc, e["msg"], tree)) != _without_union_tags(e["loc"])
        where = ".".join(_shown(str(p)) for p in loc) or "(top level)"
        item = origins.override(loc, e["type"])
        at = f"--set {_shown(item, 120)}: " if item else ""
        if not item and (line := origins.line(loc, e["type"])):
            at = f"{line}: "
        from_file |= not item
        if e["type"] == "extra_forbidden":
            parent = _model_at(RunConfig, e["loc"][:-1])
            valid = list(parent.model_fields) if parent else []
            hint = ""
            if (near := _closest(str(loc[-1]), valid)) is not None:
                hint = f"; did you mean {near!r}?"
            elif len(loc) == 2 and (section := _key_elsewhere(str(loc[-1]), tree)) and section != loc[0]:
                hint = f"; {loc[-1]} is a key of {section}: write it under {section}:"
            lines.append(f"  {at}{where}: unknown key; valid keys here: {', '.join(valid) or '?'}{hint}")
        elif e["type"] == "missing":
            lines.append(f"  {at}{where}: required key is missing")
        elif e["type"] == "finite_number":
            lines.append(f"  {at}{where}: must be a finite number, got {e.get('input')!r}; write a real number (YAML's .inf and "
                         ".nan are not settings)")
        else:
            got = e.get("input")
            if e["type"] == "unknown_strategy" and isinstance(got, dict):
                got = got.get("name")
            hint = ""
            if isinstance(got, str) and (near := _closest(got, _choices(loc, e["type"]))) is not None and near != got:
                hint = f"; did you mean {near!r}?"
            msg = e["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
            # a check across keys names their values itself: no echo of the whole section (or of an unset key's None)
            shown = "" if refined or isinstance(got, dict) else f" (got {_shown(repr(got), 200)})"
            lines.append(f"  {at}{where}: {msg}{shown}{hint}")
    if len(errors) > MAX_ERRORS_SHOWN:
        unknown = sum(e["type"] == "extra_forbidden" for e in errors[MAX_ERRORS_SHOWN:])
        lines.append(f"  ... and {len(errors) - MAX_ERRORS_SHOWN:,} more" + (f" ({unknown:,} of them unknown keys)" if unknown else "")
                     + "; fix the ones above and run again")
    head = f"invalid config {source}:" if from_file or not origins.overrides else f"invalid --set value for config {source}:"
    return "\n".join([head, *lines])


def _section_at(tree: Any, loc: tuple) -> Any:
    for part in loc:
        tree = tree.get(str(part)) if isinstance(tree, dict) else None
    return tree


def _named_key(loc: tuple, msg: str, tree: dict | None) -> tuple:
    """Where a validator's error about a whole section (a model validator), or about a key the config does not set
    (`rdzv_endpoint` when nnodes > 1), really points: the key of that section its message names first among those the
    config sets (`unfreeze_every needs ...` -> strategy.unfreeze_every; `nnodes > 1 needs ...` -> execution.nnodes).
    Else `loc` unchanged."""
    node = _section_at(tree, loc)
    if isinstance(node, dict) and node:
        section, keys = loc, node
    elif node is None and loc and isinstance(parent := _section_at(tree, loc[:-1]), dict):
        section, keys = loc[:-1], parent
    else:
        return loc
    found = []
    for key in keys:
        if isinstance(key, str) and (m := re.search(rf"(?<!\w){re.escape(key)}(?!\w)", msg)):
            found.append((key == "name", m.start(), key))  # `name` is also a word of prose: only when nothing else is named
    return (*section, min(found)[2]) if found else loc


def _format_section_error(err: _SectionError, source: str, origins: _Origins, tree: dict | None) -> str:
    """A cross-key check's refusal with the line and column (or --set item) of the key it names, as `_format_errors`."""
    message = str(err)
    loc = _named_key(err.section, message, tree)
    where = ".".join(loc)
    item = origins.override(loc, "value_error")
    at = f"--set {_shown(item, 120)}: " if item else (f"{line}: " if (line := origins.line(loc, "value_error")) else "")
    text = message if message.startswith(where) else f"{where}: {message}"
    head = f"invalid --set value for config {source}:" if item else f"invalid config {source}:"
    return f"{head}\n  {at}{text}"


def _without_union_tags(loc: tuple) -> tuple:
    """('strategy', 'finetune', 'epochs') -> ('strategy', 'epochs'): pydantic puts the chosen tag in the path."""
    names = all_strategies()
    return tuple(p for i, p in enumerate(loc) if not (i > 0 and loc[i - 1] == "strategy" and p in names))


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    entries = all_strategies()
    if len(loc) >= 2 and loc[0] == "strategy" and loc[1] in entries:
        return _model_at(entries[loc[1]].config, loc[2:])
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


def _shown(s: str, limit: int = 60) -> str:
    """A user's value as it can be echoed on one line: control characters escaped, a hostile 100 kB value cut."""
    s = s if s.isprintable() else s.encode("unicode_escape").decode("ascii")
    return s if len(s) <= limit else s[: limit - 3] + "..."


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """`key.sub=value` pairs; the value is read as YAML (so `3`, `true`, `[1, 2]` are typed), an empty one is None."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {_shown(item)}: expected key=value, e.g. --set strategy.head=mlp")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {_shown(item)}: the key before '=' is missing; write e.g. --set strategy.C=0.5")
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", key, flags=re.ASCII):
            raise ConfigError(f"--set {_shown(item)}: the key {_shown(key)} is not a dotted name (letters, digits, _ between "
                              "dots); write e.g. --set strategy.C=0.5")
        value = parse_yaml(raw, f"--set {key}={_shown(raw)}", ConfigError, located=False,
                           fix=f"quote it to pass a string, e.g. --set {key}='\"{_shown(raw)}\"'") if raw != "" else None
        out.append((key, value))
    return out


MAX_CONFIG_BYTES = 256 * 1024  # a run config is a few kB; YAML reads ~250 kB/s here, so a bigger file is refused unread


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.name != "dataset.yaml")[:3]
        raise ConfigError(f"config {path} is a directory; pass the run config YAML file itself, e.g. "
                          + (" or ".join(str(path / f) for f in found) if found else "configs/text_linear_probe.yaml")
                          + (" (a dataset folder is the config's data.path; `tlops init DIR` writes a config for it)"
                             if (path / "dataset.yaml").is_file() or (path / "train.csv").is_file() else ""))
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass a YAML file such as configs/text_linear_probe.yaml")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is {path.stat().st_size / 1024:,.0f} KiB, over the {MAX_CONFIG_BYTES // 1024} KiB a "
                          "run config may have (one is a few kB, e.g. configs/text_linear_probe.yaml); pass the run config "
                          "itself, or remove what was appended to it")
    text = read_utf8(path, ConfigError)
    tree = parse_yaml(text, f"config file {path}", ConfigError,
                      "fix the syntax there (indentation, brackets, quotes)")
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (data:, backbone:, ...), "
                          f"got a {type(tree).__name__}; see configs/text_linear_probe.yaml")
    _resolve_inputs(tree, path.parent)
    parsed = parse_overrides(overrides or [])
    for key, value in parsed:
        set_dotted(tree, key, value)
        if key in INPUT_PATHS:  # typed on the command line: relative to where the user is
            _resolve_inputs(tree, Path.cwd(), only=key)
    cfg = config_from_dict(tree, source=str(path), text=text,
                           overrides=[(key, f"{key}={item.split('=', 1)[1]}") for (key, _), item in zip(parsed, overrides or [])])
    # the overrides that change what is trained are shown in the run's name, unless the command line named the run
    # (where and under which name it is logged are not settings of the model: tracking.* is left out)
    shown = [f"{key}={item.split('=', 1)[1]}" for (key, _), item in zip(parsed, overrides or []) if not key.startswith("tracking.")]
    if shown and not any(key == "tracking.run_name" for key, _ in parsed):
        cfg.tracking.run_name = with_overrides(cfg.tracking.run_name or default_run_name(cfg.registry.model_name), shown)
    return cfg


# Paths in a config that point at inputs: relative ones mean "next to this config file", so a config works from
# any current directory and travels with its data. Working state (features.cache_dir, execution.work_dir) and
# the MLflow store stay relative to the current directory: that is the project, shared by all its configs.
INPUT_PATHS = ("data.path", "data.dvc_cache")


def _resolve_inputs(tree: dict, base: Path, only: str | None = None) -> None:
    for dotted in (only,) if only else INPUT_PATHS:
        section, key = dotted.split(".")
        node = tree.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str) and value.strip():  # anything else is left to the typed config's message
            node[key] = str((base / Path(value).expanduser()).resolve())


def config_from_dict(tree: dict, source: str = "(dict)", text: str | None = None,
                     overrides: list[tuple[str, str]] | None = None) -> RunConfig:
    """The typed config of `tree`; when it is wrong, one ConfigError naming each problem's line and column in `text`
    (the config file's YAML) or the --set item (`overrides`: (dotted key, item as typed)) that gave the value."""
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source, _Origins(text, overrides), tree)) from None
    except _SectionError as e:
        raise ConfigError(_format_section_error(e, source, _Origins(text, overrides), tree)) from None
