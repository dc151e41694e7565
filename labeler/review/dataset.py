"""The final dataset: the LLM's label of every item (labeler.record) with the human verdict (labeler.humans)
where there is one. No rule is decided here: `records` says what the LLM answered, `read_humans` what the
humans settled (its one rule: adjudication, majority, gold on a tie, else the earliest answer), so the
final dataset and the evaluation's reference agree on every item.

Columns, first: id, label (the human verdict where there is one, else the LLM's), source ("llm", "human",
"gold" or "adjudicated"), tie (the votes split evenly at the top: worth adjudicating), llm_label,
human_label (the verdict, None without one), human_labels (JSON reviewer -> label: every vote kept, gold
as "gold", an adjudication as "adjudicated"), n_reviews (reviewers' votes; gold and adjudications not
counted), correction_reasons (JSON list), reviewer_reasons and notes (JSON reviewer -> the correction reason,
and the note exactly as the reviewer wrote it), routing_reasons (JSON list, [] when not routed), audit,
inclusion_prob; then the export's columns of the item (labeler.export.item_rows: confidence, status,
provenance, ...). `labeler.review.merge` puts the two together (final_rows, merge_run).

With `consensus` (`labeler export --consensus METHOD`: item -> (label, posterior) from labeler.aggregate),
labeler.humans' aggregation mode decides `label` (source "consensus" unless adjudicated), `human_label`
stays the reviewers' verdict by the plain rule, and `consensus_method`, `consensus_posterior` are added.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from labeler.humans import GOLD, read_humans
from labeler.record import records
from labeler.store import RunStore
from labeler.store.rows import Review


def with_human_labels(
    store: RunStore,
    export_rows: Iterable[Mapping[str, Any]],
    *,
    consensus: Mapping[str, tuple[str, float]] | None = None,
    method: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The final dataset's rows: each of `export_rows` (labeler.export.item_rows of `store`, one per
    ItemRecord in input order) with the human verdict and the routing columns in front (see the module
    docstring). Taking the export's rows as an argument keeps this module below labeler.export."""
    humans = read_humans(store, store.task().label_names)
    final = humans if consensus is None else read_humans(store, store.task().label_names, consensus=consensus)
    queue = {e.item_id: e for e in store.queue()}
    reviews = store.reviews()
    for rec, row in zip(records(store), export_rows, strict=True):
        if row["id"] != rec.id:
            raise AssertionError(f"export row {row['id']!r} is not record {rec.id!r}")
        verdict = humans.verdicts.get(rec.id)
        votes = dict(verdict.votes) if verdict is not None else {}
        n_reviews = sum(r != GOLD for r in votes)
        if verdict is not None and verdict.adjudication is not None:
            votes["adjudicated"] = verdict.adjudication
        human = None if verdict is None else verdict.label
        decided = final.verdicts.get(rec.id)
        q = queue.get(rec.id)
        out: dict[str, Any] = {
            "id": rec.id,
            "label": decided.label if decided is not None and decided.label is not None else rec.label,
            "source": (decided.source if decided is not None else None) or "llm",
            "tie": bool(verdict is not None and verdict.tie),
            "llm_label": rec.label,
            "human_label": human,
            "human_labels": json.dumps(votes, ensure_ascii=False),
            "n_reviews": n_reviews,
            "correction_reasons": json.dumps(sorted(set(humans.correction_reasons.get(rec.id, ())))),
            "reviewer_reasons": _by_reviewer(reviews.get(rec.id, ()), "correction_reason"),
            "notes": _by_reviewer(reviews.get(rec.id, ()), "note"),
            "routing_reasons": json.dumps(list(q.reasons)) if q is not None else "[]",
            "audit": q.audit if q is not None else False,
            "inclusion_prob": q.inclusion_prob if q is not None else None,
        }
        if consensus is not None:
            out["consensus_method"] = method
            out["consensus_posterior"] = None if decided is None else decided.posterior
        out.update({k: v for k, v in row.items() if k not in ("id", "label")})
        yield out


def _by_reviewer(reviews: Iterable[Review], what: str) -> str:
    """JSON reviewer -> the review's `what` (note or correction reason) as stored, for the reviews that have one."""
    return json.dumps({r.reviewer: v for r in reviews if (v := getattr(r, what)) is not None}, ensure_ascii=False)
