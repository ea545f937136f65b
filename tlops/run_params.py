"""The run's config as flat params, keeping only the settings that apply to this run: a text probe shows no
image size, audio clip length or MLP width, so a reader of the run sees what shaped the model and nothing else.
The full resolved config is still logged whole (`config.yaml`)."""

from __future__ import annotations

import json

from tlops.strategies.registry import all_strategies

# Settings read only for one modality (the config descriptions say so: "text: tokens per input", ...).
MODALITY_OF = {
    "backbone.max_length": "text",
    "backbone.image_size": "image",
    "backbone.clip_seconds": "audio",
    "validation.min_chars": "text",
    "validation.max_chars": "text",
    "validation.min_image_side": "image",
    "validation.max_image_side": "image",
    "validation.min_audio_seconds": "audio",
    "validation.max_audio_seconds": "audio",
    "validation.min_audio_peak": "audio",
}
# Strategy settings read only for one head kind (`strategy.head`) or one task type (dataset.yaml `task:`) are declared by
# each strategy where it registers (`StrategyEntry.setting_heads`, `setting_tasks`).


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; lists as JSON."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


def applies(key: str, config: dict, modality: str | None, uses_unlabeled: bool, task: str | None = None) -> bool:
    """Does the flat config key `key` change anything in a run of this config on data of `modality` and `task`?
    (None: unknown, every modality or task setting is kept)."""
    if modality is not None and MODALITY_OF.get(key, modality) != modality:
        return False
    if key == "validation.allow_unlabeled_test_overlap":
        return uses_unlabeled
    strategy = config.get("strategy", {})
    entry = all_strategies().get(strategy.get("name"))
    if key.startswith("strategy.") and entry is not None:
        setting = key.removeprefix("strategy.")
        if task is not None and entry.setting_tasks.get(setting, task) != task:
            return False
        head = entry.setting_heads.get(setting)
        return head is None or strategy.get("head") == head
    return True


def applicable_params(config: dict, modality: str | None, uses_unlabeled: bool = False, task: str | None = None) -> dict[str, str]:
    """The flat params of `config` (a dumped RunConfig) that apply to this run."""
    return {k: v for k, v in flatten(config).items() if applies(k, config, modality, uses_unlabeled, task)}
