"""Routing: choose the items a human should see, within a review budget, and queue them in run.sqlite.

Reasons an item is routed (an item carries every reason that applies):
    failed          no usable label from the model: a human must label it
    low_confidence  confidence < threshold; the confidence is `calibrated_confidence` when calibration
                    ran, else the ensemble's confidence (with several members), else the member's
    disagreement    ensemble vote share < min_vote_share or divergence > max_divergence (when present)
    audit           a seeded random sample of audit_fraction of ALL labeled items, confident ones
                    included, stratified by predicted label (proportional allocation, at least one per
                    non-empty stratum); each item's inclusion probability n_h/N_h is recorded, so the
                    sample estimates the LLM's accuracy over the whole run without bias

Budget: at most max_items items, or max_dollars / review.price_per_label, whichever is smaller. The audit
sample is kept whole (cutting it would bias it); the other routed items are taken by priority until the
budget is spent. Priority is the item's doubt: 2 for failed items, else the largest of 1 - confidence,
1 - vote share and divergence (unknown parts count 0). The queue's rank orders every queued item,
audit ones included, by priority (most doubtful first; ties in input order).

Skipped items (empty text) are never routed; items still pending are routed after `labeler resume`.
Selection is pure functions on plain lists (`plan`); `route_run` reads the run and writes the tables.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labeler.config import ReviewConfig, RoutingConfig
from labeler.errors import RoutingError
from labeler.record import ItemRecord, records
from labeler.store import RunStore
from labeler.store.rows import QueueEntry, Stratum

REASONS = ("failed", "low_confidence", "disagreement", "audit")  # canonical order within an item



@dataclass(frozen=True)
class Candidate:
    """What routing knows of one item. `label` None means the item failed."""

    item_id: str
    label: str | None
    confidence: float | None = None
    vote_share: float | None = None
    divergence: float | None = None
    member_labels: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Rules:
    threshold: float = RoutingConfig.low_confidence
    min_vote_share: float = RoutingConfig.min_vote_share
    max_divergence: float = RoutingConfig.max_divergence


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


# --- pure selection ---------------------------------------------------------------------------------
def reasons_for(c: Candidate, rules: Rules) -> tuple[str, ...]:
    """The non-audit reasons that apply to `c`, in canonical order."""
    if c.label is None:
        return ("failed",)
    out = []
    if c.confidence is not None and c.confidence < rules.threshold:
        out.append("low_confidence")
    if (c.vote_share is not None and c.vote_share < rules.min_vote_share) or (
        c.divergence is not None and c.divergence > rules.max_divergence
    ):
        out.append("disagreement")
    return tuple(out)


def priority(c: Candidate) -> float:
    """Doubt in [0, 2]: 2 for a failed item, else max(1 - confidence, 1 - vote_share, divergence)."""
    if c.label is None:
        return 2.0
    parts = [0.0]
    if c.confidence is not None:
        parts.append(1.0 - c.confidence)
    if c.vote_share is not None:
        parts.append(1.0 - c.vote_share)
    if c.divergence is not None:
        parts.append(c.divergence)
    return max(parts)


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
) -> Plan:
    """Choose and rank the queue from `candidates` (in input order; the order breaks priority ties)."""
    labeled = [c for c in candidates if c.label is not None]
    sample = audit_sample(((c.item_id, str(c.label)) for c in labeled), fraction=audit_fraction, seed=seed)
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
    room = len(flagged) if cap is None else max(0, cap - len(audited))
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
            inclusion_prob=probs[str(c.label)] if "audit" in reasons else None,
            stratum=c.label,
            member_labels=c.member_labels,
        )
        for rank, (c, reasons) in enumerate(chosen, start=1)
    )
    return Plan(queue, sample.strata, seed, cap, len(flagged), len(flagged) - min(room, len(flagged)))


# --- the run ------------------------------------------------------------------------------------------
def candidate_from_record(rec: ItemRecord) -> Candidate | None:
    """What routing needs of one ItemRecord (labeler.record decides the LLM's label and confidence);
    None for a skipped item, label None for a failed one."""
    if rec.status == "skipped":
        return None
    return Candidate(
        item_id=rec.id,
        label=rec.label if rec.status == "labeled" else None,
        confidence=rec.confidence,
        vote_share=rec.vote_share,
        divergence=rec.divergence,
        member_labels=rec.member_labels,
    )


def load_candidates(store: RunStore) -> list[Candidate]:
    """The routing candidates of a run, in input order."""
    return [c for c in map(candidate_from_record, records(store)) if c is not None]


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
) -> tuple[Plan, ReviewConfig]:
    """Route a run with its task's [routing] and [review] settings, the arguments overriding them."""
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
        p = plan(candidates, rules=rules, audit_fraction=fraction, seed=cfg.seed if seed is None else seed, cap=cap)
        write_plan(store, p)
        return p, task.review
    finally:
        store.close()


def format_plan(p: Plan, review: ReviewConfig) -> str:
    counts = Counter(reason for r in p.queue for reason in r.reasons)
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
    if p.cap is not None and audit > p.cap:
        lines.append(f"warning: the audit sample alone ({audit}) exceeds the budget ({p.cap}); it is kept whole")
    return "\n".join(lines)
