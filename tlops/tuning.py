"""Hyperparameter search over a config's `search:` section (`tlops tune`), with Optuna: the TPE sampler, median or
successive-halving pruning on the per-epoch validation metric the shared loop reports (`tlops.training.loop`: an epoch row's `val_<metric>`), and
a SQLite study beside the search's trial folders, so a search killed even by SIGKILL resumes where it stopped.

The section maps dotted config keys (as `--set` takes them) to a distribution:

    search:
      strategy.C: loguniform(1e-3, 10)      # float, sampled on a log scale
      strategy.dropout: uniform(0.0, 0.5)   # float
      strategy.epochs: int(2, 8)            # integer, both ends included (logint: on a log scale)
      strategy.trainable: [0, 1, 2]         # one of these values (also: choice(0, 1, 2))
      pruner: successive_halving            # optional, not a searched key: median (the default) | successive_halving

This module holds what does not need orchestration or tracking: the section's parser and checks (each problem names its
line in the config file and the fix), the study (create or resume), the ask/tell loop and the pruning callback. A
trial's training and logging are the caller's (`tasks/tune.py`: a Prefect task and a nested MLflow run per trial).
The selection reads validation metrics only."""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tlops.config import RunConfig, _Origins, _shown, config_from_dict, set_dotted
from tlops.errors import ConfigError
from tlops.training.callbacks import Callback

if TYPE_CHECKING:
    import optuna

TUNABLE_SECTIONS = ("strategy", "backbone")  # what a trial may change: the model's settings, not its data, gate or tracking
_CALL = re.compile(r"^\s*(loguniform|uniform|int|logint|choice)\s*\((.*)\)\s*$", re.S)
EXAMPLE = "write e.g. `strategy.C: loguniform(1e-3, 10)`, `strategy.epochs: int(2, 8)` or `strategy.trainable: [0, 1, 2]`"
STUDY_FILE = "study.db"
PRUNERS = ("median", "successive_halving")
OPTIONS = ("pruner",)  # the section's keys that set the search itself, not a searched config key


@dataclass(frozen=True)
class Param:
    """One searched key: a float or int range (`log`: sampled on a log scale) or a list of choices."""

    key: str
    kind: str  # "float" | "int" | "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    where: str = ""  # "line L column C" of the key in the config file, "" when unknown

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))

    def extremes(self) -> list[Any]:
        """Values that together exercise the range's checks: both ends, or every choice."""
        if self.kind == "choice":
            return list(self.choices)
        cast = int if self.kind == "int" else float
        return [cast(self.low), cast(self.high)]

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        name = {"float": "loguniform" if self.log else "uniform", "int": "logint" if self.log else "int"}[self.kind]
        return f"{name}({self.low:g}, {self.high:g})"


def _number(text: str) -> float:
    """A range end as written: `10`, `1e-3`, `0.5` (YAML would read `1e-3` as a string)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise ValueError(text) from None
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _parse_one(key: str, spec: Any, at: str) -> Param:
    import yaml

    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{at}search.{key}: an empty list of choices; list two or more values, e.g. [0, 1, 2]")
        if any(isinstance(v, (dict, list)) for v in spec):
            raise ConfigError(f"{at}search.{key}: choices must be plain values (numbers, strings, true/false), got "
                              f"{_shown(repr(spec), 120)}; {EXAMPLE}")
        return Param(key, "choice", choices=tuple(spec))
    m = _CALL.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise ConfigError(f"{at}search.{key}: {_shown(repr(spec), 120)} is not a distribution; {EXAMPLE}")
    name, args = m.group(1), [a for a in m.group(2).split(",")]
    if name == "choice":
        values = [yaml.safe_load(a) for a in args if a.strip()]
        if not values:
            raise ConfigError(f"{at}search.{key}: choice() lists no values; write e.g. choice(0, 1, 2)")
        return Param(key, "choice", choices=tuple(values))
    try:
        low, high = (_number(a) for a in args) if len(args) == 2 else (None, None)
    except ValueError as e:
        raise ConfigError(f"{at}search.{key}: {name}() takes two finite numbers, got {_shown(str(e), 60)!r}; "
                          f"write e.g. {name}(1e-3, 10)") from None
    if low is None:
        raise ConfigError(f"{at}search.{key}: {name}() takes two numbers (low, high), got {len(args)}; write e.g. {name}(1e-3, 10)")
    log = name in ("loguniform", "logint")
    if not low < high:
        raise ConfigError(f"{at}search.{key}: {name}({low:g}, {high:g}) needs low < high; swap or widen them")
    if log and low <= 0:
        raise ConfigError(f"{at}search.{key}: {name}({low:g}, {high:g}) samples on a log scale, so low must be > 0; "
                          f"write e.g. {name}({high / 1000:g}, {high:g}), or use {'uniform' if name == 'loguniform' else 'int'}()")
    if name in ("int", "logint") and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{at}search.{key}: {name}({low:g}, {high:g}) takes whole numbers; write e.g. {name}({math.ceil(low)}, "
                          f"{math.floor(high)}) or uniform({low:g}, {high:g}) for a float")
    return Param(key, "int" if name in ("int", "logint") else "float", low=low, high=high, log=log)


def parse_search(search: Any, source: str = "(config)", text: str | None = None) -> list[Param]:
    """The search space of a config's `search:` section (see the module's docstring); a problem raises one ConfigError
    naming the config file, the key's line and the fix."""
    origins = _Origins(text)

    def at(key: str) -> str:
        line = origins.line(("search", key), "extra_forbidden") if origins.root is not None else None
        return f"{source} {line}: " if line else f"{source}: "

    if not search:
        raise ConfigError(f"{source} has no search: section, so there is nothing to tune; add one, e.g.\n  search:\n"
                          f"    strategy.C: loguniform(1e-3, 10)")
    if not isinstance(search, dict):
        raise ConfigError(f"{at('')}search: must map config keys to distributions, got a {type(search).__name__}; {EXAMPLE}")
    params = []
    for key, spec in search.items():
        key = str(key)
        if key in OPTIONS:
            continue
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", key, flags=re.ASCII):
            raise ConfigError(f"{at(key)}search.{_shown(key)}: a key is a dotted config key such as strategy.C; {EXAMPLE}")
        if key.split(".", 1)[0] not in TUNABLE_SECTIONS:
            raise ConfigError(f"{at(key)}search.{_shown(key)}: only {' and '.join(f'{s}.*' for s in TUNABLE_SECTIONS)} keys are searched "
                              f"(a trial changes the model's settings, not its data, seed, gate or tracking); remove it")
        params.append(Param(**{**_parse_one(key, spec, at(key)).__dict__, "where": at(key)}))
    if not params:
        options = [k for k in OPTIONS if k in search]
        raise ConfigError(f"{at(options[0] if options else '')}search: names no key to tune (only {', '.join(options)}); add one, "
                          f"e.g. strategy.C: loguniform(1e-3, 10)")
    return params


def parse_pruner(search: Any, source: str = "(config)", text: str | None = None) -> str:
    """The section's `pruner:` (`median` when absent): one of PRUNERS, or one ConfigError naming its line and the choices."""
    value = search.get("pruner", "median") if isinstance(search, dict) else "median"
    if value in PRUNERS:
        return value
    origins = _Origins(text)
    line = origins.line(("search", "pruner"), "value_error") if origins.root is not None else None
    at = f"{source} {line}: " if line else f"{source}: "
    raise ConfigError(f"{at}search.pruner: {_shown(repr(value), 60)} is not a pruner; write one of {', '.join(PRUNERS)} "
                      "(median: stop a trial below the median of earlier trials at the same epoch; successive_halving: keep the "
                      "top quarter at epochs 2, 5, 17, ...)")


def check_space(cfg: RunConfig, params: list[Param], source: str = "(config)") -> None:
    """Every range end and every choice gives a valid config (an unknown key, a value out of a setting's bounds, a
    key the strategy does not have), so no trial fails on its settings after others ran: one ConfigError with the key's
    line and the config's own message otherwise."""
    base = cfg.model_dump(mode="json", exclude={"search"})
    for p in params:
        for value in p.extremes():
            tree = json.loads(json.dumps(base))
            try:
                set_dotted(tree, p.key, value)
                config_from_dict(tree, source=source)
            except ConfigError as e:
                detail = "; ".join(line.strip() for line in str(e).splitlines()[1:] or [str(e)])
                raise ConfigError(f"{p.where or source + ': '}search.{p.key}: {p.describe()} includes {value!r}, which the config "
                                  f"refuses: {detail}; narrow the range or fix the key") from None


def trial_config(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """The config of one trial: `cfg` with the sampled values set (and no search section)."""
    tree = cfg.model_dump(mode="json", exclude={"search"})
    for key, value in params.items():
        set_dotted(tree, key, value)
    return config_from_dict(tree, source="(trial)")


def study_key(cfg: RunConfig, params: list[Param]) -> str:
    """What names a search: the config's settings (not where it is tracked) and the space. The same command resumes
    the same study; a changed config or space starts another."""
    tree = cfg.model_dump(mode="json", exclude={"search", "tracking"})
    pruner = parse_pruner(cfg.search)
    extra = [] if pruner == "median" else [pruner]  # (median: the key searches had before the option existed)
    blob = json.dumps([tree, [p.__dict__ | {"where": ""} for p in params], *extra], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "search"


def study_dir(cfg: RunConfig, params: list[Param], name: str | None = None) -> Path:
    """`<execution.work_dir>/tune/<model>-<key>/`: the study database, the trials' folders and their checkpoints."""
    return Path(cfg.execution.work_dir) / "tune" / _safe_name(name or f"{cfg.registry.model_name}-{study_key(cfg, params)}")


@dataclass
class Study:
    """An Optuna study in `<folder>/study.db`, held by this process (a lock file: two searches of one study at once
    would both resume its interrupted trials)."""

    study: optuna.Study
    folder: Path
    maximize: bool
    metric: str  # the task type's selection metric (validation)
    resumed: list[int] = field(default_factory=list)  # trial numbers found interrupted (RUNNING) and retried
    _lock: Any = None

    @property
    def finished(self) -> list[optuna.trial.FrozenTrial]:
        import optuna

        return [t for t in self.study.get_trials(deepcopy=False) if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]

    @property
    def best(self) -> optuna.trial.FrozenTrial | None:
        import optuna

        done = [t for t in self.study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        return (max if self.maximize else min)(done, key=lambda t: t.value) if done else None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def make_pruner(name: str = "median") -> optuna.pruners.BasePruner:
    """`median`: a trial is stopped when its value at an epoch is below the median of earlier trials at that epoch,
    from the second epoch on, once 3 trials finished (MedianPruner). `successive_halving`: Optuna's
    SuccessiveHalvingPruner with its defaults (Jamieson & Talwalkar 2016, asynchronous as in ASHA): rungs at epoch
    indices 1, 4, 16, ... (min_resource 1 once a trial has finished under 100 epochs, reduction factor 4); a trial
    reaching a rung goes on only if its value is in the top quarter of the values every trial had there (the best so
    far while fewer than 4 had)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource="auto", reduction_factor=4, min_early_stopping_rate=0)
    raise ValueError(f"unknown pruner {name!r}; one of {', '.join(PRUNERS)}")


def new_study(storage, maximize: bool, seed: int, trials: int, pruner: str = "median") -> optuna.Study:
    """The study every search uses: TPE (random for its first max(3, min(10, trials // 3)) trials) and the pruner
    named (`make_pruner`). `storage`: an Optuna storage or URL (None: in memory)."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, trials // 3)))
    return optuna.create_study(storage=storage, study_name="tlops", sampler=sampler, pruner=make_pruner(pruner),
                               direction="maximize" if maximize else "minimize", load_if_exists=True)


def open_study(folder: Path, metric: str, maximize: bool, seed: int, trials: int, pruner: str = "median") -> Study:
    """Create the study, or load it and retry what a killed search left RUNNING: each such trial is marked FAIL
    (tagged `interrupted`) and its parameters enqueued, so the next trial runs them again (a loop strategy resumes
    from its checkpoint under the study's folder)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigError(f"another tlops tune is running this search ({folder}); wait for it, or search under another name "
                          "with --name") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    storage = optuna.storages.RDBStorage(f"sqlite:///{(folder / STUDY_FILE).resolve()}")
    study = new_study(storage, maximize, seed, trials, pruner)
    saved = study.user_attrs.get("metric")
    if saved is not None and saved != metric:
        lock.close()
        raise ConfigError(f"the search in {folder} selected on val_{saved}, this config on val_{metric}; search under another "
                          "name with --name")
    study.set_user_attr("metric", metric)
    resumed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_system_attr(t._trial_id, "tlops_interrupted", True)
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        resumed.append(t.number)
    return Study(study, folder, maximize, metric, resumed, lock)


class Pruned(Exception):
    """A trial stopped early by the pruner (behind earlier trials at the same epoch: below their median, or out of
    the top quarter at a successive-halving rung)."""

    def __init__(self, epoch: int, value: float):
        super().__init__(f"pruned after epoch {epoch + 1} (val {value:.4g})")
        self.epoch, self.value = epoch, value


class ReportToPruner(Callback):
    """The loop's per-epoch validation metric (`key`: the epoch row's `val_<metric>`) reported to the trial; raises
    `Pruned` when the pruner says the trial is behind. Replayed rows (a resumed trial) are reported once."""

    def __init__(self, trial: optuna.Trial, key: str):
        self.trial, self.key = trial, key
        self.reported: set[int] = set()

    def report(self, row: dict[str, float]) -> None:
        epoch = int(row.get("epoch", 0))
        value = row.get(self.key)
        if value is None or epoch in self.reported or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), epoch)
        self.reported.add(epoch)

    def on_epoch_end(self, state, row: dict[str, float]) -> None:
        self.report(row)
        epoch = int(row.get("epoch", 0))
        if epoch in self.reported and self.trial.should_prune():
            raise Pruned(epoch, float(row[self.key]))

    def report_rest(self, history: list[dict[str, float]]) -> None:
        """Rows of a strategy that does not run the loop (a probe's one row, an MLP head's epochs): recorded, not pruned."""
        for row in history:
            self.report(row)


@dataclass
class TrialOutcome:
    number: int
    params: dict[str, Any]
    state: str  # complete | pruned | failed
    value: float | None = None
    seconds: float = 0.0
    error: str | None = None


def run_search(st: Study, params: list[Param], trials: int, run_trial: Callable[[optuna.Trial, dict[str, Any]], float],
               timeout: float | None = None, on_trial: Callable[[TrialOutcome], None] | None = None,
               max_failures: int = 3) -> list[TrialOutcome]:
    """Ask/tell until the study holds `trials` finished (complete or pruned) trials, `timeout` seconds have passed (no
    trial starts after it; a running one ends) or `max_failures` trials in a row failed. `run_trial(trial, values)`
    trains one trial and returns its validation value, or raises `Pruned`."""
    import optuna

    out: list[TrialOutcome] = []
    t0, failures = time.monotonic(), 0
    while len(st.finished) < trials:
        if timeout is not None and time.monotonic() - t0 >= timeout:
            break
        trial = st.study.ask()
        values = {p.key: p.suggest(trial) for p in params}
        start = time.perf_counter()
        try:
            value = float(run_trial(trial, values))
            if not math.isfinite(value):
                raise ValueError(f"the validation metric is {value}")
        except Pruned as p:
            st.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            outcome = TrialOutcome(trial.number, values, "pruned", seconds=time.perf_counter() - start, error=str(p))
        except Exception as e:  # a setting that diverges is one failed trial, not a failed search (unless they all fail)
            st.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            outcome = TrialOutcome(trial.number, values, "failed", seconds=time.perf_counter() - start, error=f"{type(e).__name__}: {e}")
            failures += 1
            out.append(outcome)
            if on_trial:
                on_trial(outcome)
            if failures >= max_failures:
                raise
            continue
        else:
            st.study.tell(trial, value)
            outcome = TrialOutcome(trial.number, values, "complete", value=value, seconds=time.perf_counter() - start)
        failures = 0
        out.append(outcome)
        if on_trial:
            on_trial(outcome)
    return out


def best_config_text(source: Path, overrides: list[str], best: dict[str, Any], out: Path) -> str:
    """The config file as the user wrote it (plus the command line's --set), the best trial's values set, no search
    section, input paths relative to where it is written: a config `tlops run` takes as is."""
    import yaml

    from tlops.config import INPUT_PATHS, parse_overrides
    from tlops.text_files import parse_yaml, read_utf8

    tree = parse_yaml(read_utf8(source, ConfigError), f"config file {source}", ConfigError, "fix the syntax there") or {}
    for key, value in parse_overrides(overrides):
        if key in INPUT_PATHS and isinstance(value, str) and value.strip():  # typed on the command line: relative to the cwd
            value = str((Path.cwd() / Path(value).expanduser()).resolve())
        set_dotted(tree, key, value)
    tree.pop("search", None)
    for key, value in best.items():
        set_dotted(tree, key, value)
    for dotted in INPUT_PATHS:
        section, name = dotted.split(".")
        node = tree.get(section)
        if isinstance(node, dict) and isinstance(node.get(name), str) and not Path(node[name]).expanduser().is_absolute():
            target = (source.parent / Path(node[name]).expanduser()).resolve()
            node[name] = os.path.relpath(target, out.parent.resolve())
    return yaml.safe_dump(tree, sort_keys=False)


__all__ = ["PRUNERS", "Param", "Pruned", "ReportToPruner", "Study", "TrialOutcome", "best_config_text", "check_space", "make_pruner",
           "new_study", "open_study", "parse_pruner", "parse_search", "run_search", "study_dir", "study_key", "trial_config"]
