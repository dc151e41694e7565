"""Routing that learns, pure: the low-confidence threshold that leaves a target accuracy on the items not
reviewed, from calibrated confidence, checked on the random audit.

With calibrated confidence c_i (an estimate of P(label i is right)), accepting the items with c ≥ t
leaves an expected accuracy of mean(c_i : c_i ≥ t) on them; the lowest t that keeps it ≥ target needs
the fewest reviews (the items below t). The audit (a random sample that no choice was fitted on) checks
it: its accuracy among the audited items with c ≥ t, weighted by 1 / inclusion probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labeler.evaluate.intervals import wilson_interval


@dataclass(frozen=True)
class Threshold:
    target: float
    threshold: float  # review the items with confidence below it
    review: int  # how many items that is
    n: int
    expected_accuracy: float  # mean calibrated confidence of the accepted items

    @property
    def review_share(self) -> float:
        return self.review / self.n if self.n else 0.0


def threshold_for(conf: np.ndarray, target: float) -> Threshold:
    """The lowest threshold whose accepted items (conf ≥ it) have mean confidence ≥ target; everything is
    reviewed (threshold inf) when even the most confident item falls short."""
    c = np.sort(np.asarray(conf, dtype=float))[::-1]
    n = len(c)
    if n == 0:
        return Threshold(target, float("inf"), 0, 0, float("nan"))
    mean = np.cumsum(c) / np.arange(1, n + 1)
    ok = np.flatnonzero(mean >= target)
    if not len(ok):
        return Threshold(target, float("inf"), n, n, float("nan"))
    m = int(ok.max()) + 1
    t = float(c[m - 1])
    accepted = int(np.sum(c >= t))  # ties with the threshold are accepted too
    return Threshold(target, t, n - accepted, n, float(np.mean(c[c >= t])))


def budget_table(conf: np.ndarray, targets: Sequence[float]) -> list[Threshold]:
    return [threshold_for(conf, t) for t in targets]


def audit_accuracy_above(
    conf: np.ndarray, correct: np.ndarray, weights: np.ndarray, threshold: float
) -> tuple[float, float, float, int]:
    """(accuracy, low, high, n) of the audited items with conf ≥ threshold, weighted by `weights`
    (1 / inclusion probability); Wilson interval at the effective sample size."""
    keep = np.asarray(conf) >= threshold
    w = np.asarray(weights, dtype=float)[keep]
    ok = np.asarray(correct, dtype=float)[keep]
    if not len(w) or w.sum() <= 0:
        return float("nan"), float("nan"), float("nan"), 0
    p = float(np.sum(w * ok) / w.sum())
    n_eff = float(w.sum() ** 2 / np.sum(w**2))
    low, high = wilson_interval(p, n_eff)
    return p, low, high, int(keep.sum())
