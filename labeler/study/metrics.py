"""Scoring students on the test split, with bootstrap intervals that resample test items.

All scores of one study share one set of bootstrap weights, (B, m) multinomial counts over the m test items
(labeler.evaluate.intervals.item_weights), so intervals of differences between strategies are paired: the
same resampled test set scores every strategy. A statistic is computed per resample from weighted confusion
matrices (labeler.evaluate.classification.confusion_stats, the evaluator's own formulas) and, when a strategy
has several repeats (different seed sets and random draws), averaged over the repeats inside each resample;
its interval is the percentile interval of that average.

    macro-F1           the unweighted mean of per-class F1 (classes absent from both truth and prediction left out)
    over-prediction    per class, #predicted / #true on the test split: above 1 the classifier uses it too often
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from labeler.confidence.reliability import ece
from labeler.evaluate.classification import confusion_stats
from labeler.evaluate.intervals import Estimate, from_samples, item_weights


@dataclass(frozen=True)
class Scorer:
    """Scores predictions of the m test items against their human labels y_true (ints 0..K-1)."""

    y_true: np.ndarray
    k: int
    weights: np.ndarray  # (B, m)
    level: float = 0.95

    @classmethod
    def make(cls, y_true: np.ndarray, k: int, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Scorer:
        m = len(y_true)
        w = np.concatenate(list(item_weights(m, n_boot=n_boot, seed=seed)))
        return cls(np.asarray(y_true, dtype=np.int64), k, w, level)

    def confusions(self, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K+1, K+1) confusion of y_pred (m,), and (B, K+1, K+1) for the resamples; -1 = no label."""
        k1 = self.k + 1
        p = np.where(np.asarray(y_pred) < 0, self.k, y_pred)
        cell = self.y_true * k1 + p
        onehot = sparse.csr_matrix((np.ones(len(cell)), (np.arange(len(cell)), cell)), shape=(len(cell), k1 * k1))
        point = np.bincount(cell, minlength=k1 * k1).reshape(k1, k1).astype(float)
        boot = np.asarray((onehot.T @ self.weights.T).T).reshape(-1, k1, k1)
        return point, boot

    def stats(self, preds: Sequence[np.ndarray]) -> dict[str, Any]:
        """Point values and (B,) resamples of macro-F1, accuracy and per-class over-prediction, averaged
        over the repeats in `preds` (each (m,))."""
        points, boots = zip(*(self.confusions(p) for p in preds), strict=True)
        sp = [confusion_stats(c) for c in points]
        sb = [confusion_stats(c) for c in boots]
        out: dict[str, Any] = {}
        with warnings.catch_warnings():  # a resample without some class: NaN there, left out of the mean
            warnings.simplefilter("ignore", RuntimeWarning)
            for key in ("f1_macro", "accuracy", "over_prediction"):
                out[key] = (
                    np.nanmean([s[key] for s in sp], axis=0),
                    np.nanmean(np.stack([s[key] for s in sb]), axis=0),
                )
        out["confusion"] = np.mean(points, axis=0)
        return out

    def estimate(self, point: float, samples: np.ndarray) -> dict[str, float]:
        return from_samples(float(point), samples, self.level).to_dict()

    def summary(self, preds: Sequence[np.ndarray], labels: Sequence[str]) -> dict[str, Any]:
        """Macro-F1, accuracy, per-class over-prediction (each with its interval) and the confusion counts."""
        s = self.stats(preds)
        true_n = np.bincount(self.y_true, minlength=self.k)
        pred_n = np.mean([np.bincount(np.where(p < 0, self.k, p), minlength=self.k + 1)[: self.k] for p in preds], 0)
        return {
            "f1_macro": self.estimate(s["f1_macro"][0], s["f1_macro"][1]),
            "accuracy": self.estimate(s["accuracy"][0], s["accuracy"][1]),
            "per_class": [
                {
                    "label": lab,
                    "support": int(true_n[j]),
                    "predicted": float(pred_n[j]),
                    "over_prediction": self.estimate(s["over_prediction"][0][j], s["over_prediction"][1][:, j]),
                }
                for j, lab in enumerate(labels)
            ],
            "confusion": s["confusion"].tolist(),
        }

    def difference(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> dict[str, float]:
        """Macro-F1 of a minus macro-F1 of b, with the paired interval (same resampled test items)."""
        sa, sb = self.stats(a)["f1_macro"], self.stats(b)["f1_macro"]
        return self.estimate(sa[0] - sb[0], sa[1] - sb[1])

    def ece(self, preds: Sequence[np.ndarray], confs: Sequence[np.ndarray]) -> float:
        """Expected calibration error (10 bins) of the top-label probability, averaged over the repeats."""
        return float(np.mean([ece(c, (p == self.y_true).astype(int)) for p, c in zip(preds, confs, strict=True)]))


def cost_per_point(dollars: float, f1: float) -> float:
    """Dollars per macro-F1 point (one point = 0.01 macro-F1), as the evaluator's cost per accuracy point."""
    return dollars / (100 * f1) if f1 > 0 and np.isfinite(f1) else float("nan")


def nan_estimate() -> dict[str, float]:
    return Estimate(float("nan"), float("nan"), float("nan")).to_dict()
