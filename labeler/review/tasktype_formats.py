"""Multi-label and span annotations in the review tools: their shapes there, and back to the stored text.

A run of a multi-label or span task stores each annotation as `kind.encode(value)` (labeler.tasktypes): a
JSON list of label names, or a JSON list of `{"start", "end", "type", "text"}` with code-point offsets.
What the tools speak:

    Label Studio  multi_label  `<Choices choice="multiple">`; a result {"type": "choices",
                               "value": {"choices": [names]}}
                  spans        `<Labels>` over `<Text>`; one result per region {"type": "labels", "value":
                               {"start", "end", "text", "labels": [type]}}, offsets in UTF-16 code units
                               (the browser's JavaScript string offsets)
    Argilla       multi_label  MultiLabelQuestion ("multi_label_selection"): a list of names
                  spans        SpanQuestion ("span", over the text field): a list of {"label", "start",
                               "end"}, offsets in code points (argilla-server checks them with Python's
                               len of the field's text)
    review CSV    multi_label  names separated by ";" ("" = none applies)
                  spans        the JSON list in one cell, code-point offsets (a span with "text" and "type"
                               but no offsets is placed at its first free occurrence in the text)

Every reader turns the tool's answer into an encoded value with code-point offsets; `check_value` then
checks it against the task and the run's text of the item with the task type's own `TaskType.check` (the
rules parse applies to a model's answer: known labels, no repeated label or span, the min/max label bounds,
spans inside the text whose quoted text matches it, no overlap where the task forbids it, in the same
words) and returns the one canonical encoding the run stores. Errors are one line naming the row; offset
errors add how offsets are counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeler.errors import ReviewError
from labeler.tasktypes import TaskType
from labeler.tasktypes.spans import Span, align, utf16_offsets

if TYPE_CHECKING:
    from labeler.config import TaskConfig
    from labeler.review.live_common import Pulled
    from labeler.store import RunStore

MULTI, SPANS = "multi_label", "spans"


def kind_of(task: TaskConfig) -> TaskType | None:
    """The task type of a multi-label or span task; None for a single-label one (whose path is unchanged)."""
    from labeler.tasktypes.registry import for_task

    kind = for_task(task)
    return None if kind.name == "single" else kind


def run_kind(run_dir: Path) -> TaskType | None:
    """`kind_of` the task of the run in `run_dir`."""
    from labeler.store import RunStore

    store = RunStore.open(run_dir)
    try:
        return kind_of(store.task())
    finally:
        store.close()


def names_of(kind: TaskType) -> tuple[str, ...]:
    """The label names (multi_label) or entity types (spans) of a task type."""
    names = getattr(kind, "labels", None) or getattr(kind, "types", None) or ()
    return tuple(str(n) for n in names)


def item_texts(store: RunStore) -> dict[str, str]:
    """item id -> text, for every item of the run (spans are checked against the run's own text)."""
    return {row.id: row.text for row in store.item_rows()}


# --- offsets -------------------------------------------------------------------------------------------
def codepoint_offsets(text: str, start: int, end: int) -> tuple[int, int] | None:
    """(start, end) in UTF-16 code units -> code points of `text`; None when an end falls outside the text
    or inside a character (half of a surrogate pair). The inverse of `tasktypes.spans.utf16_offsets`."""
    units, at = 0, {0: 0}
    for i, ch in enumerate(text, start=1):
        units += 2 if ord(ch) > 0xFFFF else 1
        at[units] = i
    if start not in at or end not in at:
        return None
    return at[start], at[end]


# --- the stored value, checked -------------------------------------------------------------------------
def labels_text(names: Iterable[Any]) -> str:
    return json.dumps([str(n) for n in names], ensure_ascii=False)


def spans_text(spans: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps(list(spans), ensure_ascii=False)


def _matched(names: Sequence[str], given: Any) -> str:
    """A name as the set spells it (matched case-insensitively); one outside the set stays as given."""
    g = str(given if given is not None else "").strip()
    return next((n for n in names if n.lower() == g.lower()), g)


_OFFSETS_HINT = "; offsets count code points (Label Studio's are UTF-16 units, converted on import)"


def _failed(where: str, error: str) -> ReviewError:
    """The task type's one-line reason (TaskType.check), placed; offset errors add how offsets are counted."""
    hint = _OFFSETS_HINT if " lies outside the text " in error or "but the text there is" in error else ""
    return ReviewError(f"{where}: {error}{hint}")


def _check_labels(kind: TaskType, stored: str, where: str) -> str:
    try:
        names = json.loads(stored)
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ReviewError(f"{where}: labels {stored[:60]!r} are not a list of label names")
    labels = names_of(kind)
    out = [_matched(labels, n) for n in names]
    error = kind.check(out, "")
    if error:
        raise _failed(where, error)
    return str(kind.encode(tuple(sorted(out, key=labels.index))))


def _check_spans(kind: TaskType, stored: str, text: str, where: str) -> str:
    try:
        items = json.loads(stored)
    except json.JSONDecodeError:
        items = None
    if not isinstance(items, list) or not all(isinstance(d, Mapping) for d in items):
        raise ReviewError(f"{where}: spans {stored[:60]!r} are not a JSON list of start/end/type objects")
    types = names_of(kind)
    spans: list[Span] = []
    quoted: list[tuple[str, str]] = []
    for d in items:
        type_name = _matched(types, d.get("type"))
        start, end, quote = d.get("start"), d.get("end"), d.get("text")
        if start is None and end is None:
            if not isinstance(quote, str) or not quote.strip():
                raise ReviewError(f"{where}: a span needs start and end (code points) or its text")
            quoted.append((quote, type_name))
            continue
        spans.append(Span(start, end, type_name, quote if isinstance(quote, str) else ""))
    error = kind.check(spans, text) or kind.check([Span(0, 0, t) for _, t in quoted if t not in types], text)
    if error:
        raise _failed(where, error)
    spans = [Span(s.start, s.end, s.type, text[s.start : s.end]) for s in spans]
    if quoted:  # a human's quote is placed even inside another span: the check then names the overlap
        placed, missing = align(text, quoted, taken=[(s.start, s.end) for s in spans])
        if missing:
            raise ReviewError(f"{where}: {missing} quoted span(s) not found in the item's text; give start and end")
        spans.extend(placed)
    error = kind.check(spans, text)
    if error:
        raise _failed(where, error)
    return str(kind.encode(tuple(sorted(spans))))


def check_value(kind: TaskType, stored: str, text: str | None, *, where: str) -> str:
    """The canonical `kind.encode` of one answer read from a tool (see the module docstring); raises a
    one-line ReviewError naming `where` when it does not fit the task or the item's `text`."""
    if kind.name == SPANS:
        if text is None:
            raise ReviewError(f"{where}: the item's text is unknown, so its spans cannot be checked")
        return _check_spans(kind, stored, text, where)
    return _check_labels(kind, stored, where)


def decoded(kind: TaskType, stored: str | None) -> Any:
    """The annotation of a stored text, or None when there is none or it does not decode."""
    try:
        return kind.decode(stored)
    except ValueError:
        return None


def pull_check(kind: TaskType | None, store: RunStore) -> Callable[[Pulled], str] | None:
    """For the live pull of a multi-label or span task: `check_value` of each pulled answer against the
    run's text of its item (None for a single-label task, whose labels the pull matches itself)."""
    if kind is None:
        return None
    texts = item_texts(store)

    def check(p: Pulled) -> str:
        return check_value(kind, p.label, texts.get(p.item_id), where=f"answer {p.key} (item {p.item_id})")

    return check


# --- Label Studio --------------------------------------------------------------------------------------
def ls_label_control(kind: TaskType, control: str, options: str) -> str:
    """The labeling config's label control for a multi-label or span task (placed before the Text)."""
    if kind.name == SPANS:
        return f'  <Labels name="{control}" toName="text" showInline="true">\n{options}\n  </Labels>\n'
    required = "true" if getattr(kind, "min_labels", 0) > 0 else "false"
    return (
        f'  <Choices name="{control}" toName="text" choice="multiple" showInLine="true" required="{required}">\n'
        f"{options}\n  </Choices>\n"
    )


def element_score(
    kind: TaskType, value: Any, elements: Mapping[str, float] | None, score: float | None
) -> list[float | None]:
    """One score per element of the decoded annotation `value` (each label, each span): its own confidence in
    `elements` (the result's element confidences, labeler.confidence.elements) where it has one, else `score`
    (the item's)."""
    own = elements or {}
    return [round(float(own[e]), 4) if e in own else score for e in kind.elements(value)]


def ls_results(
    kind: TaskType,
    stored: str | None,
    text: str,
    *,
    control: str,
    score: float | None,
    elements: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """A prediction's results for the stored LLM annotation: one "choices" result with every label (Label
    Studio scores a result, not a choice: the lowest of its labels' confidences), or one "labels" region per
    span at UTF-16 offsets, each scored with its own confidence in `elements` (else the item's `score`)."""
    value = decoded(kind, stored)
    if value is None:
        return []
    scores = element_score(kind, value, elements, score)
    if kind.name != SPANS:
        result: dict[str, Any] = {"from_name": control, "to_name": "text", "type": "choices",
                                  "value": {"choices": list(value)}}
        known = [s for s in scores if s is not None]
        if known and elements:
            result["score"] = min(known)
        return [result]
    out = []
    for n, (s, own) in enumerate(zip(value, scores, strict=True), start=1):
        start, end = utf16_offsets(text, s.start, s.end)
        region: dict[str, Any] = {
            "id": f"llm{n}",
            "from_name": control,
            "to_name": "text",
            "type": "labels",
            "value": {"start": start, "end": end, "text": text[s.start : s.end], "labels": [s.type]},
        }
        if own is not None:
            region["score"] = own
        out.append(region)
    return out


def ls_value(kind: TaskType, results: Sequence[Any], text: str | None, *, control: str, where: str) -> str:
    """An annotation's results in `control` as an encoded value with code-point offsets (not yet checked)."""
    mine = [r for r in results if isinstance(r, Mapping) and str(r.get("from_name")) == control]
    if kind.name != SPANS:
        names: list[Any] = []
        for r in mine:
            choices = (r.get("value") or {}).get("choices")
            names.extend(choices if isinstance(choices, list) else [choices] if choices else [])
        return labels_text(names)
    spans = []
    for r in mine:
        v = r.get("value") or {}
        start, end, labels = v.get("start"), v.get("end"), v.get("labels")
        if not isinstance(start, int) or not isinstance(end, int) or not isinstance(labels, list):
            raise ReviewError(f"{where}: a region in {control!r} has no start, end and labels; label text regions")
        at = None if text is None else codepoint_offsets(text, start, end)
        if at is None:
            size = -1 if text is None else len(text.encode("utf-16-le")) // 2
            why = "lies outside the text" if not 0 <= start < end <= size else "cuts a character in two"
            raise ReviewError(f"{where}: span {start}-{end} {why} (0-{size} UTF-16 units, as Label Studio counts)")
        for lab in labels:
            quote = v.get("text") or (text or "")[at[0] : at[1]]
            spans.append({"start": at[0], "end": at[1], "type": lab, "text": quote})
    return spans_text(spans)


# --- Argilla -------------------------------------------------------------------------------------------
def ag_question(kind: TaskType, name: str, title: str) -> dict[str, Any]:
    """The label question as `rg.Settings.serialize` writes a MultiLabelQuestion or a SpanQuestion."""
    names = names_of(kind)
    options = [{"value": o, "text": o, "description": None} for o in names]
    visible = len(names) if len(names) >= 3 else None
    if kind.name == SPANS:
        settings: dict[str, Any] = {"type": "span", "field": "text", "options": options,
                                    "visible_options": visible, "allow_overlapping": bool(kind.allow_overlap)}  # type: ignore[attr-defined]
    else:
        settings = {"type": "multi_label_selection", "options": options, "visible_options": visible,
                    "options_order": "natural"}
    # required: argilla-server publishes no dataset without a required question. A span answer may be the
    # empty list (no span in the text); a multi-label one may not (argilla-server refuses it)
    return {"name": name, "title": title, "description": None, "required": True, "settings": settings}


def ag_suggestion(
    kind: TaskType,
    stored: str | None,
    *,
    score: float | None,
    agent: str,
    elements: Mapping[str, float] | None = None,
) -> dict[str, Any] | None:
    """The suggestion of the stored LLM annotation, or None when there is nothing to suggest (argilla-server
    takes no empty list). One score per label or span: its own confidence in `elements`, else the item's."""
    value = decoded(kind, stored)
    if not value:
        return None
    if kind.name == SPANS:
        items: list[Any] = [{"label": s.type, "start": s.start, "end": s.end} for s in value]
    else:
        items = list(value)
    scores = element_score(kind, value, elements, score)
    return {"value": items, "score": None if any(s is None for s in scores) else scores, "agent": agent}


def ag_value(kind: TaskType, value: Any, *, where: str) -> str:
    """A response value (a list of names, or of {"label", "start", "end"}) as an encoded value (not yet
    checked; `None` or no value is the empty annotation)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [value] if kind.name != SPANS else value
    if value is None:
        value = []
    if not isinstance(value, list):
        raise ReviewError(f"{where}: the answer {str(value)[:60]!r} is not a list")
    if kind.name != SPANS:
        return labels_text(value)
    spans = []
    for d in value:
        if not isinstance(d, Mapping):
            raise ReviewError(f"{where}: span {str(d)[:60]!r} is not a {{label, start, end}} object")
        spans.append({"start": d.get("start"), "end": d.get("end"), "type": d.get("label", d.get("type"))})
    return spans_text(spans)


# --- the review CSV ------------------------------------------------------------------------------------
def csv_shown(kind: TaskType, stored: str | None) -> str:
    """The LLM's annotation as the review CSV shows it: "a;b" or the spans' JSON."""
    value = decoded(kind, stored)
    if value is None:
        return ""
    return ";".join(value) if kind.name != SPANS else str(kind.encode(value))


def csv_value(kind: TaskType, cell: str, *, where: str) -> str:
    """A human_label cell as an encoded value (not yet checked): "a;b" (or a JSON list), or the spans' JSON."""
    cell = cell.strip()
    if kind.name != SPANS:
        if cell.startswith("["):
            try:
                return labels_text(json.loads(cell))
            except (json.JSONDecodeError, TypeError):
                raise ReviewError(f"{where}: human_label {cell[:60]!r} is not a JSON list of names") from None
        return labels_text(p.strip() for p in cell.split(";") if p.strip() and p.strip() != "-")
    if cell in ("", "-"):
        return "[]"
    try:
        items = json.loads(cell)
    except json.JSONDecodeError as exc:
        raise ReviewError(
            f'{where}: human_label is not JSON ({exc.msg}); write spans as [{{"start": 0, "end": 3, "type": "PER"}}]'
        ) from None
    if not isinstance(items, list):
        raise ReviewError(f"{where}: human_label must be a JSON list of spans, got {type(items).__name__}")
    return spans_text(items)
