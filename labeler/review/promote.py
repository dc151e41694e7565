"""Feedback: corrected items become few-shot examples.

Caching, honestly: the request cache key covers the rendered prompt (messages, model, params), and a
template that renders `examples` (the bundled ones do) puts them into every prompt. So after adding
examples *every* prompt changes, and a new run pays for every item again; the cache only serves prompts
that are unchanged. The run's template hash covers the template file, not the examples: do not
`labeler resume` an old run after promoting (its remaining items would get a different prompt from the
rest); start a new run, and route and review it again. The promoted items then appear in their own
prompts: leave them out when you measure accuracy on that corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

from labeler.errors import ReviewError
from labeler.inputs import read_records
from labeler.review.merge import final_rows
from labeler.store import RunStore


def examples_path(store: RunStore) -> Path:
    """The few-shot examples file the run's task config names (task.examples)."""
    cfg = store.manifest.get("config") or {}
    value = cfg.get("task", {}).get("examples")
    if not isinstance(value, str):
        raise ReviewError(
            "the task has no examples file (task.examples lists them inline or is unset); pass --examples"
        )
    return (Path(store.manifest["config_path"]).parent / value).resolve()


def _texts(path: Path) -> set[str]:
    """The texts the examples file holds already (read with labeler.inputs.read_records)."""
    if not path.exists() or path.stat().st_size == 0:
        return set()
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise ReviewError(f"{path.name}: promote appends JSON Lines; point --examples at a .jsonl file")
    have = set()
    for n, rec in read_records(path, what="the examples file"):
        if "text" not in rec or "label" not in rec:
            raise ReviewError(f"{path}: line {n} is not a {{text, label}} JSON object; fix the file")
        have.add(rec["text"])
    return have


def promote(run_dir: Path, *, examples: Path | None = None, max_n: int | None = None) -> tuple[Path, int]:
    """Append corrected items — a human (or adjudicated) label that differs from the LLM's, not a tie —
    as few-shot examples {"text", "label"} (JSONL) to `examples` (default: the file task.examples names),
    in input order, skipping texts the file already holds. Returns the file and how many were added.
    See the module docstring on what this does to caching and resumed runs."""
    store = RunStore.open(run_dir)
    try:
        path = examples if examples is not None else examples_path(store)
        have = _texts(path)
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
