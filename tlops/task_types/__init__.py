"""Task types as plugins: one module per task type (`classification`, `regression`, ...) registers the `TaskType` that
owns the task (`base.TaskType` says what that is); `task_type(name)` looks one up by dataset.yaml `task:`.

This package exports the registry only: the core imports it to look task types up, while `base.TaskType`'s default
hooks import the core (features, the model package), so a task type module imports `tlops.task_types.base` itself."""

from tlops.task_types.registry import (
    all_task_types,
    check_config_fits,
    higher_is_better,
    register_task_type,
    task_type,
    train_probe,
    training_task,
)

__all__ = ["all_task_types", "check_config_fits", "higher_is_better", "register_task_type", "task_type", "train_probe",
           "training_task"]
