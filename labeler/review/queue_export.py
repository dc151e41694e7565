"""Exporting the review queue for people: Label Studio, Argilla or a CSV, with the LLM's suggestion or blind.

Showing the LLM's suggestion speeds review but anchors reviewers on it. `no_suggestion` hides it on every
item. `blind_audit` keeps the random audit an honest measure of the LLM: nothing an annotator sees may
tell an audit item from another, so with it

    - no item shows the suggestion (hiding it on audit items only would mark them out);
    - the routing reasons, the rank and the audit flag stay in the run's store, keyed by item id, and
      are left out of every task, record and row (Label Studio data, Argilla metadata, the CSV);
    - items come in a fixed shuffled order (a hash of run id and item id), not by rank: in rank order
      the confident items at the end of the queue would be the audit's.

The import joins answers to the queue by item id, so nothing is lost. Confidences are written with 4
decimals. `overlap` asks each item to be labeled by that many reviewers (Argilla's task distribution,
Label Studio's maximum_annotations in the project settings written beside the tasks).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labeler.errors import ReviewError
from labeler.review.argilla import argilla_records, argilla_settings, suggestion_agent
from labeler.review.csvfile import write_queue_csv
from labeler.review.labelstudio import labelstudio_config, labelstudio_project, labelstudio_tasks
from labeler.review.tasktype_formats import kind_of
from labeler.store import RunStore
from labeler.store.rows import QueueEntry

EXPORT_FORMATS = ("labelstudio", "argilla", "csv")


def shows_suggestion(entry: QueueEntry, *, blind_audit: bool, no_suggestion: bool) -> bool:
    """Whether the LLM's label is shown for `entry`: never with `no_suggestion` or `blind_audit`."""
    return entry.llm_label is not None and not no_suggestion and not blind_audit


def presentation_order(entries: Sequence[QueueEntry], *, blind_audit: bool, salt: str) -> list[QueueEntry]:
    """The order people see the queue in: rank order, or with `blind_audit` a shuffle that does not depend
    on rank (sha256 of salt and item id, so the same run gives the same order)."""
    if not blind_audit:
        return sorted(entries, key=lambda e: e.rank)
    return sorted(entries, key=lambda e: hashlib.sha256(f"{salt}\0{e.item_id}".encode()).hexdigest())


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def export_queue(
    run_dir: Path,
    out: Path,
    fmt: str,
    *,
    blind_audit: bool = False,
    no_suggestion: bool | None = None,
    overlap: int = 1,
) -> list[Path]:
    """Write the queue for a review tool; returns the files written (the tool's settings beside the tasks).
    `no_suggestion` None follows the task's review.show_suggestion; `overlap`: reviewers wanted per item."""
    if fmt not in EXPORT_FORMATS:
        raise ReviewError(f"unknown review format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    if overlap < 1:
        raise ReviewError(f"--overlap is the number of reviewers per item: at least 1, got {overlap}")
    store = RunStore.open(run_dir)
    try:
        task = store.task()
        entries = store.queue()
        manifest = store.manifest
    finally:
        store.close()
    if not entries:
        raise ReviewError(f"the queue of {run_dir} is empty; run `labeler route {run_dir}` first")
    hide = (not task.review.show_suggestion) if no_suggestion is None else no_suggestion
    run_id = str(manifest["run_id"])
    entries = presentation_order(entries, blind_audit=blind_audit, salt=run_id)
    suggest = frozenset(
        e.item_id for e in entries if shows_suggestion(e, blind_audit=blind_audit, no_suggestion=hide)
    )
    labels, reasons, kind = task.label_names, task.review.reasons, kind_of(task)
    model = (manifest["members"][0].get("endpoint") or {}).get("model") or "llm"
    agent = suggestion_agent(run_id, str(model))
    if fmt == "labelstudio":
        config_path = out.with_name(out.stem + ".label_config.xml")
        project_path = out.with_name(out.stem + ".project.json")
        config = labelstudio_config(labels, reasons, kind=kind)
        tasks = labelstudio_tasks(entries, model_version=agent, suggest=suggest, blind=blind_audit, kind=kind)
        _write_json(out, tasks)
        config_path.write_text(config, encoding="utf-8")
        project = labelstudio_project(
            config,
            title=f"{task.name} review ({run_id})",
            instructions=task.instructions,
            overlap=overlap,
            predictions_shown=bool(suggest),
        )
        _write_json(project_path, project)
        return [out, config_path, project_path]
    if fmt == "argilla":
        settings_path = out.with_name(out.stem + ".settings.json")
        _write_json(out, argilla_records(entries, agent=agent, suggest=suggest, blind=blind_audit, kind=kind))
        settings = argilla_settings(
            labels, reasons, guidelines=task.instructions, overlap=overlap, blind=blind_audit, kind=kind
        )
        _write_json(settings_path, settings)
        return [out, settings_path]
    write_queue_csv(out, entries, suggest=suggest, blind=blind_audit, kind=kind)
    return [out]
