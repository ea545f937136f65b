"""Task types as plugins: one module per task type (`classification`, `regression`) registers the `TaskType` that owns
the task (`base.TaskType` says what that is); `task_type(name)` looks one up by dataset.yaml `task:`."""

from tlops.task_types.base import TaskType
from tlops.task_types.registry import (
    all_task_types,
    check_config_fits,
    higher_is_better,
    register_task_type,
    task_type,
    train_probe,
    training_task,
)

__all__ = ["TaskType", "all_task_types", "check_config_fits", "higher_is_better", "register_task_type", "task_type", "train_probe",
           "training_task"]
