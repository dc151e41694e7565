"""Gathering for tasks whose annotation is more than one label (multi_label, spans): the LLM's annotation of
every item and every human one, decoded by the task type.

    gather_annotations(run_dir, human_file)  ->  AnnotationInputs

The run store keeps an annotation as the text `kind.encode` writes (results, reviews); the input's gold
column and `--human FILE` hold the corpus's own cells. Every human text is read by
`tasktypes.gold.read_gold` (which takes both) and compared as its canonical encoding, so two reviewers
who chose the same labels in another order agree. An item's reference annotation follows labeler.humans'
rule, as for single labels (adjudication wins; majority of whole annotations; a tie goes to gold, else to
the earliest answer). A human text that cannot be read is left out and counted in a note; an LLM answer
that cannot be decoded counts as failed. Skipped items (empty text) are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labeler.evaluate.gather import AuditDesign, _read_audit, human_file_rows, labelled_records, spend
from labeler.humans import GOLD, decide
from labeler.store import RunStore
from labeler.tasktypes import TaskType
from labeler.tasktypes.gold import read_gold
from labeler.tasktypes.registry import for_task


@dataclass(frozen=True)
class AnnotationInputs:
    """Everything the multi-label and span evaluations read, one entry per non-skipped item in input order."""

    run_id: str
    kind: TaskType
    labels: tuple[str, ...]  # label names (multi_label) or entity types (spans)
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    pred: tuple[Any, ...]  # the LLM's annotation; None when the item failed
    human: tuple[Mapping[str, str], ...]  # reviewer -> canonical encoded annotation, per item
    reference: tuple[Any, ...]  # the human annotation by labeler.humans' rule (None: none)
    reviewed: frozenset[str]  # ids with an annotation in the run's reviews table
    audit: AuditDesign | None = None
    correction_reasons: Mapping[str, int] = field(default_factory=dict)
    llm_cost: float = 0.0
    tokens: Mapping[str, int] = field(default_factory=dict)
    n_skipped: int = 0
    notes: tuple[str, ...] = ()


def gather_annotations(run_dir: Path, *, human_file: Path | None = None) -> AnnotationInputs:
    store = RunStore.open(run_dir)
    try:
        kind = for_task(store.task())
        ids: list[str] = []
        texts: list[str] = []
        pred: list[Any] = []
        undecodable = 0
        recs, n_skipped = labelled_records(store, run_dir)
        for rec in recs:
            ids.append(rec.id)
            texts.append(rec.text)
            try:
                pred.append(kind.decode(rec.label))
            except ValueError:
                undecodable += 1
                pred.append(None)
        index = {i: n for n, i in enumerate(ids)}
        notes: list[str] = []
        if undecodable:
            notes.append(f"{undecodable} stored LLM annotations could not be read and count as failed")

        votes: list[dict[str, str]] = [{} for _ in ids]
        adjudicated: dict[int, str] = {}
        reasons: Counter[str] = Counter()
        unreadable: Counter[str] = Counter()
        outside = 0

        def read(item_id: str, cell: str) -> tuple[int, str] | None:
            nonlocal outside
            n = index.get(item_id)
            if n is None:
                outside += 1
                return None
            try:
                return n, str(kind.encode(read_gold(kind, cell, text=texts[n])))
            except ValueError as e:
                unreadable[str(e)] += 1
                return None

        for item_id, cell in store.gold_labels().items():
            got = read(item_id, cell)
            if got:
                votes[got[0]][GOLD] = got[1]
        for item_id, revs in store.reviews().items():
            for r in revs:
                got = read(item_id, r.label)
                if not got:
                    continue
                if r.adjudication:
                    adjudicated[got[0]] = got[1]  # oldest first: the latest adjudication wins
                else:
                    votes[got[0]][r.reviewer] = got[1]
                if r.correction_reason:
                    reasons[r.correction_reason] += 1
        for item_id, reviewer, cell in human_file_rows(human_file, index):
            got = read(item_id, cell)
            if got:
                votes[got[0]][reviewer] = got[1]
        if unreadable:
            top = "; ".join(f"{k} (×{v})" for k, v in unreadable.most_common(3))
            notes.append(f"{sum(unreadable.values())} human annotations could not be read and were left out: {top}")
        if outside:
            notes.append(f"{outside} human annotations name ids that are not (non-skipped) items of this run")
        reference = []
        for n in range(len(ids)):
            verdict = decide(votes[n], adjudication=adjudicated.get(n))
            reference.append(None if verdict.label is None else kind.decode(verdict.label))
        llm_cost, tokens = spend(store)
        return AnnotationInputs(
            run_id=str(store.manifest.get("run_id", run_dir.name)),
            kind=kind,
            labels=tuple(store.task().label_names),
            ids=tuple(ids),
            texts=tuple(texts),
            pred=tuple(pred),
            human=tuple(votes),
            reference=tuple(reference),
            reviewed=frozenset(set(store.reviews()) & set(index)),
            audit=_read_audit(store, set(index), notes),
            correction_reasons=dict(reasons),
            llm_cost=llm_cost,
            tokens=tokens,
            n_skipped=n_skipped,
            notes=tuple(notes),
        )
    finally:
        store.close()
