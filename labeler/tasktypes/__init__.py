"""Task types: what one annotation of an item is, and everything a stage needs to know about its shape.

    single        one label from the set                 (the default; every existing task)
    multi_label   a set of labels from the set            (`min_labels`, `max_labels`)
    spans         typed character spans of the item text  (`allow_overlap`)

A task type is one small protocol (`TaskType`): how the answer is constrained (a JSON schema for
`response_format`, a GBNF grammar for llama.cpp), how an answer is parsed into an annotation, how the
confidence of each element of an annotation is read off several samples or members, how two annotations
are compared, and how a list of them is evaluated against human annotations. Stages call the protocol
they get from `registry.for_task(task)`; none of them asks which type it has. This module is the
protocol and the config keys only (config imports it); the implementations load through `registry`.

Annotations are plain immutable values: a label name (single), a sorted tuple of label names
(multi_label), a tuple of `Span` sorted by position (spans). Each has *elements* (the label; each label;
each span) named by `element_name`, which routing reasons and per-element confidences use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from labeler.errors import ConfigError

TASK_TYPES = ("single", "multi_label", "spans")


@dataclass(frozen=True)
class Parsed:
    """One answer read as an annotation, or the reason it could not be (`error`). `dropped` counts the parts of
    the answer that were left out rather than invented (a quoted span not found in the text)."""

    value: Any
    error: str | None = None
    dropped: int = 0


class TaskType(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def elementwise(self) -> bool:
        """True when an annotation is a set of elements scored one by one (multi_label, spans); False for
        single, whose confidence is a distribution over the label set."""
        ...

    def response_format(self, words: Sequence[str]) -> dict[str, Any]:
        """The OpenAI `response_format` (json_schema) that admits exactly the well-formed answers."""
        ...

    def grammar(self, words: Sequence[str]) -> str:
        """The llama.cpp GBNF grammar of the same JSON answers."""
        ...

    def parse(self, raw: str, text: str) -> Parsed:
        """The annotation in a model's answer `raw` to the item `text`."""
        ...

    def check(self, value: Any, text: str) -> str | None:
        """Why the candidate annotation `value` does not fit the task and the item `text` (one line), or None.
        The one place each rule is worded; `parse` and the review import call it. `value` is shaped like an
        annotation with names already matched to the set where they could be (a name outside it stays as
        given): single, a label name; multi_label, a sequence of names, in the answer's order; spans, a
        sequence of `Span` (a non-empty `Span.text` must be the text at its offsets)."""
        ...

    def calibration_group(self, element: str) -> str:
        """The calibrator an element's confidence goes through: the element itself for labels, its entity
        type ("type PER") for spans; an element the type does not name (EMPTY) is its own group."""
        ...

    def calibration_groups(self) -> tuple[str, ...]:
        """Every group `calibration_group` can return for an element of an annotation (EMPTY aside)."""
        ...

    def encode(self, value: Any) -> str | None:
        """The annotation as the one text the run store, the exports and the review files keep (None stays None):
        single, the label name; multi_label, a JSON list of names; spans, a JSON list of
        `{"start", "end", "type", "text"}` objects (code-point offsets)."""
        ...

    def decode(self, stored: str | None) -> Any:
        """The annotation `encode` wrote (None stays None); a malformed text raises ValueError naming it."""
        ...

    def elements(self, value: Any) -> tuple[str, ...]:
        """The named elements of an annotation (what confidence and routing speak of)."""
        ...

    def agreement(self, a: Any, b: Any) -> float:
        """How far two annotations of one item agree, 1.0 = the same."""
        ...

    def evaluate(self, truth: Sequence[Any], pred: Sequence[Any], *, n_boot: int, seed: int) -> dict[str, Any]:
        """The error structure of `pred` against `truth` (one annotation per item each), with intervals."""
        ...


def element_shares(samples: Sequence[Any], kind: TaskType) -> dict[str, float]:
    """Per element, the share of `samples` (self-consistency samples or ensemble members' annotations of one
    item) that contain it: the vote share of a label, of a label in a label set, of a span with its type."""
    if not samples:
        return {}
    counts: dict[str, int] = {}
    for s in samples:
        for e in set(kind.elements(s)):
            counts[e] = counts.get(e, 0) + 1
    return {e: c / len(samples) for e, c in sorted(counts.items())}


def one_of(names: Sequence[str]) -> str:
    """The names of a set as the checks list them (shortened past 200 characters)."""
    listed = ", ".join(names)
    return listed if len(listed) <= 200 else listed[:197] + "..."


def doubtful(shares: Mapping[str, float], threshold: float) -> list[str]:
    """The elements whose confidence is below `threshold`, least confident first (routing names them)."""
    return [e for e, p in sorted(shares.items(), key=lambda kv: (kv[1], kv[0])) if p < threshold]


@dataclass(frozen=True)
class TaskKind:
    """`[task] type` and its settings, as the task config gives them."""

    type: str = "single"
    min_labels: int = 0
    max_labels: int | None = None
    allow_overlap: bool = False

    @property
    def elementwise(self) -> bool:
        """Whether annotations of this type are scored element by element (`TaskType.elementwise`)."""
        return self.type != "single"


KIND_KEYS = frozenset({"type", "min_labels", "max_labels", "allow_overlap"})


def parse_kind(task: Mapping[str, Any], n_labels: int) -> TaskKind:
    """The task type keys of a `[task]` table, checked: errors name the key and the fix."""
    kind = task.get("type", "single")
    if kind not in TASK_TYPES:
        raise ConfigError(f"task.type must be one of {', '.join(TASK_TYPES)}, got {kind!r}")
    given = sorted(k for k in ("min_labels", "max_labels", "allow_overlap") if k in task)
    own = {"multi_label": {"min_labels", "max_labels"}, "spans": {"allow_overlap"}}.get(kind, set())
    stray = [k for k in given if k not in own]
    if stray:
        raise ConfigError(f"task.{stray[0]} does not apply to task.type = {kind!r}; remove it")
    lo, hi = task.get("min_labels", 0), task.get("max_labels")
    for key, value in (("min_labels", lo), ("max_labels", hi)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"task.{key} must be a whole number >= 0, got {value!r}")
    if hi is not None and not lo <= hi <= n_labels:
        raise ConfigError(f"task.max_labels must lie between min_labels ({lo}) and the number of labels ({n_labels}), "
                          f"got {hi}")
    if lo > n_labels:
        raise ConfigError(f"task.min_labels must be at most the number of labels ({n_labels}), got {lo}")
    overlap = task.get("allow_overlap", False)
    if not isinstance(overlap, bool):
        raise ConfigError(f"task.allow_overlap must be true or false, got {overlap!r}")
    return TaskKind(kind, lo, hi, overlap)
