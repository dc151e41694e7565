"""Ensemble agreement: combine the members' answers for one item into one label, and say how much they agree.

Per item, each member that answered contributes a label (its vote) and a distribution over the label
set (the first configured confidence method it has; its vote as a one-hot when it has none). Members
that failed or were skipped do not vote. From these:

    distribution  mean of the voting members' distributions            (k labels, sums to 1)
    label         "majority": most votes; "weighted": highest summed probability
                  ties: highest summed probability, then label order (the config's [[labels]] order)
    confidence    distribution[label]   (with one member: that member's confidence)
    vote_share    share of voting members whose vote is `label`         in [0, 1]
    entropy       entropy of `distribution` divided by ln k             in [0, 1]
    divergence    mean pairwise Jensen–Shannon divergence (base 2)      in [0, 1]; 0 with < 2 voters
    disagree      vote_share < routing.min_vote_share or divergence > routing.max_divergence

Pure functions; labeler.confidence.run combines a whole run and stores one row per item.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from labeler.confidence.distributions import Dist, verbalized_dist
from labeler.config import RoutingConfig
from labeler.store.rows import CombinedRow, ResultRow

COMBINES = ("majority", "weighted")
_ROUTING = RoutingConfig()
_TIE_DECIMALS = 9  # summed probabilities equal to this many decimals count as a tie


# --- pure maths on distributions ---------------------------------------------------------------
def _normalized(p: Sequence[float]) -> list[float]:
    a = [float(x) for x in p]
    total = sum(a)
    if not a or total <= 0 or any(x < 0 for x in a):
        raise ValueError(f"a distribution must be a non-empty sequence of non-negative numbers, got {p!r}")
    return [x / total for x in a]


# Plain Python, not numpy/scipy: distributions here have a handful of entries, and this runs once per
# item after every run, where numpy's per-call overhead was the largest cost of the pipeline.
def entropy(p: Sequence[float], *, normalized: bool = False) -> float:
    """Shannon entropy of distribution `p` (shape (k,)), in nats; with normalized=True divided by ln k,
    so 0 is one-hot and 1 is uniform (k = 1 gives 0)."""
    a = _normalized(p)
    h = -sum(x * math.log(x) for x in a if x > 0)
    if not normalized:
        return h
    return h / math.log(len(a)) if len(a) > 1 else 0.0


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon divergence of two distributions of shape (k,), base 2: 0 when equal, 1 when disjoint."""
    a, b = _normalized(p), _normalized(q)
    if len(a) != len(b):
        raise ValueError(f"distributions differ in length: {len(a)} and {len(b)}")
    m = [(x + y) / 2 for x, y in zip(a, b, strict=True)]

    def kl(u: list[float]) -> float:
        return sum(x * math.log2(x / mi) for x, mi in zip(u, m, strict=True) if x > 0)

    return min(max((kl(a) + kl(b)) / 2, 0.0), 1.0)


def mean_pairwise_js(dists: Sequence[Sequence[float]]) -> float:
    """Mean JS divergence (base 2) over all pairs of the given distributions (each of shape (k,));
    0.0 for fewer than two."""
    pairs = list(itertools.combinations(dists, 2))
    if not pairs:
        return 0.0
    return sum(js_divergence(p, q) for p, q in pairs) / len(pairs)


def vote_share(votes: Sequence[str | None], label: str) -> float:
    """Share of the non-missing votes that are `label`; 0.0 when no vote was cast."""
    cast = [v for v in votes if v is not None]
    return sum(v == label for v in cast) / len(cast) if cast else 0.0


def _summed(dists: Sequence[Mapping[str, float]], labels: Sequence[str]) -> dict[str, float]:
    return {lab: sum(float(d.get(lab, 0.0)) for d in dists) for lab in labels}


def majority_vote(
    votes: Sequence[str | None], dists: Sequence[Mapping[str, float]], *, labels: Sequence[str]
) -> str | None:
    """The label with most votes (None votes are ignored; votes outside `labels` too). Ties go to the
    highest summed probability over `dists`, then to the earlier label in `labels`. None if no vote."""
    counts = {lab: 0 for lab in labels}
    for v in votes:
        if v in counts:
            counts[v] += 1
    if not any(counts.values()):
        return None
    sums = _summed(dists, labels)
    order = {lab: i for i, lab in enumerate(labels)}
    return max(labels, key=lambda lab: (counts[lab], round(sums[lab], _TIE_DECIMALS), -order[lab]))


def weighted_vote(dists: Sequence[Mapping[str, float]], *, labels: Sequence[str]) -> str | None:
    """The label with the highest probability summed over `dists` (each a label → probability mapping);
    ties go to the earlier label in `labels`. None if there are no distributions."""
    if not dists:
        return None
    sums = _summed(dists, labels)
    order = {lab: i for i, lab in enumerate(labels)}
    return max(labels, key=lambda lab: (round(sums[lab], _TIE_DECIMALS), -order[lab]))


def disagreement(share: float, divergence: float, *, min_vote_share: float, max_divergence: float) -> bool:
    """True when the members agree too little: vote share below `min_vote_share` or divergence above
    `max_divergence` (the routing thresholds)."""
    return share < min_vote_share or divergence > max_divergence


# --- one item ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberView:
    """What the ensemble needs of one member's result for one item. label None: it failed or was skipped."""

    label: str | None
    distributions: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    confidence: float | None = None

    @classmethod
    def from_result(cls, r: ResultRow) -> MemberView:
        """From a member's stored answer."""
        return cls(
            label=r.label if r.status == "labeled" else None, distributions=r.distributions, confidence=r.confidence
        )


def member_distribution(view: MemberView, *, labels: Sequence[str], method_order: Sequence[str]) -> Dist | None:
    """The member's distribution over `labels` under the first method in `method_order` it has,
    renormalised; else its stated confidence spread as `verbalized_dist`; else its vote as a one-hot.
    None when the member did not vote."""
    if view.label is None:
        return None
    for method in method_order:
        d = view.distributions.get(method)
        if d is not None:
            total = sum(max(float(d.get(lab, 0.0)), 0.0) for lab in labels)
            if total > 0:
                return {lab: max(float(d.get(lab, 0.0)), 0.0) / total for lab in labels}
    if view.confidence is not None and view.label in labels:
        return verbalized_dist(view.label, float(view.confidence), labels)
    return {lab: float(lab == view.label) for lab in labels}


def combine_item(
    member_results: Mapping[str, MemberView],
    *,
    labels: Sequence[str],
    method_order: Sequence[str],
    combine: str,
    min_vote_share: float = _ROUTING.min_vote_share,
    max_divergence: float = _ROUTING.max_divergence,
    item_id: str = "",
) -> CombinedRow:
    """Combine the members' results for one item (member name → MemberView) into one answer, as the run
    store keeps it (`item_id` names the item; the calibrated confidence and raw label come later).

    `labels` is the label set in config order (shape (k,)), `method_order` the confidence methods in
    order of preference, `combine` "majority" or "weighted". Members with no label do not vote; with
    no voter at all the answer is label None and disagree False (a failed item, routed as such)."""
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    member_labels = {name: v.label for name, v in member_results.items()}
    voters: list[tuple[str, Dist]] = []
    for view in member_results.values():
        d = member_distribution(view, labels=labels, method_order=method_order)
        if d is not None and view.label is not None:
            voters.append((view.label, d))
    if not voters:
        return CombinedRow(item_id, None, None, {}, None, None, None, False, member_labels)
    votes = [v for v, _ in voters]
    dists = [d for _, d in voters]
    label = majority_vote(votes, dists, labels=labels) if combine == "majority" else weighted_vote(dists, labels=labels)
    assert label is not None
    summed = _summed(dists, labels)
    distribution = {lab: summed[lab] / len(dists) for lab in labels}
    share = vote_share(votes, label)
    div = mean_pairwise_js([[d[lab] for lab in labels] for d in dists])
    return CombinedRow(
        item_id=item_id,
        label=label,
        confidence=distribution[label],
        distribution=distribution,
        vote_share=share,
        entropy=entropy([distribution[lab] for lab in labels], normalized=True),
        divergence=div,
        disagree=disagreement(share, div, min_vote_share=min_vote_share, max_divergence=max_divergence),
        member_labels=member_labels,
    )
