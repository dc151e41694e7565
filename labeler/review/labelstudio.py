"""Label Studio: the labeling config, tasks and project settings we write, and the exports we read back.

`labeler review export --format labelstudio --out tasks.json` writes
    tasks.json               tasks in Label Studio's basic JSON: data.text and data.item_id; unless the audit
                             is blind also data.rank, data.reasons, and the LLM's label as a prediction
    tasks.label_config.xml   the labeling interface: one required single choice "label", an optional
                             "correction_reason" and a "note"
    tasks.project.json       project settings (POST /api/projects, or set them by hand): title,
                             label_config, instructions, maximum_annotations = the overlap asked for

Read back: the JSON export (`parse_labelstudio`: tasks with their annotations), JSON-MIN and CSV/TSV
(`parse_labelstudio_flat`: one flat record per annotation, the control names as keys, with annotator,
annotation_id, created_at and updated_at). Cancelled (skipped) annotations are not answers.

Reviewers: the JSON export names an annotation's author by user id (`completed_by: 3`), its variant
with user details as {"id": 3, "email": ...}, JSON-MIN and CSV by e-mail when details were exported,
else by id. A reviewer is named by the user id wherever the file gives it, e-mails seen beside an id in
the same file map to it (Parsed.aliases), and `--reviewer-map` joins the rest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from xml.sax.saxutils import quoteattr

from labeler.errors import ReviewError
from labeler.review.common import LABEL, NOTE, REASON, Answer, Parsed, note_or_none, score, text_or_none
from labeler.review.tasktype_formats import ls_label_control, ls_results, ls_value
from labeler.store.rows import QueueEntry
from labeler.tasktypes import TaskType

# keys of a JSON-MIN record / CSV row that are not controls (Label Studio's own, and the task data we write)
_NOT_CONTROLS = frozenset(
    {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "history"}
    | {"was_cancelled", "text", "item_id", "rank", "reasons", "llm_label", REASON, NOTE}
)


# --- export -------------------------------------------------------------------------------------------
def labelstudio_config(labels: Sequence[str], reasons: Sequence[str], *, kind: TaskType | None = None) -> str:
    """The labeling config: the text, one required single choice among the labels, an optional
    correction reason from the task's taxonomy and an optional note. A multi-label task (`kind`) has
    `<Choices choice="multiple">` instead, a span task `<Labels>` over the text."""
    why = "\n".join(f"    <Choice value={quoteattr(r)}/>" for r in reasons)
    text = '  <Text name="text" value="$text"/>\n'
    if kind is None:
        choices = "\n".join(f"    <Choice value={quoteattr(lab)}/>" for lab in labels)
        control = (
            f'  <Choices name="{LABEL}" toName="text" choice="single" showInLine="true" required="true">\n'
            f"{choices}\n  </Choices>\n"
        )
    else:
        tag = "Label" if kind.name == "spans" else "Choice"
        control = ls_label_control(kind, LABEL, "\n".join(f"    <{tag} value={quoteattr(lab)}/>" for lab in labels))
    first, second = (control, text) if kind is not None and kind.name == "spans" else (text, control)
    return (
        "<View>\n"
        f"{first}{second}"
        '  <Header value="If you changed the suggestion, why?"/>\n'
        f'  <Choices name="{REASON}" toName="text" choice="single" showInLine="true" required="false">\n'
        f"{why}\n  </Choices>\n"
        f'  <TextArea name="{NOTE}" toName="text" rows="2" required="false"/>\n'
        "</View>\n"
    )


def labelstudio_tasks(
    entries: Sequence[QueueEntry],
    *,
    model_version: str,
    suggest: Collection[str],
    blind: bool = False,
    kind: TaskType | None = None,
) -> list[dict[str, Any]]:
    """Tasks in Label Studio's basic JSON, in the order given. The LLM's label is a prediction on the
    items in `suggest`; with `blind` the data holds the text and item id only. A multi-label or span task
    (`kind`): the prediction chooses every label, or marks every span (UTF-16 offsets, with the score)."""
    tasks = []
    for n, e in enumerate(entries, start=1):
        data: dict[str, Any] = {"text": e.text, "item_id": e.item_id}
        if not blind:
            data.update(rank=e.rank, reasons=", ".join(e.reasons))
        task: dict[str, Any] = {"id": n if blind else e.rank, "data": data}
        if e.item_id in suggest and e.llm_label is not None:
            data["llm_label"] = e.llm_label
            if kind is None:
                value = {"choices": [e.llm_label]}
                results = [{"from_name": LABEL, "to_name": "text", "type": "choices", "value": value}]
            else:
                results = ls_results(
                    kind, e.llm_label, e.text, control=LABEL, score=score(e.confidence), elements=e.elements
                )
            prediction: dict[str, Any] = {"model_version": model_version, "result": results}
            if e.confidence is not None:
                prediction["score"] = score(e.confidence)
            task["predictions"] = [prediction]
        tasks.append(task)
    return tasks


def labelstudio_project(
    label_config: str, *, title: str, instructions: str, overlap: int, predictions_shown: bool
) -> dict[str, Any]:
    """Project settings as Label Studio's project API takes them. maximum_annotations = overlap, for
    every task (overlap_cohort_percentage 100), so agreement can be measured on all of them."""
    return {
        "title": title[:50],  # Label Studio's limit
        "label_config": label_config,
        "expert_instruction": instructions,
        "show_instruction": bool(instructions.strip()),
        "maximum_annotations": overlap,
        "overlap_cohort_percentage": 100,
        "show_overlap_first": overlap > 1,
        "show_collab_predictions": predictions_shown,
        "show_skip_button": True,
    }


# --- import -------------------------------------------------------------------------------------------
def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _order(rec: Mapping[str, Any], id_key: str) -> tuple[str, float]:
    return (str(rec.get("updated_at") or rec.get("created_at") or ""), _number(rec.get(id_key)))


def _user(value: Any, aliases: dict[str, str]) -> str | None:
    """The stable name of an annotation's author: the user id; an e-mail only when no id is given."""
    if isinstance(value, Mapping):
        uid, email = text_or_none(value.get("id")), text_or_none(value.get("email"))
        if uid is not None and email is not None:
            aliases[email] = uid
        return uid or email
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    name = text_or_none(value)
    return None if name in ("{}", "None") else name


def _resolve(answers: Iterable[Answer], aliases: Mapping[str, str]) -> tuple[Answer, ...]:
    return tuple(replace(a, reviewer=aliases.get(a.reviewer, a.reviewer)) if a.reviewer else a for a in answers)


def _one_choice(value: Any, where: str, control: str) -> Any:
    choices = value.get("choices") if isinstance(value, Mapping) else value
    if isinstance(choices, list):
        if len(choices) != 1:
            raise ReviewError(f"{where}: {len(choices)} choices in {control!r}; pick exactly one label")
        return choices[0]
    return choices


def _wrong_control(n_tasks: int, other: Counter[str], label_control: str, kind: str) -> str:
    names = ", ".join(repr(n) for n, _ in other.most_common())
    first = other.most_common(1)[0][0]
    return (
        f"no {kind} answers in a control named {label_control!r}; its {n_tasks} tasks answer in {names}: "
        f'name the Choices control "label" in the labeling config (as the exported .label_config.xml does) '
        f"or pass --label-control {first}"
    )


def ground_truth(annotation: Mapping[str, Any]) -> bool:
    """Whether a Label Studio annotation is marked ground truth (an adjudication): the one reader of it for
    the file import and the live pull."""
    return str(annotation.get("ground_truth", "")).strip().lower() in ("true", "1")


def parse_labelstudio(tasks: Any, *, label_control: str = LABEL, kind: TaskType | None = None) -> Parsed:
    """Answers from Label Studio's JSON export: per task its data.item_id, per annotation (not cancelled)
    the `label_control` choice, the optional reason and note, the author and its time. A multi-label or
    span task (`kind`): every choice, or every region (UTF-16 offsets to code points), of the annotation."""
    if isinstance(tasks, Mapping):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise ReviewError("a Label Studio export is a JSON list of tasks; export the project as JSON")
    answers: list[Answer] = []
    items: set[str] = set()
    aliases: dict[str, str] = {}
    other: Counter[str] = Counter()
    n_ann = n_cancelled = n_predicted = 0
    for i, t in enumerate(tasks, start=1):
        data = t.get("data") if isinstance(t, Mapping) else None
        if not isinstance(data, Mapping) or "item_id" not in data:
            raise ReviewError(f"task {i}: no data.item_id; import tasks made by `labeler review export`")
        item_id = str(data["item_id"])
        items.add(item_id)
        n_predicted += bool(t.get("predictions"))
        for j, ann in enumerate(t.get("annotations") or [], start=1):
            if not isinstance(ann, Mapping):
                continue
            n_ann += 1
            if ann.get("was_cancelled"):
                n_cancelled += 1
                continue
            where = f"task {i} annotation {j} (item {item_id})"
            got: dict[str, Any] = {}
            if kind is not None:
                got[label_control] = ls_value(kind, ann.get("result") or [], data.get("text"), control=label_control,
                                              where=where)
            for res in ann.get("result") or []:
                value, name = res.get("value") or {}, str(res.get("from_name"))
                if kind is not None and name == label_control:
                    continue
                if "choices" in value:
                    got[name] = _one_choice(value, where, name) if name == label_control else value["choices"]
                    if name not in (label_control, REASON):
                        other[name] += 1
                elif "text" in value:
                    texts = value["text"]
                    got[name] = "\n".join(map(str, texts)) if isinstance(texts, list) else texts
            reviewer = _user(ann.get("completed_by"), aliases)
            if text_or_none(got.get(label_control)) is None:
                continue
            reason = got.get(REASON)
            reason = reason[0] if isinstance(reason, list) and reason else reason
            answers.append(
                Answer(
                    where,
                    item_id,
                    reviewer,
                    str(got[label_control]),
                    text_or_none(reason),
                    note_or_none(got.get(NOTE)),
                    order=_order(ann, "id"),
                    adjudication=ground_truth(ann),
                )
            )
    why = ""
    if not answers:
        if not tasks:
            why = "it lists no tasks; export the project from Label Studio (Export > JSON)"
        elif not n_ann:
            only = " (only the LLM's predictions)" if n_predicted else ""
            why = f"none of its {len(tasks)} tasks has an annotation{only}; label them in Label Studio, then export"
        elif n_cancelled == n_ann:
            why = f"all {n_ann} annotations were skipped (cancelled) in Label Studio"
        elif other:
            why = _wrong_control(len(tasks), other, label_control, "choice")
        else:
            why = f"none of its {n_ann - n_cancelled} annotations chooses in {label_control!r}"
    resolved = _resolve(answers, aliases)
    return Parsed("labelstudio", "labelstudio", resolved, frozenset(items), None, aliases, (), why, _project(tasks))


def _project(tasks: Sequence[Any]) -> str | None:
    """The project id the JSON export names on its tasks and annotations (None if none or several)."""
    ids = {str(t["project"]) for t in tasks if isinstance(t, Mapping) and t.get("project") is not None}
    for t in tasks:
        for ann in (t.get("annotations") or []) if isinstance(t, Mapping) else []:
            if isinstance(ann, Mapping) and ann.get("project") is not None:
                ids.add(str(ann["project"]))
    return next(iter(ids)) if len(ids) == 1 else None


def _flat_value(value: Any) -> Any:
    """A JSON-MIN value, or a CSV cell that holds JSON (several choices: {"choices": [...]})."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _flat_results(raw: Any, control: str) -> list[dict[str, Any]]:
    """A flat record's value of the label control as results: {"choices": [...]} / a name, or regions."""
    if isinstance(raw, Mapping):
        raw = raw.get("choices")
    if isinstance(raw, list) and all(isinstance(v, Mapping) for v in raw):
        return [{"from_name": control, "value": v} for v in raw]
    return [{"from_name": control, "value": {"choices": raw if isinstance(raw, list) else [raw]}}]


def parse_labelstudio_flat(
    records: Sequence[Mapping[str, Any]], *, fmt: str, label_control: str = LABEL, kind: TaskType | None = None
) -> Parsed:
    """Answers from Label Studio's JSON-MIN export (fmt "labelstudio-min") or its CSV/TSV export
    ("labelstudio-csv"): one flat record per annotation, the task data and the controls as keys. A
    multi-label or span task (`kind`): the control holds {"choices": [...]} or the regions."""
    what = "row" if fmt == "labelstudio-csv" else "record"
    answers: list[Answer] = []
    items: set[str] = set()
    other: Counter[str] = Counter()
    emails: set[str] = set()
    skipped = 0
    for i, rec in enumerate(records, start=1):
        skipped += str(rec.get("was_cancelled", "")).strip().lower() in ("true", "1")
        item_id = text_or_none(rec.get("item_id"))
        if item_id is None:
            raise ReviewError(f"{what} {i}: no item_id; import tasks made by `labeler review export`")
        items.add(item_id)
        where = f"{what} {i} (item {item_id})"
        if kind is not None:
            raw = _flat_value(rec.get(label_control))
            label = None if raw in (None, "") else ls_value(
                kind, _flat_results(raw, label_control), rec.get("text"), control=label_control, where=where
            )
        else:
            label = text_or_none(_one_choice(_flat_value(rec.get(label_control)), where, label_control))
        if label is None:
            other.update(k for k, v in rec.items() if k not in _NOT_CONTROLS and k != label_control and v)
            continue
        reviewer = _user(rec.get("annotator"), {})
        if reviewer is not None and "@" in reviewer:
            emails.add(reviewer)
        reason = _flat_value(rec.get(REASON))
        reason = reason.get("choices") if isinstance(reason, Mapping) else reason
        reason = reason[0] if isinstance(reason, list) and reason else reason
        note = note_or_none(rec.get(NOTE))
        answers.append(
            Answer(where, item_id, reviewer, label, text_or_none(reason), note, order=_order(rec, "annotation_id"))
        )
    warnings: tuple[str, ...] = ()
    if emails:
        warnings = (
            f"reviewers are named by e-mail here ({', '.join(sorted(emails)[:3])}), while Label Studio's JSON "
            "export names them by user id: pass --reviewer-map FILE (id,name rows) so both name one person",
        )
    why = ""
    if not answers:
        if not records:
            why = "it lists no tasks; export the project from Label Studio"
        elif skipped == len(records):
            why = f"it holds {len(records)} {what}s, all skipped (cancelled) in Label Studio: no answers yet"
        elif other:
            why = _wrong_control(len(records), other, label_control, "label")
        else:
            why = f"none of its {len(records)} {what}s has an annotation in {label_control!r}; label them, then export"
    return Parsed("labelstudio", fmt, tuple(answers), frozenset(items), None, {}, warnings, why)
