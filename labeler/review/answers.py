"""Reading a review tool's export: which format it is, its answers, and checking them against the run.

`read_answers` tells the formats apart by their content (the name's suffix only picks the parser family):

    .csv / .tsv   our review CSV (columns id, human_label)
                  Label Studio's CSV/TSV export (columns item_id and annotator / annotation_id / the control)
    .json         Label Studio's JSON export (tasks with "data" and "annotations")
                  Label Studio's JSON-MIN export (flat records with item_id and annotator / annotation_id)
                  Argilla records (a list with "fields"/"responses", or flattened "<question>.responses")
                  the Argilla REST API's {"items": [...]}
    .jsonl        Argilla records, one a line (Label Studio writes no JSON Lines)

A file that yields no answer is an error saying why (no annotation yet, every one skipped, the label
control or question named differently, only drafts ...), never a silent import of nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from labeler.errors import ReviewError
from labeler.review.argilla import parse_argilla
from labeler.review.common import LABEL, Answer, Parsed
from labeler.review.csvfile import parse_csv, read_table
from labeler.review.labelstudio import parse_labelstudio, parse_labelstudio_flat
from labeler.review.tasktype_formats import check_value
from labeler.store.rows import Review
from labeler.tasktypes import TaskType

FORMATS = ("labelstudio", "argilla", "csv")
_LS_FLAT_KEYS = frozenset({"annotator", "annotation_id"})


def _load_json(path: Path, fmt: str | None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        hint = f"export JSON from {fmt}" if fmt else "pass --format csv for a CSV file"
        raise ReviewError(f"{path.name} is not JSON ({exc}); {hint}") from None
    except UnicodeDecodeError:
        raise ReviewError(f"{path.name} is not UTF-8 text; pass the file the review tool exported") from None


def _load_jsonl(path: Path) -> list[Any]:
    out = []
    with path.open(encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ReviewError(f"{path.name} line {n} is not JSON ({exc.msg}); one record a line") from None
    return out


def _table(path: Path, fmt: str | None, label_control: str, kind: TaskType | None = None) -> Parsed:
    header, rows = read_table(path)
    cols = set(header)
    ours = {"id", "human_label"} <= cols
    label_studio = "item_id" in cols and bool(cols & (_LS_FLAT_KEYS | {label_control}))
    if fmt == "csv" or (fmt is None and ours):
        return parse_csv(path, kind=kind)
    if fmt in (None, "labelstudio") and label_studio:
        return parse_labelstudio_flat(rows, fmt="labelstudio-csv", label_control=label_control, kind=kind)
    if fmt == "argilla":
        raise ReviewError(
            f"{path.name}: Argilla exports are JSON; write them with "
            "json.dump(dataset.records.to_list(flatten=True), f)"
        )
    if "item_id" in cols and fmt in (None, "labelstudio"):  # our tasks' data, but no annotation column
        raise ReviewError(
            f"{path.name}: a Label Studio CSV export with no annotations yet ({len(rows)} rows, no "
            f"{label_control!r} column); label tasks in Label Studio, then export again"
        )
    raise ReviewError(
        f"{path.name} is neither the review CSV (columns id, human_label, as `labeler review export --format csv` "
        "writes) nor a Label Studio CSV export (columns item_id, annotator, label); its columns: "
        + ", ".join(header[:12])
    )


def _json_shape(data: Any) -> str | None:
    """"labelstudio", "labelstudio-min" or "argilla" by the first record's keys; None when unknown."""
    if isinstance(data, Mapping):
        if isinstance(data.get("items"), list):
            return "argilla"
        data = [data]
    first = next((r for r in data if isinstance(r, Mapping)), None) if isinstance(data, list) else None
    if first is None:
        return None
    keys = set(first)
    if "data" in keys and ("annotations" in keys or "predictions" in keys or "id" in keys):
        return "labelstudio"
    if "item_id" in keys and keys & _LS_FLAT_KEYS:
        return "labelstudio-min"
    if keys & {"fields", "responses", "external_id"} or any(str(k).endswith(".responses") for k in keys):
        return "argilla"
    return None


def _parse_json(
    data: Any,
    fmt: str | None,
    *,
    name: str,
    label_control: str,
    include_drafts: bool,
    jsonl: bool,
    kind: TaskType | None = None,
) -> Parsed:
    if isinstance(data, list) and not data:
        raise ReviewError(
            f"{name} is an empty list (0 tasks or records): no answers yet; Label Studio's default export leaves "
            "out tasks with no annotation and skipped ones, so a project with only skips exports like this"
        )
    shape = _json_shape(data)
    if fmt == "labelstudio" and shape != "labelstudio-min":
        shape = "labelstudio"
    elif fmt == "argilla":
        shape = "argilla"
    if shape == "labelstudio":
        return parse_labelstudio(data, label_control=label_control, kind=kind)
    if shape == "labelstudio-min":
        records = data if isinstance(data, list) else [data]
        return parse_labelstudio_flat(records, fmt="labelstudio-min", label_control=label_control, kind=kind)
    if shape == "argilla":
        return parse_argilla(
            data,
            include_drafts=include_drafts,
            label_control=label_control,
            fmt="argilla-jsonl" if jsonl else None,
            kind=kind,
        )
    first = data[0] if isinstance(data, list) else data
    keys = ", ".join(map(str, list(first)[:10])) if isinstance(first, Mapping) else type(first).__name__
    raise ReviewError(
        f"{name}: not an export this tool reads (first record: {keys}); export JSON from Label Studio "
        "(tasks with data.item_id) or records from Argilla, or pass --format"
    )


def read_answers(
    path: Path,
    fmt: str | None = None,
    *,
    label_control: str = LABEL,
    include_drafts: bool = False,
    kind: TaskType | None = None,
) -> Parsed:
    """What `path` holds (the format guessed from the content when `fmt` is None; see the module
    docstring). Raises ReviewError when the file yields no answer, saying why. `kind`: the task type of a
    multi-label or span task (labeler.review.tasktype_formats), None for single labels."""
    if not path.is_file():
        raise ReviewError(f"{path} not found; pass the file your review tool exported")
    if fmt is not None and fmt not in FORMATS:
        raise ReviewError(f"unknown review format {fmt!r}; use one of {', '.join(FORMATS)}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv") or fmt == "csv":
        parsed = _table(path, fmt, label_control, kind)
    else:
        jsonl = suffix in (".jsonl", ".ndjson")
        data = _load_jsonl(path) if jsonl else _load_json(path, fmt)
        parsed = _parse_json(
            data,
            fmt,
            name=path.name,
            label_control=label_control,
            include_drafts=include_drafts,
            jsonl=jsonl,
            kind=kind,
        )
    if not parsed.answers:
        raise ReviewError(f"{path.name} ({parsed.fmt}): no answers to import: {parsed.empty_why}")
    return parsed


def check_answers(
    answers: Iterable[Answer],
    *,
    item_ids: set[str] | frozenset[str],
    labels: Sequence[str],
    reasons: Sequence[str],
    default_reviewer: str | None,
    source: str,
    adjudication: bool = False,
    kind: TaskType | None = None,
    texts: dict[str, str] | None = None,
) -> list[Review]:
    """Validate answers against the run: known item ids, labels and correction reasons (case-insensitive,
    stored as the config spells them), a reviewer for each. Errors name the row and the fix. A multi-label
    or span task (`kind`, with the run's item `texts`) checks each answer with `tasktype_formats.check_value`."""
    canon = {lab.lower(): lab for lab in labels}
    why = {r.lower(): r for r in reasons}
    out = []
    for a in answers:
        if a.item_id not in item_ids:
            raise ReviewError(f"{a.where}: unknown item id {a.item_id!r}; import into the run it was exported from")
        label: str | None = canon.get(a.label.strip().lower())
        if kind is not None:
            label = check_value(kind, a.label, (texts or {}).get(a.item_id), where=a.where)
        if label is None:
            raise ReviewError(f"{a.where}: label {a.label!r} is not one of: {', '.join(labels)}")
        reason = None
        if a.correction_reason not in (None, ""):
            reason = why.get(str(a.correction_reason).strip().lower())
            if reason is None:
                raise ReviewError(
                    f"{a.where}: correction reason {a.correction_reason!r} is not one of: {', '.join(reasons)} "
                    "(task [review] reasons); use one of them or leave it empty"
                )
        reviewer = a.reviewer or default_reviewer
        if not reviewer:
            raise ReviewError(f"{a.where}: no reviewer; fill the reviewer column or pass --reviewer NAME")
        out.append(Review(a.item_id, reviewer, label, reason, a.note or None, source, adjudication or a.adjudication))
    return out
