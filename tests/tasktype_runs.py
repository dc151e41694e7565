"""Small multi-label and span runs for the review tests, written through the run store's public API as a real
run writes them (results and the queue hold `kind.encode(value)` in their label columns), with the truth
known: the LLM's annotation and the one a reviewer gives are fixed per item, non-ASCII and emoji texts
included (so UTF-16 vs code-point offsets are tested)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes import write_task

from labeler.config import load_config
from labeler.inputs import Row
from labeler.store import RunStore
from labeler.store.rows import QueueEntry
from labeler.tasktypes import TaskType
from labeler.tasktypes.registry import for_task
from labeler.tasktypes.spans import Span
from labeler.types import Item, ItemResult

TOPICS = ("economy", "sport", "tech", "health")
TYPES = ("PER", "ORG", "LOC")
REASONS = ("guideline gap", "ambiguous", "model error", "other")


def _span(text: str, quote: str, kind: str, nth: int = 0) -> Span:
    start = -1
    for _ in range(nth + 1):
        start = text.index(quote, start + 1)
    return Span(start, start + len(quote), kind, quote)


# (text, LLM annotation, the reviewer's annotation): emoji and accents before some spans
SPAN_ITEMS: list[tuple[str, tuple[Span, ...], tuple[Span, ...]]] = []
_TEXTS = [
    ("Ada Lovelace 👩‍💻 joined ACME in Zürich.", [("Ada Lovelace", "PER"), ("ACME", "ORG")],
     [("Ada Lovelace", "PER"), ("ACME", "ORG"), ("Zürich", "LOC")]),
    ("🎉🎉 Grace Hopper visited Paris 🇫🇷 with IBM.", [("Grace Hopper", "PER"), ("Paris", "ORG")],
     [("Grace Hopper", "PER"), ("Paris", "LOC"), ("IBM", "ORG")]),
    ("No names here, only 😀 and text.", [("only", "PER")], []),
    ("Émile Zola wrote in Médan; Zola 📚 lived in Paris.", [("Émile Zola", "PER")],
     [("Émile Zola", "PER"), ("Médan", "LOC"), ("Paris", "LOC")]),
    ("CERN in Genève hired Tim 🧑‍🔬 Berners-Lee.", [("CERN", "ORG"), ("Genève", "LOC")],
     [("CERN", "ORG"), ("Genève", "LOC"), ("Berners-Lee", "PER")]),
    ("Plain ASCII: Linus at Transmeta in Santa Clara.", [("Linus", "PER"), ("Transmeta", "ORG")],
     [("Linus", "PER"), ("Transmeta", "ORG"), ("Santa Clara", "LOC")]),
]
for _text, _llm, _human in _TEXTS:
    SPAN_ITEMS.append((_text, tuple(sorted(_span(_text, q, k) for q, k in _llm)),
                       tuple(sorted(_span(_text, q, k) for q, k in _human))))

MULTI_ITEMS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("Rates rise as tech stocks fall 📉", ("economy",), ("economy", "tech")),
    ("The marathon winner praised her new running shoes", ("sport", "health"), ("sport",)),
    ("Hospital AI triage software approved", ("tech",), ("health", "tech")),
    ("Football club sold for a record sum", ("economy", "sport"), ("economy", "sport")),
    ("Café owners worry about energy prices ☕", ("economy",), ("economy",)),
    ("A new vaccine trial starts in Zürich", ("health", "tech"), ("health",)),
]


@dataclass(frozen=True)
class TaskRun:
    run_dir: Path
    kind: TaskType
    texts: dict[str, str]  # item id -> text
    llm: dict[str, Any]  # item id -> the LLM's annotation (queued)
    human: dict[str, Any]  # item id -> the reviewer's annotation (what a test gives through the tool)


def make_task_run(root: Path, task_type: str, *, run_id: str = "r1") -> TaskRun:
    """A run of `task_type` ("multi_label" or "spans") whose every item is queued with the LLM's annotation."""
    (root / "task").mkdir(parents=True, exist_ok=True)
    names = TOPICS if task_type == "multi_label" else TYPES
    cfg = write_task(root / "task", labels=names, task={"type": task_type})
    task = load_config(cfg, env={})
    kind = for_task(task)
    rows = [(text, kind.decode(kind.encode(llm)), kind.decode(kind.encode(human)))  # in the task's label order
            for text, llm, human in (MULTI_ITEMS if task_type == "multi_label" else SPAN_ITEMS)]
    manifest = {
        "run_id": run_id,
        "labels": list(names),
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "test-model"}}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    run_dir = root / "run"
    store = RunStore.create(run_dir, manifest)
    ids = [f"t{k:02d}" for k in range(len(rows))]
    store.ingest([Row(Item(i, text, k + 1)) for k, (i, (text, _, _)) in enumerate(zip(ids, rows, strict=True))],
                 members=["default"])
    entries = []
    for k, (i, (_text, llm, _human)) in enumerate(zip(ids, rows, strict=True)):
        conf = 0.4 + k / 20
        store.put_result(ItemResult(i, "default", "labeled", label=kind.encode(llm), confidence=conf))
        entries.append(QueueEntry(i, k + 1, ("low_confidence",), 1.0 - conf, False, kind.encode(llm), conf,
                                  member_labels={"default": kind.encode(llm)}))
    store.flush()
    store.write_queue(entries, [], seed=0)
    store.close()
    texts = {i: r[0] for i, r in zip(ids, rows, strict=True)}
    return TaskRun(run_dir, kind, texts, {i: r[1] for i, r in zip(ids, rows, strict=True)},
                   {i: r[2] for i, r in zip(ids, rows, strict=True)})


def final_labels(run: TaskRun, out: Path) -> dict[str, Any]:
    """`labeler review merge`'s final dataset, read back: item id -> decoded human annotation (None: none)."""
    import json

    from labeler.review.merge import merge_run

    merge_run(run.run_dir, out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:  # JSONL carries an annotation as a real list (labeler.export.list_rows)
        assert r["human_label"] is None or isinstance(r["human_label"], list), r["human_label"]
    return {r["id"]: (None if r["human_label"] is None else run.kind.decode(json.dumps(r["human_label"])))
            for r in rows}
