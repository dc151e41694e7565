"""Multi-label tasks: each label is its own yes/no question, aggregated by the chosen method over the
annotators who answered the item (an annotator who gave the item a label set says "yes" to the labels in
it and "no" to the rest). The consensus set holds the labels whose posterior of "yes" is at least 0.5; an
item's posterior is that of its least certain label decision (what routing needs). CROWDLAB runs per label
too, when given the LLM's p(yes) per label (eval/aggregate.py measures it on data/conll2003_kinds)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from labeler.aggregate.table import Annotations, Consensus

NO, YES = "no", "yes"


@dataclass(frozen=True)
class MultiConsensus:
    method: str
    items: tuple[str, ...]
    per_label: Mapping[str, Consensus]  # label -> the consensus of its yes/no question (classes ("no", "yes"))

    def p_yes(self) -> dict[str, np.ndarray]:
        return {lab: c.posterior[:, 1] for lab, c in self.per_label.items()}

    @property
    def label_sets(self) -> tuple[tuple[str, ...], ...]:
        yes = self.p_yes()
        return tuple(tuple(lab for lab in self.per_label if yes[lab][i] >= 0.5) for i in range(len(self.items)))

    @property
    def confidence(self) -> np.ndarray:
        """(n,) the posterior of the least certain label decision of each item."""
        stacked = np.stack([c.confidence for c in self.per_label.values()], axis=1)
        return stacked.min(axis=1)

    def by_item(self) -> dict[str, tuple[tuple[str, ...], float]]:
        return dict(zip(self.items, zip(self.label_sets, map(float, self.confidence), strict=True), strict=True))


def binary_annotations(
    triples: Iterable[tuple[str, str, Sequence[str]]], labels: Sequence[str], *, items: Sequence[str] = ()
) -> dict[str, Annotations]:
    """label -> Annotations of its yes/no question from (item, annotator, label set) triples."""
    rows = list(triples)
    out = {}
    for lab in labels:
        out[lab] = Annotations.from_triples(
            ((i, a, YES if lab in set(s) else NO) for i, a, s in rows), (NO, YES), items=items
        )
    return out


def aggregate_multilabel(
    triples: Iterable[tuple[str, str, Sequence[str]]],
    labels: Sequence[str],
    method: str,
    *,
    items: Sequence[str] = (),
    probs: Mapping[str, np.ndarray] | None = None,
    humans: Sequence[str] = (),
    seed: int = 0,
) -> MultiConsensus:
    """Each label of a multi-label task aggregated as a yes/no question by `method`. crowdlab takes, per
    label, the LLM's probability of "yes" on every item (`probs`: label -> (n,), in the order of `items`)
    and the reviewers it weighs (`humans`); a run does not store that probability for the labels the LLM
    left out (labeler.confidence.per_label), so labeler.aggregate.collect refuses crowdlab on multi-label."""
    from labeler.aggregate import aggregate

    per = binary_annotations(triples, labels, items=items)
    if not per:
        return MultiConsensus(method, tuple(items), {})
    first = next(iter(per.values()))

    def one(lab: str, a: Annotations) -> Consensus:
        if probs is None:
            return aggregate(a, method, seed=seed)
        p = np.clip(np.asarray(probs[lab], dtype=float), 0.0, 1.0)
        return aggregate(a, method, probs=np.stack([1.0 - p, p], axis=1), humans=humans, seed=seed)

    return MultiConsensus(method, first.items, {lab: one(lab, a) for lab, a in per.items()})
