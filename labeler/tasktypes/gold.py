"""A corpus's own human annotation of an item, read from one cell of the input's gold column.

    read_gold(kind, cell, text=None) -> the annotation, as `kind` keeps it (kind.encode writes it back)

    single       the label name, as the cell has it (matching it to the label set is labeler.humans')
    multi_label  `a; b` (`;`-separated names) or a JSON list of names; an empty cell or `[]` is no label
    spans        a JSON list of {"start", "end", "type"} objects (end exclusive, code points; "label" is
                 read for "type", "text" is optional); with the item `text` the offsets are checked
                 against it and each span's text is taken from it

The same reader takes what `kind.encode` wrote (a JSON list), so a review file or a stored annotation reads
too. Label and type names are matched to the set case-insensitively and come back as the config spells
them. A cell that cannot be read raises ValueError with a one-line reason naming what is wrong.
Pure functions; the input reader and the evaluation call them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from labeler.tasktypes import TaskType
from labeler.tasktypes.spans import Span

if TYPE_CHECKING:
    from labeler.inputs import Row


def _canon(names: Sequence[str], what: str) -> Callable[[Any], str]:
    lower = {n.lower(): n for n in names}

    def canon(name: Any) -> str:
        found = lower.get(str(name).strip().lower())
        if found is None:
            raise ValueError(f"{what} {str(name).strip()[:60]!r} is not one of {', '.join(names)[:200]}")
        return found

    return canon


def _single(kind: Any, cell: str, text: str | None) -> str:
    value = cell.strip()
    if not value:
        raise ValueError("the gold cell is empty")
    return value


def _multi_label(kind: Any, cell: str, text: str | None) -> tuple[str, ...]:
    labels: tuple[str, ...] = kind.labels
    canon = _canon(labels, "label")
    s = cell.strip()
    if s.startswith("["):
        try:
            names = json.loads(s)
        except json.JSONDecodeError:
            raise ValueError(f"gold labels {s[:60]!r} are neither a JSON list nor ';'-separated names") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"gold labels {s[:60]!r} are not a JSON list of label names")
    else:
        names = [p for p in s.split(";") if p.strip()]
    found = {canon(n) for n in names}
    return tuple(lab for lab in labels if lab in found)


def _spans(kind: Any, cell: str, text: str | None) -> tuple[Span, ...]:
    canon = _canon(kind.types, "span type")
    s = cell.strip()
    if not s:
        return ()
    try:
        items = json.loads(s)
    except json.JSONDecodeError:
        raise ValueError(f"gold spans {s[:60]!r} are not JSON; write a list of start/end/type objects") from None
    if not isinstance(items, list):
        raise ValueError(f"gold spans {s[:60]!r} are not a JSON list of start/end/type objects")
    out = []
    for d in items:
        if not isinstance(d, dict) or "start" not in d or "end" not in d or not ("type" in d or "label" in d):
            raise ValueError(f"gold span {json.dumps(d)[:60]} needs start, end and type")
        start, end = d["start"], d["end"]
        if isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) or not isinstance(end, int):
            raise ValueError(f"gold span offsets {start!r}-{end!r} are not whole numbers")
        limit = len(text) if text is not None else end
        if not 0 <= start < end <= limit:
            raise ValueError(f"gold span {start}-{end} lies outside the text (0-{limit})")
        kind_name = canon(d.get("type", d.get("label")))
        out.append(Span(start, end, kind_name, text[start:end] if text is not None else str(d.get("text", ""))))
    return tuple(sorted(set(out)))


_READERS: dict[str, Callable[[Any, str, str | None], Any]] = {
    "single": _single,
    "multi_label": _multi_label,
    "spans": _spans,
}


def read_gold(kind: TaskType, cell: str, *, text: str | None = None) -> Any:
    """The annotation in one gold cell for a task of type `kind` (see the module docstring); ValueError
    with a one-line reason when the cell cannot be read."""
    reader = _READERS.get(kind.name)
    if reader is None:
        raise ValueError(f"no gold reader for task type {kind.name!r}")
    return reader(kind, str(cell), text)


def read_annotation(kind: TaskType, stored: str, *, text: str | None = None) -> Any | None:
    """A human annotation as the run store holds it (`kind.encode`, or the raw gold cell of a run ingested
    before cells were made canonical), read by `read_gold`; None when it cannot be read."""
    try:
        return read_gold(kind, stored, text=text)
    except ValueError:
        return None


def canonical_rows(kind: TaskType, rows: Iterable[Row]) -> Iterator[Row]:
    """The input's rows with each gold cell of a multi-label or span task as `kind.encode` writes it, so the
    run store holds one spelling of an annotation whoever gave it (a review import, a live pull, the gold
    column: labeler.humans compares votes as those texts). A cell that cannot be read is refused in one
    line naming the item. Single-label cells pass as they are (labeler.humans matches them to the set)."""
    from labeler.errors import InputError

    for row in rows:
        if row.gold is None or kind.name == "single" or row.skip is not None:
            yield row
            continue
        try:
            gold = kind.encode(read_gold(kind, row.gold, text=row.item.text))
        except ValueError as e:
            raise InputError(f"item {row.item.id!r}: its gold cell cannot be read: {e}; fix the cell or leave it "
                             "empty") from None
        yield replace(row, gold=gold)
