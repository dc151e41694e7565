"""Confidence as distributions over the label set, and the maths that combines them. Pure functions.

Every method yields a distribution over the labels for one item and one member:
  logprob      token probabilities of the label, renormalised over the label set (parse.label_probs)
  verbalized   the stated confidence c on the chosen label, (1 - c) spread evenly over the others
  consistency  vote shares of n samples drawn at temperature > 0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

Dist = dict[str, float]


def verbalized_dist(label: str, confidence: float, labels: Sequence[str]) -> Dist:
    rest = (1.0 - confidence) / (len(labels) - 1) if len(labels) > 1 else 0.0
    return {lab: (confidence if lab == label else rest) for lab in labels}


def vote_dist(votes: Sequence[str | None], labels: Sequence[str]) -> Dist | None:
    """Vote shares of the parseable votes; None when no vote parsed."""
    counted = Counter(v for v in votes if v is not None)
    total = sum(counted.values())
    if total == 0:
        return None
    return {lab: counted.get(lab, 0) / total for lab in labels}


def pick_confidence(
    label: str, distributions: Mapping[str, Mapping[str, float]], methods: Sequence[str]
) -> float | None:
    """The chosen label's probability under the first configured method that produced a distribution."""
    for m in methods:
        d = distributions.get(m)
        if d is not None:
            return float(d.get(label, 0.0))
    return None
