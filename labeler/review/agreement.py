"""Agreement between reviewers: on the items two or more of them labeled, percent agreement and Cohen's kappa
for every pair (scikit-learn's `cohen_kappa_score`). Adjudications are left out: they are not independent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from labeler.store import RunStore


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
    """Inter-reviewer agreement on items reviewed more than once. `labels_by_item`: item → reviewer → label."""
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
        seen = set(ya) | set(yb)  # multi-label / span annotations: each distinct encoded value is a category
        cats = list(labels) if seen <= set(labels) else sorted(set(labels) | seen)
        kappa = float(cohen_kappa_score(ya, yb, labels=cats)) if len(seen) > 1 else None
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


def run_agreement(store: RunStore, labels: Sequence[str]) -> Agreement:
    """Agreement over the run's reviews."""
    reviews = store.reviews()
    by_item = {item: {r.reviewer: r.label for r in revs if not r.adjudication} for item, revs in reviews.items()}
    return agreement(by_item, labels=labels)
