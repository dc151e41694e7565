"""The annotations of a set of items by several annotators, and what an aggregation method makes of them.

    Annotations  n items x m annotators, each cell a class index or -1 (no answer); the class names
    Consensus    per item a posterior over the classes (n x K), its argmax as the consensus label, and per
                 annotator a confusion matrix (K x K, row = true class, column = the annotator's answer)

Every method gives a posterior; the confusion matrices are read off it the same way for every method (the
M-step of Dawid–Skene: soft counts of the annotator's answers per true class, rows normalised), so LLM
members and human reviewers are compared on one footing whatever method was chosen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

MISSING = -1


@dataclass(frozen=True)
class Annotations:
    items: tuple[str, ...]
    annotators: tuple[str, ...]
    classes: tuple[str, ...]
    labels: np.ndarray  # (n, m) int: class index, MISSING where the annotator did not answer

    @classmethod
    def from_triples(
        cls, triples: Iterable[tuple[str, str, str]], classes: Sequence[str], *, items: Sequence[str] = ()
    ) -> Annotations:
        """(item, annotator, class name) triples; a later triple for the same (item, annotator) wins. `items`
        fixes the item order (items without an answer keep an all-missing row); answers outside `classes`
        are left out."""
        index = {c: k for k, c in enumerate(classes)}
        rows: dict[str, dict[str, int]] = {i: {} for i in items}
        annotators: dict[str, None] = {}
        for item, annotator, label in triples:
            k = index.get(label)
            if k is None:
                continue
            rows.setdefault(item, {})[annotator] = k
            annotators.setdefault(annotator, None)
        names = tuple(annotators)
        col = {a: j for j, a in enumerate(names)}
        mat = np.full((len(rows), len(names)), MISSING, dtype=int)
        for i, answers in enumerate(rows.values()):
            for a, k in answers.items():
                mat[i, col[a]] = k
        return cls(tuple(rows), names, tuple(classes), mat)

    @property
    def answered(self) -> np.ndarray:
        """(n, m) bool: where an annotator answered."""
        return self.labels != MISSING

    def without(self, annotator: str) -> Annotations:
        """The same items with one annotator's column left out."""
        j = self.annotators.index(annotator)
        keep = [k for k in range(len(self.annotators)) if k != j]
        return Annotations(self.items, tuple(self.annotators[k] for k in keep), self.classes, self.labels[:, keep])

    def one_hot(self) -> np.ndarray:
        """(n, m, K) 0/1 answers (all zero where missing)."""
        n, m = self.labels.shape
        out = np.zeros((n, m, len(self.classes)))
        ii, jj = np.nonzero(self.answered)
        out[ii, jj, self.labels[ii, jj]] = 1.0
        return out


@dataclass(frozen=True)
class Consensus:
    method: str
    items: tuple[str, ...]
    classes: tuple[str, ...]
    annotators: tuple[str, ...]
    posterior: np.ndarray  # (n, K), rows sum to 1 (uniform for an item nobody answered)
    confusion: Mapping[str, np.ndarray] = field(default_factory=dict)  # annotator -> (K, K) row-stochastic
    notes: tuple[str, ...] = ()

    @property
    def label_index(self) -> np.ndarray:
        return np.argmax(self.posterior, axis=1)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.classes[k] for k in self.label_index)

    @property
    def confidence(self) -> np.ndarray:
        """(n,) the posterior of the consensus label."""
        return self.posterior.max(axis=1)

    def by_item(self) -> dict[str, tuple[str, float]]:
        """item -> (consensus label, its posterior)."""
        return {i: (lab, float(p)) for i, lab, p in zip(self.items, self.labels, self.confidence, strict=True)}


def confusions(ann: Annotations, posterior: np.ndarray, *, smoothing: float = 0.01) -> dict[str, np.ndarray]:
    """annotator -> (K, K) confusion matrix, row t = P(answer | true class t), from the soft counts
    sum_i posterior[i, t] * [annotator answered k on i]; `smoothing` is added to every cell (so a row of
    a class the annotator never saw is uniform, not 0/0)."""
    onehot = ann.one_hot()  # (n, m, K)
    counts = np.einsum("it,ijk->jtk", posterior, onehot) + smoothing  # (m, K, K)
    cms = counts / counts.sum(axis=2, keepdims=True)
    return {a: cms[j] for j, a in enumerate(ann.annotators)}


def expected_accuracy(ann: Annotations, posterior: np.ndarray) -> dict[str, tuple[float, int]]:
    """annotator -> (the posterior-expected share of its answers that are right, its number of answers)."""
    out = {}
    for j, a in enumerate(ann.annotators):
        rows = np.nonzero(ann.answered[:, j])[0]
        n = len(rows)
        acc = float(posterior[rows, ann.labels[rows, j]].mean()) if n else float("nan")
        out[a] = (acc, n)
    return out


def finish(method: str, ann: Annotations, posterior: np.ndarray, notes: Sequence[str] = ()) -> Consensus:
    """A Consensus from a method's posterior: rows normalised (uniform where nobody answered), confusions added."""
    post = np.asarray(posterior, dtype=float).copy()
    post = np.where(np.isfinite(post), post, 0.0)
    sums = post.sum(axis=1, keepdims=True)
    k = len(ann.classes)
    post = np.where(sums > 0, post / np.where(sums > 0, sums, 1.0), 1.0 / k)
    return Consensus(method, ann.items, ann.classes, ann.annotators, post, confusions(ann, post), tuple(notes))
