"""`labeler review status RUN`: where the review stands, and which reviewers the consensus doubts.

Queue progress (items queued, answered by at least one reviewer, by two or more, adjudicated), then per
annotator (reviewers and LLM members) its number of answers, its estimated accuracy with an interval
(labeler.aggregate.quality), its accuracy on gold items where the input has them, and a flag when a
reviewer's estimated accuracy is below `[aggregate] min_accuracy` (or --min-accuracy). For a multi-label
task an annotator's accuracy is the mean over the labels of its accuracy on each label's yes/no question.
A reviewer pulled from Label Studio or Argilla is shown by its user id and the user name the pull recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labeler.aggregate import aggregate_config, check_method
from labeler.aggregate.collect import RunAnnotations, consensus_of, read_annotations
from labeler.aggregate.multilabel import MultiConsensus, binary_annotations
from labeler.aggregate.quality import AnnotatorQuality, annotator_quality
from labeler.safe_text import visible
from labeler.store import RunStore


@dataclass(frozen=True)
class ReviewStatus:
    method: str
    min_accuracy: float
    queued: int
    answered: int
    overlapped: int
    adjudicated: int
    annotators: tuple[AnnotatorQuality, ...]
    humans: tuple[str, ...]
    names: Mapping[str, str] = field(default_factory=dict)  # reviewer id -> the tool's user name (live sync)

    @property
    def flagged(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.annotators if q.name in self.humans and q.accuracy < self.min_accuracy)


def qualities(ra: RunAnnotations, method: str) -> list[AnnotatorQuality]:
    """Every annotator's quality by `method`'s consensus (per label and averaged for multi-label)."""
    c = consensus_of(ra, method)
    if not isinstance(c, MultiConsensus):
        return annotator_quality(ra.annotations(), c, method=method, gold=ra.gold, probs=ra.probs, humans=ra.humans)
    per = binary_annotations(ra.triples, ra.labels, items=ra.items)
    by_label = {
        lab: annotator_quality(per[lab], c.per_label[lab], method=method, leave_one_out=False) for lab in ra.labels
    }
    out = []
    for j, name in enumerate(per[ra.labels[0]].annotators):
        qs = [by_label[lab][j] for lab in ra.labels]
        acc, low, high = (float(np.mean([getattr(q, f) for q in qs])) for f in ("accuracy", "low", "high"))
        out.append(AnnotatorQuality(name, qs[0].n, acc, low, high, qs[0].confusion))
    return out


def sync_names(store: RunStore) -> dict[str, str]:
    """Reviewer id -> user name, as the live pulls of Label Studio and Argilla recorded them."""
    out: dict[str, str] = {}
    for tool in ("labelstudio", "argilla"):
        raw = store.get_meta(f"{tool}_sync")
        for entry in (json.loads(raw).get("projects", {}) if raw else {}).values():
            out.update({str(k): str(v) for k, v in (entry.get("users") or {}).items()})
    return out


def review_status(run_dir: Path, *, method: str | None = None, min_accuracy: float | None = None) -> ReviewStatus:
    store = RunStore.open(run_dir)
    try:
        cfg = aggregate_config(store.task().raw)
        method = check_method(method or cfg.method)
        ra = read_annotations(store)
        queued = [e.item_id for e in store.queue()]
        names = sync_names(store)
    finally:
        store.close()
    per_item: dict[str, int] = {}
    for i, a, _ in ra.triples:
        if a in ra.humans:
            per_item[i] = per_item.get(i, 0) + 1
    qs = qualities(ra, method) if ra.triples else []
    return ReviewStatus(
        method,
        cfg.min_accuracy if min_accuracy is None else min_accuracy,
        len(queued),
        sum(per_item.get(i, 0) >= 1 for i in queued),
        sum(per_item.get(i, 0) >= 2 for i in queued),
        len(ra.adjudicated),
        tuple(qs),
        ra.humans,
        {h: names[h] for h in ra.humans if h in names and names[h] != h},
    )


def format_status(s: ReviewStatus) -> str:
    lines = [
        f"queue: {s.queued} items, {s.answered} answered by a reviewer, {s.overlapped} by two or more, "
        f"{s.adjudicated} adjudicated",
        f"annotators by the {s.method} consensus (estimated accuracy, 95% interval; gold where the input has it):",
    ]
    for q in s.annotators:
        kind = "reviewer" if q.name in s.humans else "LLM"
        gold = f"; gold {q.gold_accuracy:.1%} of {q.gold_n}" if q.gold_accuracy is not None else ""
        flag = f"  FLAGGED: below {s.min_accuracy:.0%}" if q.name in s.flagged else ""
        who = f" <{visible(s.names[q.name])}>" if q.name in s.names else ""
        lines.append(
            f"  {visible(q.name)}{who} ({kind}): {q.n} answers, accuracy {q.accuracy:.1%} "
            f"({q.low:.1%}–{q.high:.1%}){gold}{flag}"
        )
    if not s.humans:
        lines.append("no reviewer has answered yet: the estimates compare the LLM members with each other only")
    if s.flagged:
        lines.append(
            f"{len(s.flagged)} reviewer(s) below {s.min_accuracy:.0%}: check their answers, or weigh them by "
            "`labeler export --consensus dawid_skene`"
        )
    return "\n".join(lines)
