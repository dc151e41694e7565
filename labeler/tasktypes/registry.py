"""The task type of a task: the one place that maps `[task] type` to its implementation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from labeler.errors import ConfigError
from labeler.tasktypes import TASK_TYPES, TaskType

if TYPE_CHECKING:
    from labeler.config import TaskConfig


def for_task(task: TaskConfig) -> TaskType:
    k = task.kind
    return task_type(k.type, task.label_names, min_labels=k.min_labels, max_labels=k.max_labels,
                     allow_overlap=k.allow_overlap)


def task_type(
    name: str,
    labels: Sequence[str],
    *,
    min_labels: int = 0,
    max_labels: int | None = None,
    allow_overlap: bool = False,
) -> TaskType:
    """The task type called `name` over `labels` (label names, or entity types for spans)."""
    if name == "single":
        from labeler.tasktypes.single import Single

        return Single(tuple(labels))
    if name == "multi_label":
        from labeler.tasktypes.multi_label import MultiLabel

        return MultiLabel(tuple(labels), min_labels=min_labels, max_labels=max_labels)
    if name == "spans":
        from labeler.tasktypes.spans import Spans

        return Spans(tuple(labels), allow_overlap=allow_overlap)
    raise ConfigError(f"task.type must be one of {', '.join(TASK_TYPES)}, got {name!r}")
