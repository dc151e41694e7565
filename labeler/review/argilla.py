"""Argilla 2.x: the dataset settings and records we write, and the exports we read back.

`labeler review export --format argilla --out records.json` writes records as `Record.to_dict` gives them
(`rg.Record.from_dict` reads them) and records.settings.json as `Settings.serialize` does
(`rg.Settings.from_json`): a text field, the questions "label", "correction_reason" and "note", metadata
(unless the audit is blind) and the task distribution {"strategy": "overlap", "min_submitted": overlap}.
The LLM's label is a suggestion whose agent is "labeler/<run id>/<model>": argilla-server accepts only
letters, digits, - _ : . / and spaces there (AGENT_PATTERN), so anything else becomes "-".

Read back (`parse_argilla`): a JSON list of records in any of the SDK's shapes, JSON Lines (one record a
line) or the REST API's {"items": [...]}. The record id (REST: external_id) is the item id; the
responding user's id names the reviewer.

Response status, one rule for every shape (`response_counts`, used by the file import and the live pull):
a "submitted" response counts; a "draft" counts only with include_drafts; a "discarded" one never; a
response without a status never counts. The nested shape of `dataset.records.to_json` (and JSON Lines of
it) writes no status at all, so a discarded or draft answer cannot be told from a submitted one there:
none of its responses counts, and the import names the export that carries statuses
(`json.dump(dataset.records.to_list(flatten=True), f)` or the REST API's records).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from labeler.errors import ReviewError
from labeler.review.candidates import REASONS
from labeler.review.common import LABEL, NOTE, REASON, Answer, Parsed, note_or_none, score, text_or_none
from labeler.review.tasktype_formats import ag_question, ag_suggestion, ag_value
from labeler.store.rows import QueueEntry
from labeler.tasktypes import TaskType

AGENT_PATTERN = r"^[a-zA-Z0-9-_:\.\/\s]*[a-zA-Z0-9][a-zA-Z0-9-_:\.\/\s]*$"  # argilla-server 2.8 AGENT_REGEX
ROUTING_REASONS = REASONS  # the metadata's terms: every reason a queue entry can carry


def suggestion_agent(run_id: str, model: str) -> str:
    """A suggestion agent argilla-server accepts: "labeler/<run id>/<model>", other characters as "-"."""
    return re.sub(r"[^a-zA-Z0-9\-_:./\s]", "-", f"labeler/{run_id}/{model}")[:200]


# --- export -------------------------------------------------------------------------------------------
def _question(name: str, options: Sequence[str], required: bool, title: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "description": None,
        "required": required,
        "settings": {
            "type": "label_selection",
            "options": [{"value": o, "text": o} for o in options],
            "visible_options": len(options) if len(options) >= 3 else None,
        },
    }


def _metadata(name: str, settings: dict[str, Any], visible: bool) -> dict[str, Any]:
    return {
        "name": name,
        "title": name,
        "type": settings["type"],
        "visible_for_annotators": visible,
        "settings": {**settings, "visible_for_annotators": visible},
    }


def argilla_settings(
    labels: Sequence[str],
    reasons: Sequence[str],
    *,
    guidelines: str = "",
    overlap: int = 1,
    blind: bool = False,
    kind: TaskType | None = None,
) -> dict[str, Any]:
    """Dataset settings as `rg.Settings.serialize` writes them. With `blind` there is no metadata. A
    multi-label task (`kind`) asks a MultiLabelQuestion, a span task a SpanQuestion over the text (and
    the LLM's annotation is no metadata term)."""
    text_field = {"type": "text", "use_markdown": False}
    metadata = [
        _metadata("rank", {"type": "integer", "min": None, "max": None}, True),
        _metadata("reasons", {"type": "terms", "values": list(ROUTING_REASONS)}, False),
        _metadata("llm_label", {"type": "terms", "values": list(labels)}, False),
        _metadata("confidence", {"type": "float", "min": None, "max": None}, False),
    ]
    if kind is not None:
        metadata = [m for m in metadata if m["name"] != "llm_label"]
    label = _question(LABEL, labels, True, "Label") if kind is None else ag_question(kind, LABEL, "Label")
    return {
        "guidelines": guidelines or "Choose the label that fits the text.",
        "fields": [{"name": "text", "title": "text", "required": True, "description": None, "settings": text_field}],
        "questions": [
            label,
            _question(REASON, reasons, False, "If you changed the suggestion, why?"),
            {"name": NOTE, "title": "Note", "description": None, "required": False, "settings": text_field},
        ],
        "vectors": [],
        "metadata": [] if blind else metadata,
        "allow_extra_metadata": False,
        "distribution": {"strategy": "overlap", "min_submitted": overlap},
    }


def argilla_records(
    entries: Sequence[QueueEntry],
    *,
    agent: str,
    suggest: Collection[str],
    blind: bool = False,
    kind: TaskType | None = None,
) -> list[dict[str, Any]]:
    """Records as `Record.to_dict` writes them, in the order given: the record id is the item id; the
    LLM's label is a suggestion on the items in `suggest`; with `blind` the metadata is empty. A
    multi-label or span task (`kind`): the suggestion is the list of labels or of spans, each scored."""
    records = []
    for e in entries:
        meta: dict[str, Any] = {} if blind else {"rank": e.rank, "reasons": list(e.reasons)}
        suggestions: dict[str, Any] = {}
        if e.item_id in suggest and e.llm_label is not None and kind is not None:
            if e.confidence is not None:
                meta["confidence"] = score(e.confidence)
            sugg = ag_suggestion(kind, e.llm_label, score=score(e.confidence), agent=agent, elements=e.elements)
            if sugg is not None:
                suggestions[LABEL] = sugg
        elif e.item_id in suggest and e.llm_label is not None:
            meta["llm_label"] = e.llm_label
            if e.confidence is not None:
                meta["confidence"] = score(e.confidence)
            suggestions[LABEL] = {"value": e.llm_label, "score": score(e.confidence), "agent": agent}
        records.append(
            {
                "id": e.item_id,
                "fields": {"text": e.text},
                "metadata": meta,
                "suggestions": suggestions,
                "responses": {},
                "vectors": {},
            }
        )
    return records


# --- import -------------------------------------------------------------------------------------------
NO_STATUS_FIX = (
    "dataset.records.to_json writes no response status, so a discarded or draft answer cannot be told from a "
    "submitted one: export json.dump(dataset.records.to_list(flatten=True), f) (or the REST API's records) instead"
)


def response_counts(status: Any, *, include_drafts: bool = False) -> bool:
    """Whether one Argilla response counts as a review: submitted; a draft with include_drafts; never a
    discarded one, never one without a status (the rule for every shape and the live pull)."""
    status = getattr(status, "value", status)
    return status == "submitted" or (status == "draft" and include_drafts)


# one response: (question, value, user, status, whether the shape carries statuses, order)
Response = tuple[str, Any, Any, Any, bool, tuple[str, float]]


def _responses(record: Mapping[str, Any]) -> Iterator[Response]:
    """Every response of one record, from any export shape (see the module docstring)."""
    none: tuple[str, float] = ("", 0.0)
    responses = record.get("responses")
    if isinstance(responses, Mapping):  # records.to_json: {question: [{value, user_id}]}
        for question, answers in responses.items():
            for a in answers or []:
                yield str(question), a.get("value"), a.get("user_id"), a.get("status"), "status" in a, none
    elif isinstance(responses, list):
        for a in responses:
            if not isinstance(a, Mapping):
                continue
            order = (str(a.get("updated_at") or a.get("inserted_at") or ""), 0.0)
            values = a.get("values")
            if isinstance(values, Mapping):  # the REST API: {values: {question: {value}}, status, user_id}
                for question, v in values.items():
                    value = v.get("value") if isinstance(v, Mapping) else v
                    yield str(question), value, a.get("user_id"), a.get("status"), True, order
            else:  # a list of {question_name, value, user_id, status}
                yield str(a.get("question_name")), a.get("value"), a.get("user_id"), a.get("status"), True, order
    for key in record:  # to_list(flatten=True): "<question>.responses", ".users", ".status"
        if isinstance(key, str) and key.endswith(".responses"):
            question = key.removesuffix(".responses")
            values = record.get(key) or []
            users = record.get(f"{key}.users") or [None] * len(values)
            carried = f"{key}.status" in record
            statuses = record.get(f"{key}.status") or [None] * len(values)
            for value, user, status in zip(values, users, statuses, strict=False):
                yield question, value, user, status, carried, none


def _records_of(data: Any) -> tuple[list[Any], str]:
    if isinstance(data, Mapping) and isinstance(data.get("items"), list):  # the REST API (search: {record})
        return [r.get("record", r) if isinstance(r, Mapping) else r for r in data["items"]], "argilla-rest"
    if not isinstance(data, list):
        raise ReviewError(
            "an Argilla export is a JSON list of records (json.dump(dataset.records.to_list(flatten=True), f)), "
            "JSON Lines, "
            'or the REST API\'s {"items": [...]}'
        )
    return data, "argilla"


def parse_argilla(
    data: Any,
    *,
    include_drafts: bool = False,
    label_control: str = LABEL,
    fmt: str | None = None,
    kind: TaskType | None = None,
) -> Parsed:
    """Answers from an Argilla export (see the module docstring for the shapes and the status rule). A
    multi-label or span task (`kind`): the answer is the list of labels or of {label, start, end}."""
    records, shape = _records_of(data)
    fmt = fmt or shape
    answers: list[Answer] = []
    items: set[str] = set()
    left: Counter[str] = Counter()  # why label responses were left out
    unstated = 0  # left out because the shape (records.to_json) writes no status
    questions: Counter[str] = Counter()
    for i, rec in enumerate(records, start=1):
        if not isinstance(rec, Mapping):
            raise ReviewError(
                f"record {i} is not a JSON object; export json.dump(dataset.records.to_list(flatten=True), f)"
            )
        item_id = text_or_none(rec.get("external_id") if shape == "argilla-rest" else rec.get("id"))
        if item_id is None:
            key = "external_id" if shape == "argilla-rest" else "id"
            raise ReviewError(f"record {i}: no {key}; import records made by `labeler review export`")
        items.add(item_id)
        per_user: dict[str, dict[str, Any]] = defaultdict(dict)
        orders: dict[str, tuple[str, float]] = {}
        for question, value, user, status, carried, order in _responses(rec):
            if value in (None, "") or (value == [] and (kind is None or question != label_control)):
                continue
            questions[question] += 1
            counted = response_counts(status, include_drafts=include_drafts)
            if question == label_control and not counted:
                if status in (None, "") and not carried:
                    unstated += 1
                else:
                    left[str(status) if status not in (None, "") else "without a status"] += 1
            if counted:
                per_user[str(user) if user is not None else ""][question] = value
                orders[str(user) if user is not None else ""] = order
        for user, got in sorted(per_user.items()):
            if label_control in got:
                where = f"record {i} (id {item_id})"
                label = str(got[label_control]) if kind is None else ag_value(kind, got[label_control], where=where)
                answers.append(
                    Answer(
                        where,
                        item_id,
                        user or None,
                        label,
                        text_or_none(got.get(REASON)),
                        note_or_none(got.get(NOTE)),
                        order=orders[user],
                    )
                )
    warnings = []
    if unstated and answers:
        warnings.append(f"{unstated} responses carry no status and were left out; {NO_STATUS_FIX}")
    if left:
        hint = " (--include-drafts counts drafts)" if left.get("draft") and not include_drafts else ""
        warnings.append("left out: " + ", ".join(f"{n} {why}" for why, n in sorted(left.items())) + hint)
    why = ""
    if not answers:
        if not records:
            why = "it lists no records"
        elif not questions:
            why = f"none of its {len(records)} records has a response; label them in Argilla, then export"
        elif label_control not in questions:
            names = ", ".join(repr(q) for q, _ in questions.most_common())
            why = (
                f"no response to a question named {label_control!r}; the responses answer {names}: "
                f'name the question "label" (as the exported settings do) or pass --label-control NAME'
            )
        elif unstated:
            why = f"none of its {unstated} responses to {label_control!r} carries a status; {NO_STATUS_FIX}"
        else:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(left.items()))
            hint = "; pass --include-drafts to count drafts" if left.get("draft") else ""
            why = f"no submitted response to {label_control!r} ({counts}){hint}"
    return Parsed("argilla", fmt, tuple(answers), frozenset(items), None, {}, tuple(warnings), why)
