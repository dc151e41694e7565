"""`labeler route RUN --more-reviews N`: the N items whose consensus is least certain go to another reviewer.

The consensus is the task's `[aggregate] method` (or the one asked for) over every annotator of the run;
candidates are the items with at least one answer, not adjudicated, whose consensus posterior is below
`[aggregate] uncertain_below`, least certain first. They move to the front of the queue with the reason
`more_reviews` (an item already queued keeps its reasons, its audit flag and its inclusion probability;
the audit is not redrawn); the rest of the queue follows in its order. The terminal review shows a reviewer
only the items they have not answered. `labeler review push` sends a tool only the items its project does
not have yet; for those it has, a push to Label Studio raises each task's overlap by one, and a push to
Argilla says in one line that it cannot (argilla-server counts one min_submitted for every record of a
dataset: labeler.review.live_sync.argilla_more_reviews).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from labeler.aggregate import aggregate_config, check_method
from labeler.aggregate.collect import consensus_of, read_annotations
from labeler.errors import RoutingError
from labeler.record import records
from labeler.store import RunStore
from labeler.store.rows import QueueEntry

REASON = "more_reviews"


@dataclass(frozen=True)
class MoreReviews:
    method: str
    below: float
    candidates: int  # items under the threshold
    picked: tuple[tuple[str, float], ...]  # (item id, consensus posterior), least certain first
    queue_size: int


def more_reviews(run_dir: Path, n: int, *, method: str | None = None) -> MoreReviews:
    if n < 1:
        raise RoutingError(f"--more-reviews must be at least 1, got {n}")
    store = RunStore.open(run_dir)
    try:
        cfg = aggregate_config(store.task().raw)
        method = check_method(method or cfg.method)
        ra = read_annotations(store)
        c = consensus_of(ra, method)
        answered = {i for i, _, _ in ra.triples}
        order = {i: k for k, i in enumerate(ra.items)}
        doubtful = [
            (i, p)
            for i, (_, p) in c.by_item().items()
            if i in answered and i not in ra.adjudicated and p < cfg.uncertain_below
        ]
        doubtful.sort(key=lambda t: (t[1], order[t[0]]))
        picked = doubtful[:n]
        queue = store.queue()
        queued = {e.item_id: e for e in queue}
        recs = {r.id: r for r in records(store) if r.id in {i for i, _ in picked} - set(queued)}
        front = []
        for i, p in picked:
            e = queued.get(i)
            if e is None:
                r = recs[i]
                e = QueueEntry(i, 0, (REASON,), 1.0 - p, False, r.label, r.confidence, member_labels=r.member_labels)
            elif REASON not in e.reasons:
                e = replace(e, reasons=(*e.reasons, REASON))
            front.append(e)
        taken = {i for i, _ in picked}
        entries = [replace(e, rank=k) for k, e in enumerate([*front, *(e for e in queue if e.item_id not in taken)], 1)]
        seed = store.audit_seed()
        store.write_queue(entries, store.audit_strata(), seed=store.task().routing.seed if seed is None else seed)
        return MoreReviews(method, cfg.uncertain_below, len(doubtful), tuple(picked), len(entries))
    finally:
        store.close()


def format_more_reviews(m: MoreReviews) -> str:
    head = (
        f"{m.method} consensus: {m.candidates} items below posterior {m.below:g}; "
        f"{len(m.picked)} moved to the front of the queue ({m.queue_size} items) for another review"
    )
    if not m.picked:
        return head
    lo, hi = m.picked[0][1], m.picked[-1][1]
    return head + f"\nposterior of those: {lo:.2f} to {hi:.2f}"
