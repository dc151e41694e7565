"""Human review: the queue and review tables, export to review tools, import of their answers, merge, feedback.

Tables in run.sqlite (`ensure_schema`; `labeler route` fills the first two, imports and the TUI the third):
    queue(item_id, rank, reasons JSON list, priority, audit 0/1, inclusion_prob (n_h/N_h, audit items only),
          stratum (the predicted label), created, llm_label, confidence, member_labels JSON)
          one row per routed item, rank 1 = most doubtful
    audit_strata(stratum, population N_h, sampled n_h, seed)
    reviews(item_id, reviewer, label, correction_reason, note, source, imported_at, adjudication 0/1)
          one row per (item, reviewer); importing again replaces that reviewer's answer

Round trip: route → `review export` (Label Studio tasks + labeling config, Argilla records + settings, or
CSV) → reviewers label → `review import` of the tool's export (agreement printed) → `review merge`
(`final_rows`) → `review promote` corrections as few-shot examples.

Showing the LLM's suggestion speeds review but anchors reviewers on it: `--no-suggestion` hides it for
every item, `--blind-audit` for the audit items only (so the audit measures the LLM without anchoring).
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from labeler.errors import ReviewError
from labeler.store import RunStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    item_id TEXT PRIMARY KEY, rank INTEGER, reasons TEXT, priority REAL, audit INTEGER,
    inclusion_prob REAL, stratum TEXT, created REAL,
    llm_label TEXT, confidence REAL, member_labels TEXT
);
CREATE TABLE IF NOT EXISTS audit_strata (stratum TEXT PRIMARY KEY, population INTEGER, sampled INTEGER, seed INTEGER);
CREATE TABLE IF NOT EXISTS reviews (
    item_id TEXT, reviewer TEXT, label TEXT, correction_reason TEXT, note TEXT, source TEXT, imported_at REAL,
    adjudication INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (item_id, reviewer)
);
"""
EXPORT_FORMATS = ("labelstudio", "argilla", "csv")
CSV_COLUMNS = ("id", "text", "llm_label", "confidence", "reasons", "rank")
CSV_ANSWER_COLUMNS = ("human_label", "reviewer", "correction_reason", "note")
LABEL, REASON, NOTE = "label", "correction_reason", "note"  # control / question names in both tools



def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the queue, audit_strata and reviews tables if they do not exist."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


@dataclass(frozen=True)
class QueueEntry:
    item_id: str
    rank: int
    reasons: tuple[str, ...]
    priority: float
    audit: bool
    llm_label: str | None
    confidence: float | None
    text: str = ""


@dataclass(frozen=True)
class Review:
    item_id: str
    reviewer: str
    label: str
    correction_reason: str | None = None
    note: str | None = None
    source: str = ""
    adjudication: bool = False


@dataclass(frozen=True)
class Answer:
    """One answer as read from a file, before validation; `where` names its place for error messages."""

    where: str
    item_id: str
    reviewer: str | None
    label: str
    correction_reason: str | None = None
    note: str | None = None


def read_queue(store: RunStore) -> list[QueueEntry]:
    """The routed items in rank order, with their text."""
    ensure_schema(store.conn)
    rows = store.conn.execute(
        "SELECT q.*, i.text FROM queue q JOIN items i ON i.id = q.item_id ORDER BY q.rank"
    ).fetchall()
    return [
        QueueEntry(
            item_id=r["item_id"],
            rank=int(r["rank"]),
            reasons=tuple(json.loads(r["reasons"] or "[]")),
            priority=float(r["priority"] or 0.0),
            audit=bool(r["audit"]),
            llm_label=r["llm_label"],
            confidence=r["confidence"],
            text=r["text"],
        )
        for r in rows
    ]


def save_reviews(conn: sqlite3.Connection, reviews: Iterable[Review]) -> int:
    """Insert or replace reviews, in one transaction. Returns how many."""
    ensure_schema(conn)
    now = time.time()
    rows = [
        (r.item_id, r.reviewer, r.label, r.correction_reason, r.note, r.source, now, int(r.adjudication))
        for r in reviews
    ]
    conn.execute("BEGIN")
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO reviews (item_id, reviewer, label, correction_reason, note, source, imported_at,"
            " adjudication) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)


def load_reviews(conn: sqlite3.Connection) -> dict[str, list[Review]]:
    """item id → its reviews, oldest import first."""
    ensure_schema(conn)
    out: dict[str, list[Review]] = defaultdict(list)
    for r in conn.execute("SELECT * FROM reviews ORDER BY imported_at, reviewer"):
        out[r["item_id"]].append(
            Review(
                r["item_id"],
                r["reviewer"],
                r["label"],
                r["correction_reason"],
                r["note"],
                r["source"] or "",
                bool(r["adjudication"]),
            )
        )
    return dict(out)


def shows_suggestion(entry: QueueEntry, *, blind_audit: bool, no_suggestion: bool) -> bool:
    return entry.llm_label is not None and not no_suggestion and not (blind_audit and entry.audit)


# --- export -------------------------------------------------------------------------------------------
def labelstudio_config(labels: Sequence[str], reasons: Sequence[str]) -> str:
    """Label Studio labeling config: the text, one required single choice among the labels, an optional
    correction reason from the task's taxonomy and an optional note."""
    choices = "\n".join(f"    <Choice value={quoteattr(lab)}/>" for lab in labels)
    why = "\n".join(f"    <Choice value={quoteattr(r)}/>" for r in reasons)
    return (
        "<View>\n"
        '  <Text name="text" value="$text"/>\n'
        f'  <Choices name="{LABEL}" toName="text" choice="single" showInLine="true" required="true">\n'
        f"{choices}\n  </Choices>\n"
        '  <Header value="If you changed the suggestion, why?"/>\n'
        f'  <Choices name="{REASON}" toName="text" choice="single" showInLine="true" required="false">\n'
        f"{why}\n  </Choices>\n"
        f'  <TextArea name="{NOTE}" toName="text" rows="2" required="false"/>\n'
        "</View>\n"
    )


def labelstudio_tasks(
    entries: Sequence[QueueEntry], *, model_version: str, blind_audit: bool = False, no_suggestion: bool = False
) -> list[dict[str, Any]]:
    """Label Studio tasks (Basic Label Studio JSON): data + an LLM prediction where it is shown."""
    tasks = []
    for e in entries:
        show = shows_suggestion(e, blind_audit=blind_audit, no_suggestion=no_suggestion)
        data: dict[str, Any] = {"text": e.text, "item_id": e.item_id, "rank": e.rank, "reasons": ", ".join(e.reasons)}
        task: dict[str, Any] = {"id": e.rank, "data": data}
        if show:
            data["llm_label"] = e.llm_label
            result = {"from_name": LABEL, "to_name": "text", "type": "choices", "value": {"choices": [e.llm_label]}}
            prediction: dict[str, Any] = {"model_version": model_version, "result": [result]}
            if e.confidence is not None:
                prediction["score"] = float(e.confidence)
            task["predictions"] = [prediction]
        tasks.append(task)
    return tasks


def argilla_settings(labels: Sequence[str], reasons: Sequence[str], *, guidelines: str = "") -> dict[str, Any]:
    """Argilla 2.x dataset settings, as `rg.Settings.to_json` writes them (`rg.Settings.from_json` reads it)."""

    def question(name: str, options: Sequence[str], required: bool, title: str) -> dict[str, Any]:
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

    def metadata(name: str, settings: dict[str, Any], visible: bool) -> dict[str, Any]:
        return {
            "name": name,
            "title": name,
            "type": settings["type"],
            "visible_for_annotators": visible,
            "settings": {**settings, "visible_for_annotators": visible},
        }

    return {
        "guidelines": guidelines or "Choose the label that fits the text.",
        "fields": [
            {
                "name": "text",
                "title": "text",
                "required": True,
                "description": None,
                "settings": {"type": "text", "use_markdown": False},
            },
        ],
        "questions": [
            question(LABEL, labels, True, "Label"),
            question(REASON, reasons, False, "If you changed the suggestion, why?"),
            {
                "name": NOTE,
                "title": "Note",
                "description": None,
                "required": False,
                "settings": {"type": "text", "use_markdown": False},
            },
        ],
        "vectors": [],
        "metadata": [
            metadata("rank", {"type": "integer", "min": None, "max": None}, True),
            metadata(
                "reasons", {"type": "terms", "values": ["failed", "low_confidence", "disagreement", "audit"]}, False
            ),
            metadata("llm_label", {"type": "terms", "values": list(labels)}, False),
            metadata("confidence", {"type": "float", "min": None, "max": None}, False),
        ],
        "allow_extra_metadata": False,
    }


def argilla_records(
    entries: Sequence[QueueEntry], *, agent: str, blind_audit: bool = False, no_suggestion: bool = False
) -> list[dict[str, Any]]:
    """Argilla 2.x records, as `Record.to_dict` / `dataset.records.to_json` write them: the record id is
    the item id; the LLM label is a suggestion for question "label" where it is shown."""
    records = []
    for e in entries:
        show = shows_suggestion(e, blind_audit=blind_audit, no_suggestion=no_suggestion)
        meta: dict[str, Any] = {"rank": e.rank, "reasons": list(e.reasons)}
        suggestions: dict[str, Any] = {}
        if show:
            meta["llm_label"] = e.llm_label
            if e.confidence is not None:
                meta["confidence"] = float(e.confidence)
            suggestions[LABEL] = {"value": e.llm_label, "score": e.confidence, "agent": agent}
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


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def export_queue(
    run_dir: Path, out: Path, fmt: str, *, blind_audit: bool = False, no_suggestion: bool | None = None
) -> list[Path]:
    """Write the queue for a review tool; returns the files written (the tool's config beside the tasks).
    `no_suggestion` None follows the task's review.show_suggestion."""
    if fmt not in EXPORT_FORMATS:
        raise ReviewError(f"unknown review format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    store = RunStore.open(run_dir)
    try:
        task = store.task()
        entries = read_queue(store)
        manifest = store.manifest
    finally:
        store.close()
    if not entries:
        raise ReviewError(f"the queue of {run_dir} is empty; run `labeler route {run_dir}` first")
    hide = (not task.review.show_suggestion) if no_suggestion is None else no_suggestion
    labels, reasons = task.label_names, task.review.reasons
    model = manifest["members"][0].get("endpoint", {}).get("model") or "llm"
    agent = f"{model} (labeler run {manifest['run_id']})"
    if fmt == "labelstudio":
        config = out.with_name(out.stem + ".label_config.xml")
        _write_json(out, labelstudio_tasks(entries, model_version=agent, blind_audit=blind_audit, no_suggestion=hide))
        config.write_text(labelstudio_config(labels, reasons), encoding="utf-8")
        return [out, config]
    if fmt == "argilla":
        settings = out.with_name(out.stem + ".settings.json")
        _write_json(out, argilla_records(entries, agent=agent, blind_audit=blind_audit, no_suggestion=hide))
        _write_json(settings, argilla_settings(labels, reasons, guidelines=task.instructions))
        return [out, settings]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*CSV_COLUMNS, *CSV_ANSWER_COLUMNS])
        for e in entries:
            show = shows_suggestion(e, blind_audit=blind_audit, no_suggestion=hide)
            conf = "" if not show or e.confidence is None else f"{e.confidence:.4f}"
            w.writerow([e.item_id, e.text, e.llm_label if show else "", conf, ";".join(e.reasons), e.rank, *[""] * 4])
    return [out]


# --- import: read a tool's export into Answers ---------------------------------------------------------
def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _reviewer_name(completed_by: Any) -> str | None:
    if isinstance(completed_by, Mapping):
        completed_by = completed_by.get("email") or completed_by.get("id")
    return None if completed_by in (None, "") else str(completed_by)


def parse_labelstudio(tasks: Any) -> list[Answer]:
    """Answers from a Label Studio JSON export: each task's data.item_id, and per annotation (not
    cancelled) the "label" choice, the optional reason and note; `completed_by` names the reviewer."""
    if isinstance(tasks, Mapping):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise ReviewError("a Label Studio export is a JSON list of tasks; export the project as JSON")
    out = []
    for i, t in enumerate(tasks, start=1):
        data = t.get("data") if isinstance(t, Mapping) else None
        if not isinstance(data, Mapping) or "item_id" not in data:
            raise ReviewError(f"task {i}: no data.item_id; import tasks made by `labeler review export`")
        for j, ann in enumerate(t.get("annotations") or [], start=1):
            if ann.get("was_cancelled"):
                continue
            got: dict[str, Any] = {}
            for res in ann.get("result") or []:
                value = res.get("value") or {}
                if "choices" in value:
                    choices = value["choices"]
                    if res.get("from_name") == LABEL and len(choices) != 1:
                        raise ReviewError(f"task {i} (item {data['item_id']}): {len(choices)} labels chosen; pick one")
                    got[res.get("from_name")] = _first(choices)
                elif "text" in value:
                    got[res.get("from_name")] = _first(value["text"])
            if LABEL in got:
                out.append(
                    Answer(
                        f"task {i} annotation {j} (item {data['item_id']})",
                        str(data["item_id"]),
                        _reviewer_name(ann.get("completed_by")),
                        str(got[LABEL]),
                        got.get(REASON),
                        got.get(NOTE),
                    )
                )
    return out


def _argilla_answers(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """user id → {question: value} for one Argilla record, from any of its export shapes: nested
    (`records.to_json`: responses = {question: [{value, user_id}]}), a list of responses
    ({question_name, value, user_id, status}), or flattened (`to_list(flatten=True)`: "label.responses",
    "label.responses.users", "label.responses.status"). Draft and discarded responses are left out."""
    per_user: dict[str, dict[str, Any]] = defaultdict(dict)

    def add(question: Any, value: Any, user: Any, status: Any) -> None:
        if status in (None, "submitted") and value not in (None, ""):
            per_user[str(user)][str(question)] = value

    responses = record.get("responses")
    if isinstance(responses, Mapping):
        for question, answers in responses.items():
            for a in answers or []:
                add(question, a.get("value"), a.get("user_id"), a.get("status"))
    elif isinstance(responses, list):
        for a in responses:
            add(a.get("question_name"), a.get("value"), a.get("user_id"), a.get("status"))
    for question in (LABEL, REASON, NOTE):
        values = record.get(f"{question}.responses") or []
        users = record.get(f"{question}.responses.users") or [None] * len(values)
        statuses = record.get(f"{question}.responses.status") or [None] * len(values)
        for value, user, status in zip(values, users, statuses, strict=False):
            add(question, value, user, status)
    return per_user


def parse_argilla(records: Any) -> list[Answer]:
    """Answers from an Argilla 2.x records export (a JSON list); the record id is the item id and the
    responding user's id names the reviewer."""
    if not isinstance(records, list):
        raise ReviewError("an Argilla export is a JSON list of records; write it with dataset.records.to_json(path)")
    out = []
    for i, rec in enumerate(records, start=1):
        item_id = rec.get("id") if isinstance(rec, Mapping) else None
        if item_id in (None, ""):
            raise ReviewError(f"record {i}: no id; import records made by `labeler review export`")
        for user, answers in sorted(_argilla_answers(rec).items()):
            if LABEL in answers:
                reviewer = None if user == "None" else user
                out.append(
                    Answer(
                        f"record {i} (id {item_id})",
                        str(item_id),
                        reviewer,
                        str(answers[LABEL]),
                        answers.get(REASON),
                        answers.get(NOTE),
                    )
                )
    return out


def parse_csv(path: Path) -> list[Answer]:
    """Answers from the CSV that `review export --format csv` writes, once filled in: rows with an empty
    human_label are not reviewed yet and are left out."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        if not {"id", "human_label"} <= columns:
            raise ReviewError(f"{path.name} needs the columns id and human_label (as `labeler review export` writes)")
        out = []
        for i, row in enumerate(reader, start=1):
            label = (row.get("human_label") or "").strip()
            if label:
                out.append(
                    Answer(
                        f"row {i} (id {row['id']})",
                        str(row["id"]).strip(),
                        (row.get("reviewer") or "").strip() or None,
                        label,
                        (row.get(REASON) or "").strip() or None,
                        (row.get(NOTE) or "").strip() or None,
                    )
                )
    return out


def read_answers(path: Path, fmt: str | None = None) -> tuple[list[Answer], str]:
    """Answers from `path` and the format they were read as (guessed from the file when `fmt` is None)."""
    if not path.is_file():
        raise ReviewError(f"{path} not found; pass the file your review tool exported")
    if fmt is None:
        if path.suffix.lower() == ".csv":
            fmt = "csv"
        else:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ReviewError(f"{path.name} is not JSON ({exc}); pass --format csv for a CSV file") from None
            first = data[0] if isinstance(data, list) and data else data
            fmt = "labelstudio" if isinstance(first, Mapping) and "data" in first else "argilla"
    if fmt == "csv":
        return parse_csv(path), fmt
    if fmt not in EXPORT_FORMATS:
        raise ReviewError(f"unknown review format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReviewError(f"{path.name} is not JSON ({exc}); export JSON from {fmt}") from None
    return (parse_labelstudio(data) if fmt == "labelstudio" else parse_argilla(data)), fmt


def check_answers(
    answers: Iterable[Answer],
    *,
    item_ids: set[str] | frozenset[str],
    labels: Sequence[str],
    reasons: Sequence[str],
    default_reviewer: str | None,
    source: str,
    adjudication: bool = False,
) -> list[Review]:
    """Validate answers against the run: known item ids, labels and correction reasons (case-insensitive,
    stored as the config spells them), a reviewer for each. Errors name the row and the fix."""
    canon = {lab.lower(): lab for lab in labels}
    why = {r.lower(): r for r in reasons}
    out = []
    for a in answers:
        if a.item_id not in item_ids:
            raise ReviewError(f"{a.where}: unknown item id {a.item_id!r}; import into the run it was exported from")
        label = canon.get(a.label.strip().lower())
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
        out.append(Review(a.item_id, reviewer, label, reason, a.note or None, source, adjudication))
    return out


# --- agreement ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairAgreement:
    a: str
    b: str
    items: int  # items both reviewed
    agreement: float  # share of those where they chose the same label
    kappa: float | None  # Cohen's kappa; None when undefined (a single label used by both)


@dataclass(frozen=True)
class Agreement:
    items: int  # items with two or more reviewers
    all_agree: float | None  # share of those where every reviewer chose the same label
    pairs: tuple[PairAgreement, ...] = field(default_factory=tuple)


def agreement(labels_by_item: Mapping[str, Mapping[str, str]], *, labels: Sequence[str]) -> Agreement:
    """Inter-reviewer agreement on items reviewed more than once. `labels_by_item`: item → reviewer → label.
    Per pair of reviewers who share items: percent agreement and Cohen's kappa (scikit-learn)."""
    from sklearn.metrics import cohen_kappa_score

    shared = {i: rl for i, rl in labels_by_item.items() if len(rl) >= 2}
    if not shared:
        return Agreement(0, None)
    all_agree = sum(len(set(rl.values())) == 1 for rl in shared.values()) / len(shared)
    reviewers = sorted({r for rl in shared.values() for r in rl})
    pairs = []
    for a, b in combinations(reviewers, 2):
        ya = [rl[a] for rl in shared.values() if a in rl and b in rl]
        yb = [rl[b] for rl in shared.values() if a in rl and b in rl]
        if not ya:
            continue
        same = sum(x == y for x, y in zip(ya, yb, strict=True)) / len(ya)
        kappa = float(cohen_kappa_score(ya, yb, labels=list(labels))) if len(set(ya) | set(yb)) > 1 else None
        pairs.append(PairAgreement(a, b, len(ya), same, kappa))
    return Agreement(len(shared), all_agree, tuple(pairs))


def format_agreement(ag: Agreement) -> str:
    if not ag.items:
        return "agreement: no item has two reviewers yet (give reviewers overlapping items to measure it)"
    lines = [f"agreement on {ag.items} items with 2+ reviewers: {ag.all_agree:.1%} where all agree"]
    for p in ag.pairs:
        kappa = "undefined (one label only)" if p.kappa is None else f"{p.kappa:.3f}"
        lines.append(f"  {p.a} vs {p.b}: {p.items} items, {p.agreement:.1%} agree, Cohen's kappa {kappa}")
    return "\n".join(lines)


def run_agreement(conn: sqlite3.Connection, labels: Sequence[str]) -> Agreement:
    """Agreement over the run's reviews (adjudications left out: they are not independent)."""
    by_item = {
        item: {r.reviewer: r.label for r in revs if not r.adjudication} for item, revs in load_reviews(conn).items()
    }
    return agreement(by_item, labels=labels)


@dataclass(frozen=True)
class ImportSummary:
    reviews: int
    items: int
    reviewers: tuple[str, ...]
    corrections: int  # reviews whose label differs from the queued LLM label
    fmt: str
    agreement: Agreement


def import_reviews(
    run_dir: Path, path: Path, *, fmt: str | None = None, reviewer: str | None = None, adjudication: bool = False
) -> ImportSummary:
    """Read a review tool's export, validate every answer, then store them all (or none)."""
    answers, fmt = read_answers(path, fmt)
    store = RunStore.open(run_dir)
    try:
        task = store.task()
        ensure_schema(store.conn)
        ids = {r[0] for r in store.conn.execute("SELECT id FROM items")}
        reviews = check_answers(
            answers,
            item_ids=ids,
            labels=task.label_names,
            reasons=task.review.reasons,
            default_reviewer=reviewer,
            source="adjudication" if adjudication else fmt,
            adjudication=adjudication,
        )
        llm = dict(store.conn.execute("SELECT item_id, llm_label FROM queue").fetchall())
        save_reviews(store.conn, reviews)
        return ImportSummary(
            reviews=len(reviews),
            items=len({r.item_id for r in reviews}),
            reviewers=tuple(sorted({r.reviewer for r in reviews})),
            corrections=sum(r.item_id in llm and llm[r.item_id] != r.label for r in reviews),
            fmt=fmt,
            agreement=run_agreement(store.conn, task.label_names),
        )
    finally:
        store.close()


# --- merge --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Merged:
    label: str | None
    source: str  # "llm", "human" or "adjudicated"
    tie: bool  # the human reviewers split evenly between their top labels
    human_label: str | None  # the reviewers' majority (None when none or tied)


def merge_labels(llm_label: str | None, human: Sequence[str], *, adjudicated: str | None = None) -> Merged:
    """The final label of one item: an adjudication if any; else the reviewers' majority; on a tie (or
    with no review) the LLM label, with tie=True so the item can go to adjudication."""
    top = Counter(human).most_common(2)
    tie = len(top) == 2 and top[0][1] == top[1][1]
    majority = top[0][0] if top and not tie else None
    if adjudicated is not None:
        return Merged(adjudicated, "adjudicated", tie, majority)
    if majority is not None:
        return Merged(majority, "human", False, majority)
    return Merged(llm_label, "llm", tie, None)


def final_rows(store: RunStore, *, with_text: bool = False) -> Iterator[dict[str, Any]]:
    """The final dataset, one row per item of `labeler.export.item_rows`: label (human where reviewed,
    else the LLM's), source (llm / human / adjudicated), tie, llm_label, human_label (the reviewers'
    majority), human_labels (JSON reviewer → label: every reviewer's answer is kept), correction_reasons
    (JSON list), routing_reasons (JSON list, [] when not routed), audit, inclusion_prob, then the
    export's columns (confidence, status, provenance, ...)."""
    from labeler.export import item_rows

    reviews = load_reviews(store.conn)
    queue = {r["item_id"]: r for r in store.conn.execute("SELECT * FROM queue")}
    for row in item_rows(store, with_text=with_text):
        item_id = row["id"]
        ensemble = row.get("ensemble_label")
        llm_label = ensemble if ensemble is not None else row["label"]
        revs = reviews.get(item_id, [])
        humans = [r for r in revs if not r.adjudication]
        adjudications = [r for r in revs if r.adjudication]
        merged = merge_labels(
            llm_label, [r.label for r in humans], adjudicated=adjudications[-1].label if adjudications else None
        )
        q = queue.get(item_id)
        out: dict[str, Any] = {
            "id": item_id,
            "label": merged.label,
            "source": merged.source,
            "tie": merged.tie,
            "llm_label": llm_label,
            "human_label": merged.human_label,
            "human_labels": json.dumps({r.reviewer: r.label for r in revs}, ensure_ascii=False),
            "n_reviews": len(humans),
            "correction_reasons": json.dumps(sorted({r.correction_reason for r in revs if r.correction_reason})),
            "routing_reasons": q["reasons"] if q is not None else "[]",
            "audit": bool(q["audit"]) if q is not None else False,
            "inclusion_prob": q["inclusion_prob"] if q is not None else None,
        }
        out.update({k: v for k, v in row.items() if k not in ("id", "label")})
        yield out


def merge_run(run_dir: Path, out: Path, fmt: str | None = None, *, with_text: bool = False) -> Counter[str]:
    """Write the final dataset; returns the count of rows per source (and "tie")."""
    from labeler.export import write_rows

    fmt = fmt or out.suffix.lstrip(".").lower()
    counts: Counter[str] = Counter()

    def counted(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for r in rows:
            counts[r["source"]] += 1
            counts["tie"] += bool(r["tie"])
            yield r

    store = RunStore.open(run_dir)
    try:
        ensure_schema(store.conn)
        write_rows(counted(final_rows(store, with_text=with_text)), out, fmt)
    finally:
        store.close()
    return counts


# --- feedback -----------------------------------------------------------------------------------------
def examples_path(store: RunStore) -> Path:
    """The few-shot examples file the run's task config names (task.examples)."""
    cfg = store.manifest.get("config") or {}
    value = cfg.get("task", {}).get("examples")
    if not isinstance(value, str):
        raise ReviewError(
            "the task has no examples file (task.examples lists them inline or is unset); pass --examples"
        )
    return (Path(store.manifest["config_path"]).parent / value).resolve()


def promote(run_dir: Path, *, examples: Path | None = None, max_n: int | None = None) -> tuple[Path, int]:
    """Append corrected items — a human (or adjudicated) label that differs from the LLM's, not a tie —
    as few-shot examples {"text", "label"} (JSONL) to `examples` (default: the file task.examples names),
    in input order, skipping texts the file already holds. Returns the file and how many were added.

    Caching, honestly: the request cache key covers the rendered prompt (messages, model, params), and
    a template that renders `examples` (the bundled ones do) puts them into every prompt. So after adding
    examples *every* prompt changes, and a new run pays for every item again; the cache only serves
    prompts that are unchanged. The run's template hash covers the template file, not the examples: do
    not `labeler resume` an old run after promoting (its remaining items would get a different prompt
    from the rest); start a new run, and route and review it again. The promoted items then appear in
    their own prompts: leave them out when you measure accuracy on that corpus."""
    store = RunStore.open(run_dir)
    try:
        path = examples if examples is not None else examples_path(store)
        have: set[str] = set()
        if path.exists():
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    have.add(str(json.loads(line)["text"]) if line.strip() else "")
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ReviewError(f"{path}: line {n} is not a {{text, label}} JSON object; fix the file") from None
        ensure_schema(store.conn)
        new: list[dict[str, str]] = []
        for row in final_rows(store, with_text=True):
            if max_n is not None and len(new) >= max_n:
                break
            corrected = row["source"] in ("human", "adjudicated") and row["label"] != row["llm_label"]
            if corrected and row["label"] is not None and row["text"] not in have:
                new.append({"text": row["text"], "label": row["label"]})
                have.add(row["text"])
    finally:
        store.close()
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        with path.open("a", encoding="utf-8") as fh:
            if needs_newline:
                fh.write("\n")
            for ex in new:
                fh.write(json.dumps(ex, ensure_ascii=False) + "\n")
    return path, len(new)
