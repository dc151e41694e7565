"""What every review format shares: the question names, one answer as read from a file, what a file held.

The labeling interfaces we write (Label Studio config, Argilla settings, the CSV) name their questions
"label" (the single choice among the task's labels), "correction_reason" and "note". A tool's export is
read into a `Parsed`: its answers (`Answer`, not yet checked against the run), which items it lists
(answered or not: the scope a re-import syncs) and, for a CSV, which reviewers it speaks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

LABEL, REASON, NOTE = "label", "correction_reason", "note"


@dataclass(frozen=True)
class Answer:
    """One answer as read from a file, before validation; `where` names its place for error messages.
    `order` ranks one reviewer's answers to one item: the largest is the latest and is kept."""

    where: str
    item_id: str
    reviewer: str | None
    label: str
    correction_reason: str | None = None
    note: str | None = None
    order: tuple[str, float] = ("", 0.0)  # (updated or created time as ISO text, annotation id or row)
    adjudication: bool = False  # Label Studio's ground truth (labelstudio.ground_truth)


@dataclass(frozen=True)
class Parsed:
    """What one export file holds.

    tool       the review tool, stored as the reviews' source: labelstudio, argilla or csv
    fmt        the shape read: labelstudio, labelstudio-min (JSON-MIN), labelstudio-csv, argilla,
               argilla-jsonl, argilla-rest or csv
    items      every item id the file lists, answered or not
    reviewers  the reviewers a CSV speaks for (None in it: rows that name none); None for a tool's
               export, which lists every reviewer of the project
    aliases    other names of a reviewer seen in the file (e-mail -> Label Studio user id)
    empty_why  why there is no answer, when there is none (names the fix)
    project    the tool's project the file came from, where the file says (Label Studio's JSON export)
    """

    tool: str
    fmt: str
    answers: tuple[Answer, ...]
    items: frozenset[str]
    reviewers: frozenset[str | None] | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    empty_why: str = ""
    project: str | None = None


def score(value: float | None) -> float | None:
    """A confidence as written to a review tool: 4 decimals (0.429, not 0.42899999999999994)."""
    return None if value is None else round(float(value), 4)


def text_or_none(value: object) -> str | None:
    """A cell or JSON value as stripped text; None when empty."""
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def note_or_none(value: object) -> str | None:
    """A reviewer's note as written (leading spaces, tabs and line breaks kept); None when empty or blank."""
    if value is None:
        return None
    s = str(value)
    return s if s.strip() else None
