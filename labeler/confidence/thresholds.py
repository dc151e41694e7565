"""Per-class minimum element confidence for multi-label and span annotations (the elementwise "correction").

A multi-label annotation's elements are its labels, a span annotation's its typed spans; each chosen element
has a confidence (its vote share across self-consistency samples or members, labeler.confidence.elements).
The thresholds name a class — a label, or a span type — and the lowest confidence an element of that class
needs to stay in the annotation: an element below it is dropped. `labeler tune` fits them on human labels
(labeler.tune.elements) and stores them in the run as a correction of kind THRESHOLDS (offsets = class ->
threshold); every combine applies them (`threshold_rows`). Pure Python: labeling does not load numpy.

    element_class(part)            a label name, or a span's type
    threshold_value(...)           one annotation with its low-confidence elements dropped
    threshold_rows(rows, ...)      combined rows, thresholded; the label before in `raw_label`
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from labeler.confidence.elements import EMPTY
from labeler.store.rows import CombinedRow
from labeler.tasktypes import TaskType

THRESHOLDS = "element_thresholds"  # the kind of a stored correction of this module


def element_class(part: Any) -> str:
    """The class a threshold names for one part of an annotation: a label name itself, a span's type."""
    return part if isinstance(part, str) else str(part.type)


def threshold_value(
    value: Any, dist: Mapping[str, float], kind: TaskType, thresholds: Mapping[str, float], *, min_keep: int = 0
) -> tuple[Any, dict[str, float]]:
    """`value` (a decoded annotation) without the parts whose element confidence (`dist`: element name ->
    confidence; a part without one keeps its place) lies below its class's threshold; at least `min_keep`
    parts stay (the most confident). Returns the annotation and its element confidences; an annotation left
    empty has EMPTY with 1 - the highest dropped confidence (nothing else said it was empty)."""
    parts = tuple(value or ())
    if not parts or not thresholds:
        return value, dict(dist)
    names = dict(zip(parts, kind.elements(value), strict=True))
    conf = {p: float(dist.get(names[p], 1.0)) for p in parts}
    keep = [p for p in parts if conf[p] >= float(thresholds.get(element_class(p), 0.0))]
    if len(keep) < min_keep:
        keep = sorted(parts, key=lambda p: -conf[p])[:min_keep]
    kept = kind.decode(kind.encode(tuple(p for p in parts if p in keep)))
    if len(kept) == len(parts):
        return value, dict(dist)
    if not kept:
        return kept, {EMPTY: 1.0 - max(conf.values())}
    return kept, {names[p]: dist[names[p]] for p in kept if names[p] in dist}


def threshold_rows(
    rows: Iterable[CombinedRow], thresholds: Mapping[str, float] | None, kind: TaskType, *, min_keep: int = 0
) -> Iterator[CombinedRow]:
    """Every row with `threshold_value` applied (rows without a label or element confidences as they are);
    a changed row keeps its label before in `raw_label`."""
    for row in rows:
        if not thresholds or row.label is None or not row.distribution:
            yield row
            continue
        value = kind.decode(row.label)
        kept, dist = threshold_value(value, row.distribution, kind, thresholds, min_keep=min_keep)
        if kept == value:
            yield row
            continue
        yield replace(row, label=kind.encode(kept), distribution=dist, confidence=min(dist.values()) if dist else None,
                      raw_label=row.label)
