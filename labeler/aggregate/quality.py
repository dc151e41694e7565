"""How good each annotator is, by the consensus: what `labeler eval` reports and `labeler review status` flags.

Per annotator (LLM members and human reviewers side by side):
    accuracy       the posterior-expected share of its answers that are right, mean_i posterior[i, answer_i],
                   with a Wilson interval at its number of answers (the uncertainty of the answers, not of
                   the model's fit)
    over-prediction  per class, how often it answers the class / how often the consensus holds it, on the
                   items it answered (1 = no skew; > 1 over-predicts)
    vs others      the consensus of the other annotators, refitted without it, on the items it answered:
                   its expected accuracy by the same posterior; "worse" when the annotator's interval lies
                   wholly below that
    gold           where the input has gold labels: its accuracy on them (and the consensus's), which
                   checks the estimates
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from labeler.aggregate import aggregate
from labeler.aggregate.table import Annotations, Consensus, expected_accuracy
from labeler.errors import AggregateError


@dataclass(frozen=True)
class AnnotatorQuality:
    name: str
    n: int
    accuracy: float
    low: float
    high: float
    confusion: np.ndarray  # (K, K) row = true class
    overprediction: Mapping[str, float | None] = field(default_factory=dict)
    others_accuracy: float | None = None  # the leave-it-out consensus's expected accuracy on its items
    gold_n: int = 0
    gold_accuracy: float | None = None

    @property
    def worse_than_others(self) -> bool:
        return self.others_accuracy is not None and self.high < self.others_accuracy


def _wilson(p: float, n: int) -> tuple[float, float]:
    """95% Wilson interval at n answers, p*n of them right (rounded: scipy takes a count)."""
    from scipy.stats import binomtest

    ci = binomtest(round(p * n), n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def annotator_quality(
    ann: Annotations,
    consensus: Consensus,
    *,
    method: str,
    gold: Mapping[str, str] | None = None,
    probs: np.ndarray | None = None,
    humans: tuple[str, ...] = (),
    leave_one_out: bool = True,
) -> list[AnnotatorQuality]:
    """One AnnotatorQuality per annotator of `ann`, in its order (see the module docstring)."""
    post = consensus.posterior
    acc = expected_accuracy(ann, post)
    gold = gold or {}
    where = {i: k for k, i in enumerate(ann.items)}
    gold_idx = {where[i]: ann.classes.index(g) for i, g in gold.items() if i in where and g in ann.classes}
    out = []
    for j, a in enumerate(ann.annotators):
        rows = np.nonzero(ann.answered[:, j])[0]
        p, n = acc[a]
        low, high = _wilson(p, n) if n else (0.0, 1.0)
        answers = np.bincount(ann.labels[rows, j], minlength=len(ann.classes)).astype(float)
        held = post[rows].sum(axis=0)
        over = {c: (float(answers[k] / held[k]) if held[k] > 0.5 else None) for k, c in enumerate(ann.classes)}
        others = None
        rest = ann.without(a)
        shared = rows[rest.answered[rows].any(axis=1)]  # its items that another annotator answered too
        if leave_one_out and len(shared):
            loo_humans = tuple(h for h in humans if h != a)
            try:
                loo = aggregate(rest, method, probs=probs, humans=loo_humans)
            except AggregateError:  # a method that cannot run without it (crowdlab with one reviewer left)
                loo = aggregate(rest, "vote")
            others = float(post[shared, loo.label_index[shared]].mean())
        g_rows = [int(i) for i in rows if int(i) in gold_idx]
        g_acc = float(np.mean([ann.labels[i, j] == gold_idx[i] for i in g_rows])) if g_rows else None
        out.append(
            AnnotatorQuality(a, n, p, low, high, consensus.confusion[a], over, others, len(g_rows), g_acc)
        )
    return out


def consensus_gold_accuracy(consensus: Consensus, gold: Mapping[str, str]) -> tuple[float | None, int]:
    """The consensus's accuracy on the gold items, and how many there are."""
    idx = {i: k for k, i in enumerate(consensus.items)}
    pairs = [(idx[i], g) for i, g in gold.items() if i in idx and g in consensus.classes]
    if not pairs:
        return None, 0
    labels = consensus.labels
    return float(np.mean([labels[k] == g for k, g in pairs])), len(pairs)
