"""The review CSV: the queue as a spreadsheet people fill in, and reading it (and any CSV/TSV table) back.

`labeler review export --format csv` writes the columns
    id, text, llm_label, confidence, reasons, rank      the item (llm_label and confidence empty where the
                                                        suggestion is hidden; reasons and rank empty when
                                                        the audit is blind)
    human_label, reviewer, correction_reason, note      for the reviewer to fill in

Every cell goes through `labeler.safe_text.csv_cell` (a cell a spreadsheet would run as a formula gets a
leading '), and `parse_csv` undoes it, so ids and labels come back as they were. Rows whose human_label
is empty are not reviewed yet. One file may hold several reviewers' rows (the reviewer column) or one
reviewer's (then pass --reviewer).

Multi-label and span tasks (labeler.review.tasktype_formats): llm_label and human_label hold labels
separated by ";" ("-" when none applies) or the spans as JSON in one cell, `[{"start": 0, "end": 12,
"type": "PER"}]` with code-point offsets (`{"text": ..., "type": ...}` without offsets is placed at the
quote's first free occurrence); the import checks them against the task and the item's text.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from labeler.errors import ReviewError
from labeler.review.common import NOTE, REASON, Answer, Parsed, note_or_none, text_or_none
from labeler.review.tasktype_formats import csv_shown, csv_value
from labeler.safe_text import csv_cell, csv_uncell, visible
from labeler.store.rows import QueueEntry
from labeler.tasktypes import TaskType

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

CSV_COLUMNS = ("id", "text", "llm_label", "confidence", "reasons", "rank")
CSV_ANSWER_COLUMNS = ("human_label", "reviewer", "correction_reason", "note")


def write_queue_csv(
    path: Path, entries: Sequence[QueueEntry], *, suggest: Collection[str], blind: bool, kind: TaskType | None = None
) -> None:
    """The queue as the review CSV, in the order given; the LLM's label shown on the items in `suggest`.
    A multi-label or span task (`kind`) shows labels as "a;b" and spans as JSON (labeler.review.tasktype_formats)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*CSV_COLUMNS, *CSV_ANSWER_COLUMNS])
        for e in entries:
            show = e.item_id in suggest
            conf = "" if not show or e.confidence is None else f"{e.confidence:.4f}"
            reasons, rank = ("", "") if blind else (";".join(e.reasons), str(e.rank))
            llm = (e.llm_label or "") if kind is None else csv_shown(kind, e.llm_label)
            row = [e.item_id, e.text, llm if show else "", conf, reasons, rank, *[""] * 4]
            # ids stay verbatim (the import matches them); every other cell shows control characters visibly
            w.writerow([csv_cell(visible(c) if i and isinstance(c, str) else c) for i, c in enumerate(row)])


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV (a TSV when the name ends in .tsv), as text."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            rows = [{str(k): v if isinstance(v, str) else "" for k, v in r.items()} for r in reader]
            return [str(c) for c in reader.fieldnames or ()], rows
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ReviewError(f"{path.name} cannot be read as {delimiter!r}-separated UTF-8 text ({exc})") from None


def parse_csv(path: Path, *, kind: TaskType | None = None) -> Parsed:
    """Answers from the review CSV once filled in (see the module docstring). With a multi-label or span
    task (`kind`) human_label holds "a;b" ("-": none applies) or the spans' JSON ("[]": no span)."""
    header, rows = read_table(path)
    if not {"id", "human_label"} <= set(header):
        raise ReviewError(f"{path.name} needs the columns id and human_label (as `labeler review export` writes)")
    answers: list[Answer] = []
    items: set[str] = set()
    reviewers: set[str | None] = set()
    for i, row in enumerate(rows, start=1):

        def cell(name: str, row: dict[str, str] = row) -> str | None:
            return text_or_none(csv_uncell(row.get(name) or ""))

        item_id = cell("id")
        if item_id is None:
            continue
        items.add(item_id)
        reviewer = cell("reviewer")
        reviewers.add(reviewer)
        label = cell("human_label")
        if label is not None:
            where = f"row {i} (id {item_id})"
            if kind is not None:
                label = csv_value(kind, label, where=where)
            note = note_or_none(csv_uncell(row.get(NOTE) or ""))  # as written: no strip
            answers.append(Answer(where, item_id, reviewer, label, cell(REASON), note, order=("", float(i))))
    why = ""
    if not answers:
        why = "it has no rows"
        if rows:
            why = f"none of its {len(rows)} rows has a human_label yet; fill it in (and reviewer, or pass --reviewer)"
    return Parsed("csv", "csv", tuple(answers), frozenset(items), frozenset(reviewers), {}, (), why)
