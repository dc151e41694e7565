"""How well a confidence score matches accuracy: ECE and the reliability bins (labeler.confidence.reliability,
the one implementation), top-label and multiclass Brier scores, and AUROC, each with a bootstrap interval."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

from labeler.confidence.reliability import ReliabilityBin, ece, reliability_bins
from labeler.evaluate.intervals import Estimate, boot_items, from_samples
from labeler.evaluate.reference import encode


@dataclass(frozen=True)
class Calibration:
    """How well a confidence score matches accuracy, on the n items that have both."""

    n: int
    accuracy: float
    mean_confidence: float
    ece: Estimate
    brier: Estimate
    brier_multiclass: Estimate | None
    auroc: Estimate | None
    bins: tuple[ReliabilityBin, ...]


def weighted_auroc(w: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(B,) AUROC of `score` for `positive` under item weights w (B, n): the weighted Mann–Whitney
    statistic, ties counted one half."""
    order = np.argsort(score, kind="stable")
    s, pos, wo = score[order], positive[order], w[:, order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    neg_g = np.add.reduceat(wo * ~pos, starts, axis=1)
    pos_g = np.add.reduceat(wo * pos, starts, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g
    num = (pos_g * (below + 0.5 * neg_g)).sum(axis=1)
    den = pos_g.sum(axis=1) * neg_g.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def calibration(
    y_true: Sequence[Hashable | None],
    y_pred: Sequence[Hashable | None],
    *,
    confidence: Sequence[float],
    labels: Sequence[str],
    probs: np.ndarray | None = None,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Calibration:
    """Calibration of the top-label confidence, with bootstrap intervals.

    y_true, y_pred: (n,) labels; confidence: (n,) the confidence of y_pred, in [0, 1]; probs: optional (n, K)
    full distributions over `labels` (rows sum to 1) for the multiclass Brier score.

    ECE (expected calibration error), n_bins (10) equal-width bins B_b on [0, 1] (1.0 falls in the last):
        ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|
    where acc is the share of correct labels in the bin and conf the mean top-label confidence.
    Brier (top-label) = mean (confidence − correct)²; multiclass Brier = mean Σ_k (p_k − 1[y = k])².
    AUROC: how well the confidence ranks correct labels above wrong ones (0.5 = no signal)."""
    t, p = encode(y_true, labels), encode(y_pred, labels)
    conf = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    n = len(conf)
    if n == 0 or len(t) != n:
        raise ValueError("y_true, y_pred and confidence must have the same, non-zero length")
    correct = ((t == p) & (p < len(labels))).astype(float)
    sq = (conf - correct) ** 2
    loss = np.zeros(n)
    if probs is not None:
        onehot_y = np.eye(len(labels) + 1)[t][:, : len(labels)]
        loss = ((np.asarray(probs, dtype=float) - onehot_y) ** 2).sum(axis=1)
    pos = correct.astype(bool)
    both = 0 < pos.sum() < n

    def resampled(w: np.ndarray) -> np.ndarray:
        auroc = weighted_auroc(w, pos, conf) if both else np.full(len(w), np.nan)
        ece_w = np.asarray(ece(conf, correct, bins=n_bins, weights=w))
        return np.stack([ece_w, w @ sq / n, w @ loss / n, auroc], axis=1)

    boot = boot_items(n, resampled, n_boot=n_boot, seed=seed)
    return Calibration(
        n=n,
        accuracy=float(correct.mean()),
        mean_confidence=float(conf.mean()),
        ece=from_samples(ece(conf, correct, bins=n_bins), boot[:, 0], level),
        brier=from_samples(skm.brier_score_loss(pos, conf) if both else sq.mean(), boot[:, 1], level),
        brier_multiclass=None if probs is None else from_samples(loss.mean(), boot[:, 2], level),
        auroc=from_samples(skm.roc_auc_score(pos, conf), boot[:, 3], level) if both else None,
        bins=reliability_bins(conf, correct, bins=n_bins),
    )
