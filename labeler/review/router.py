"""Routing: choose the items a human should see, within a review budget, and queue them in run.sqlite.

Reasons an item is routed (an item carries every reason that applies):
    failed          no usable label from the model: a human must label it
    low_confidence  confidence < threshold; the confidence is `calibrated_confidence` when calibration
                    ran, else the ensemble's confidence (with several members), else the member's; for
                    multi_label and spans, any element below it, named in the reason (labeler.review.candidates)
    disagreement    ensemble vote share < min_vote_share or divergence > max_divergence (when present)
    dropped_spans   spans: the answer quoted spans that could not be placed (labeler.review.candidates)
    active_learning picked by a query strategy from a student classifier, when one is asked for (below);
                    never an audit item
    audit           a seeded random sample of audit_fraction of ALL labeled items, confident ones
                    included, stratified by predicted label (multi_label, spans: by its number of elements,
                    0, 1, 2, 3+) with proportional allocation, at least one per non-empty stratum; each
                    item's inclusion probability n_h/N_h is recorded, so the sample estimates the LLM's
                    accuracy over the whole run without bias

Budget: at most max_items items, or max_dollars / review.price_per_label, whichever is smaller. The audit
sample is kept whole (cutting it would bias it); the other routed items are taken by priority until the
budget is spent. Priority is the item's doubt: 2 for failed items, else the largest of 1 - confidence,
1 - vote share and divergence (unknown parts count 0). The queue's rank orders every routed item,
audit ones included, by priority (most doubtful first; ties in input order); active-learning picks follow.

Active learning (`route_run(strategy=..., batch=N)`, `labeler route RUN_DIR --strategy margin --batch N`):
after routing, N more items are picked by a query strategy from a student classifier trained on the human
labels so far (labeler.study.live.next_batch). Candidates have no human label, are not in this plan's queue
(so neither routed nor audited), not in the study's test split and not skipped. A pick carries the reason
active_learning (after any flag of its own that the budget had left out) and is not an audit item: audit
False, inclusion_prob None, so the audit's estimates do not move. Picks rank after every routed item, in
the strategy's order (its best first); their priority is their doubt, as for any item. They count against
the budget: the audit is kept whole, the N picks come next (fewer when the audit leaves less room), and the
flagged items take what is left, by priority (the batch is what this round asked for; the flagged items
given up are the least doubtful). Without a budget the picks are simply added. The audit draw does not
depend on the strategy: same seed, same sample. `append_picks` (`labeler study next --queue`) instead adds
picks after the current queue, leaving it and the audit as they are, with no budget.

Skipped items (empty text) are never routed; items still pending are routed after `labeler resume`.
Selection is pure functions on plain lists (`plan`, `add_picks`); `route_run` reads the run and writes the
tables.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from labeler.config import ReviewConfig
from labeler.errors import RoutingError
from labeler.record import records
from labeler.review.candidates import (
    REASONS,
    Candidate,
    Rules,
    candidate_from_record,
    priority,
    reason_code,
    reasons_for,
)
from labeler.store import RunStore
from labeler.store.rows import QueueEntry, Stratum
from labeler.tasktypes.registry import for_task

ACTIVE = "active_learning"


@dataclass(frozen=True)
class AuditSample:
    item_ids: frozenset[str]
    strata: tuple[Stratum, ...]
    seed: int


@dataclass(frozen=True)
class Plan:
    queue: tuple[QueueEntry, ...]  # rank order
    strata: tuple[Stratum, ...]
    seed: int
    cap: int | None  # the budget in items (None: no budget)
    flagged: int  # items with a reason other than audit, before the budget cut
    dropped: int  # of those, how many the budget left out
    active: ActivePicks | None = None  # the active-learning picks, when a strategy was asked for
    threshold_from: str | None = None  # "0.900 from labeler relabel ...": the run's stored threshold was used


@dataclass(frozen=True)
class ActivePicks:
    """What the query strategy added to a plan."""

    strategy: str  # as asked
    used: str  # as used: a cold start (fewer than two labels seen) picks at random or by core-set
    asked: int  # the batch size asked for
    room: int  # what the budget left for the picks (asked, without a budget)
    picked: int
    trained_on: int  # human labels the student was trained on
    candidates: int  # items it could pick from
    cold_start: bool = False


# --- pure selection ---------------------------------------------------------------------------------
def allocate(populations: Mapping[str, int], *, fraction: float) -> dict[str, int]:
    """Audit size per stratum: n = round(fraction × N) shared in proportion to the stratum sizes N_h
    (largest remainders; ties by stratum name), then at least 1 and at most N_h per non-empty stratum.
    fraction 0 gives 0 everywhere."""
    if not 0.0 <= fraction <= 1.0:
        raise RoutingError(f"the audit fraction must be between 0 and 1, got {fraction}")
    sizes = {h: n for h, n in populations.items() if n > 0}
    total_pop = sum(sizes.values())
    if fraction == 0.0 or total_pop == 0:
        return dict.fromkeys(populations, 0)
    n = math.floor(fraction * total_pop + 0.5)
    base = {h: n * size // total_pop for h, size in sizes.items()}
    left = n - sum(base.values())
    by_remainder = sorted(sizes, key=lambda h: (-(n * sizes[h] % total_pop), h))
    for h in by_remainder[:left]:
        base[h] += 1
    out = dict.fromkeys(populations, 0)
    out.update({h: min(sizes[h], max(1, base[h])) for h in sizes})
    return out


def audit_sample(items: Iterable[tuple[str, str]], *, fraction: float, seed: int) -> AuditSample:
    """Stratified random sample of (item id, stratum) pairs, without replacement within each stratum.

    The draw depends only on the set of pairs, `fraction` and `seed` (not on their order): strata are
    visited by name and each stratum's ids sorted, then numpy's Generator(seed) picks n_h of N_h."""
    by_stratum: dict[str, list[str]] = {}
    for item_id, stratum in items:
        by_stratum.setdefault(stratum, []).append(item_id)
    sizes = allocate({h: len(ids) for h, ids in by_stratum.items()}, fraction=fraction)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    strata = []
    for h in sorted(by_stratum):
        ids = sorted(by_stratum[h])
        picks = rng.choice(len(ids), size=sizes[h], replace=False).tolist() if sizes[h] else []
        chosen.update(ids[i] for i in picks)
        strata.append(Stratum(h, len(ids), sizes[h]))
    return AuditSample(frozenset(chosen), tuple(strata), seed)


def budget_cap(*, max_items: int | None, max_dollars: float | None, price_per_label: float) -> int | None:
    """The review budget in items: the smaller of max_items and floor(max_dollars / price); None if unbounded."""
    caps = []
    if max_items is not None:
        if max_items < 0:
            raise RoutingError(f"--max-items must be >= 0, got {max_items}")
        caps.append(int(max_items))
    if max_dollars is not None:
        if max_dollars < 0:
            raise RoutingError(f"--max-dollars must be >= 0, got {max_dollars}")
        if price_per_label > 0:
            caps.append(math.floor(max_dollars / price_per_label + 1e-9))
    return min(caps) if caps else None


def plan(
    candidates: Sequence[Candidate],
    *,
    rules: Rules,
    audit_fraction: float,
    seed: int,
    cap: int | None,
    reserve: int = 0,
) -> Plan:
    """Choose and rank the queue from `candidates` (in input order; the order breaks priority ties).
    `reserve` items of the budget are kept free for active-learning picks (taken from the flagged items'
    room, never from the audit)."""
    labeled = [c for c in candidates if c.label is not None]
    sample = audit_sample(((c.item_id, c.stratum) for c in labeled), fraction=audit_fraction, seed=seed)
    probs = {s.name: s.inclusion_prob for s in sample.strata}
    order = {c.item_id: i for i, c in enumerate(candidates)}

    audited: list[tuple[Candidate, tuple[str, ...]]] = []
    flagged: list[tuple[Candidate, tuple[str, ...]]] = []
    for c in candidates:
        reasons = reasons_for(c, rules)
        if c.item_id in sample.item_ids:
            audited.append((c, (*reasons, "audit")))
        elif reasons:
            flagged.append((c, reasons))
    flagged.sort(key=lambda cr: (-priority(cr[0]), order[cr[0].item_id]))
    room = len(flagged) if cap is None else max(0, cap - len(audited) - reserve)
    chosen = audited + flagged[:room]
    chosen.sort(key=lambda cr: (-priority(cr[0]), order[cr[0].item_id]))
    queue = tuple(
        QueueEntry(
            item_id=c.item_id,
            rank=rank,
            reasons=reasons,
            priority=priority(c),
            audit="audit" in reasons,
            llm_label=c.label,
            confidence=c.confidence,
            inclusion_prob=probs[c.stratum] if "audit" in reasons else None,
            stratum=c.stratum if c.label is not None else None,
            member_labels=c.member_labels,
        )
        for rank, (c, reasons) in enumerate(chosen, start=1)
    )
    return Plan(queue, sample.strata, seed, cap, len(flagged), len(flagged) - min(room, len(flagged)))


def active_room(p: Plan, asked: int) -> int:
    """How many active-learning picks fit the budget of `p`: all `asked` without one, else what the audit
    leaves (plan `p` with reserve=asked, so the flagged items have made room)."""
    if p.cap is None:
        return asked
    return min(asked, max(0, p.cap - sum(e.audit for e in p.queue)))


def add_picks(
    p: Plan, picks: Sequence[str], candidates: Sequence[Candidate], *, rules: Rules, info: ActivePicks | None = None
) -> Plan:
    """`p` with the picked item ids queued after its items, in the order given, with reason active_learning
    (and `info` as its `active`). A pick must be a candidate and not already queued (next_batch leaves
    queued items out)."""
    by_id = {c.item_id: c for c in candidates}
    queued = {e.item_id for e in p.queue}
    bad = [i for i in picks if i in queued or i not in by_id] + [i for i, n in Counter(picks).items() if n > 1]
    if bad:
        raise RoutingError(f"active-learning picks must be new, distinct candidates; got {', '.join(bad[:5])}")
    added = []
    for rank, item_id in enumerate(picks, start=max((e.rank for e in p.queue), default=0) + 1):
        c = by_id[item_id]
        reasons = (*reasons_for(c, rules), ACTIVE)
        added.append(
            QueueEntry(
                item_id=c.item_id,
                rank=rank,
                reasons=reasons,
                priority=priority(c),
                audit=False,
                llm_label=c.label,
                confidence=c.confidence,
                inclusion_prob=None,
                stratum=c.stratum if c.label is not None else None,
                member_labels=c.member_labels,
            )
        )
    rescued = sum(len(e.reasons) > 1 for e in added)  # flagged items the budget had left out, picked anyway
    return Plan((*p.queue, *added), p.strata, p.seed, p.cap, p.flagged, p.dropped - rescued, info or p.active)


# --- the run ------------------------------------------------------------------------------------------
def load_candidates(store: RunStore) -> list[Candidate]:
    """The routing candidates of a run, in input order."""
    kind = for_task(store.task())
    return [c for c in (candidate_from_record(r, kind) for r in records(store)) if c is not None]


def write_plan(store: RunStore, p: Plan) -> None:
    """Replace the run's queue and audit strata with `p` (reviews are kept)."""
    store.write_queue(p.queue, p.strata, seed=p.seed)


def route_run(
    run_dir: Path,
    *,
    max_items: int | None = None,
    max_dollars: float | None = None,
    audit_fraction: float | None = None,
    seed: int | None = None,
    threshold: float | None = None,
    strategy: str | None = None,
    batch: int = 20,
) -> tuple[Plan, ReviewConfig]:
    """Route a run with its task's [routing] and [review] settings, the arguments overriding them; with
    `strategy`, also queue `batch` active-learning picks (see the module docstring)."""
    if strategy is not None:
        from labeler.study.strategies import STRATEGIES

        if strategy not in STRATEGIES:
            raise RoutingError(f"unknown strategy {strategy!r}: choose from {', '.join(STRATEGIES)}")
        if batch < 1:
            raise RoutingError(f"--batch must be at least 1, got {batch}")
    store = RunStore.open(run_dir)
    try:
        task = store.task()
        cfg = task.routing
        fraction = cfg.audit_fraction if audit_fraction is None else audit_fraction
        rules = Rules(
            threshold=cfg.low_confidence if threshold is None else threshold,
            min_vote_share=cfg.min_vote_share,
            max_divergence=cfg.max_divergence,
        )
        cap = budget_cap(
            max_items=cfg.max_items if max_items is None else max_items,
            max_dollars=cfg.max_dollars if max_dollars is None else max_dollars,
            price_per_label=task.review.price_per_label,
        )
        candidates = load_candidates(store)
        if not candidates:
            raise RoutingError(f"{run_dir} has no labeled or failed items yet; run `labeler resume {run_dir}` first")
        seed = cfg.seed if seed is None else seed
        reserve = batch if strategy is not None else 0
        p = plan(candidates, rules=rules, audit_fraction=fraction, seed=seed, cap=cap, reserve=reserve)
        if strategy is not None:
            p = _with_active(run_dir, p, candidates, rules=rules, strategy=strategy, batch=batch)
        tuned = store.routing_threshold() if threshold is None else None  # task() has applied it already
        if tuned is not None:
            p = replace(p, threshold_from=f"{tuned.value:.3f} from {tuned.source}")
        write_plan(store, p)
        return p, task.review
    finally:
        store.close()


def _with_active(
    run_dir: Path, p: Plan, candidates: Sequence[Candidate], *, rules: Rules, strategy: str, batch: int
) -> Plan:
    """`p` plus what the strategy picks among the items `p` leaves unqueued (the study is imported here)."""
    from labeler.study.live import next_batch

    room = active_room(p, batch)
    if room == 0:
        return replace(p, active=ActivePicks(strategy, strategy, batch, 0, 0, 0, 0))
    nb = next_batch(run_dir, strategy=strategy, batch=room, queued={e.item_id for e in p.queue})
    ids = [k.id for k in nb.picks]
    used = nb.picks[0].strategy if nb.picks else strategy
    info = ActivePicks(strategy, used, batch, room, len(ids), nb.trained_on, nb.candidates, nb.cold_start)
    return add_picks(p, ids, candidates, rules=rules, info=info)


def append_picks(run_dir: Path, picks: Sequence[str]) -> list[QueueEntry]:
    """Queue picked item ids after the run's current queue, with reason active_learning (as `add_picks`),
    leaving the queue, the audit and the reviews as they are; no budget applies (`labeler study next
    --queue`: the batch size is the budget). Returns the entries added."""
    store = RunStore.open(run_dir)
    try:
        cfg = store.task().routing
        rules = Rules(cfg.low_confidence, cfg.min_vote_share, cfg.max_divergence)
        current = Plan(tuple(store.queue()), tuple(store.audit_strata()), cfg.seed, None, 0, 0)
        added = add_picks(current, picks, load_candidates(store), rules=rules).queue[len(current.queue) :]
        store.append_queue(added)
        return list(added)
    finally:
        store.close()


def format_plan(p: Plan, review: ReviewConfig) -> str:
    counts = Counter(reason_code(reason) for r in p.queue for reason in r.reasons)
    n = len(p.queue)
    audit = sum(r.audit for r in p.queue)
    lines = [
        f"queued {n} items: "
        + ", ".join(f"{counts[x]} {x}" for x in REASONS if counts[x])
        + " (an item may have several)",
        f"audit: {audit} items from {sum(s.population for s in p.strata)} labeled, stratified by label "
        f"(seed {p.seed}): " + ", ".join(f"{s.name} {s.sampled}/{s.population}" for s in p.strata),
        f"review cost: ${n * review.price_per_label:.2f}, about {n * review.seconds_per_label / 3600:.1f} h "
        f"at {review.seconds_per_label:g} s/label",
    ]
    if p.dropped:
        lines.append(f"budget ({p.cap} items) left out {p.dropped} of {p.flagged} flagged items (the least doubtful)")
    if p.active is not None:
        lines.append(_format_active(p.active, p.cap))
    if p.cap is not None and audit > p.cap:
        lines.append(f"warning: the audit sample alone ({audit}) exceeds the budget ({p.cap}); it is kept whole")
    if p.threshold_from:
        lines.append(f"threshold {p.threshold_from}")
    return "\n".join(lines)


def _format_active(a: ActivePicks, cap: int | None) -> str:
    if a.room == 0:
        return (
            f"active learning: the budget ({cap} items) left no room for the {a.asked} picks asked (the audit is whole)"
        )
    how = f"{a.picked} picked by {a.used}"
    if a.cold_start:
        how += f" (cold start: fewer than two labels seen, so not by {a.strategy})"
    out = f"active learning: student trained on {a.trained_on} human labels; {how}, from {a.candidates} candidates"
    if a.room < a.asked:
        out += f"; the budget ({cap} items) left room for {a.room} of the {a.asked} asked"
    elif a.picked < a.room:
        out += f"; only {a.picked} of the {a.asked} asked could be picked"
    return out
