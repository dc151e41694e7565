"""Precision, recall, F1 and over-prediction per element class (a label, an entity type) from per-item
counts, with item-bootstrap intervals: the shared arithmetic of the multi-label and span evaluations.

tp, fp, fn: (n_items, n_classes) counts. A resample is a row of item weights (`intervals.boot_items`), so
every statistic is a weighted sum over items and all resamples are computed at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labeler.evaluate.intervals import boot_items, from_samples

LEVEL = 0.95


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, k: int | None = None) -> dict[str, np.ndarray]:
    """(..., K) summed counts -> per-class and averaged metrics; NaN where undefined (left out of macro).
    Micro and macro average the first `k` classes (all by default)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pred, true = tp + fp, tp + fn
        precision = np.where(pred > 0, tp / pred, np.nan)
        recall = np.where(true > 0, tp / true, np.nan)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
        over = np.where(true > 0, pred / true, np.nan)
        t, p, n = tp[..., :k].sum(-1), fp[..., :k].sum(-1), fn[..., :k].sum(-1)
        micro = np.where(2 * t + p + n > 0, 2 * t / (2 * t + p + n), np.nan)
    averaged = f1[..., :k]
    defined = ~np.isnan(averaged)
    mean = np.nansum(np.nan_to_num(averaged), axis=-1) / np.maximum(defined.sum(-1), 1)
    macro = np.where(defined.any(-1), mean, np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "over_prediction": over, "micro": micro, "macro": macro}


def prf_table(
    tp: np.ndarray,
    fp: np.ndarray,
    fn: np.ndarray,
    names: Sequence[str],
    *,
    n_boot: int,
    seed: int,
    pooled: bool = False,
) -> dict[str, Any]:
    """Per class: support, predicted, precision, recall, F1, over-prediction (#predicted / #true); and micro
    and macro F1 — each an Estimate dict with a 95% item-bootstrap percentile interval. `pooled`: the last
    class is all the others pooled (a row of its own, left out of micro and macro)."""
    tp, fp, fn = (np.asarray(a, dtype=float) for a in (tp, fp, fn))
    n = tp.shape[0]
    k = tp.shape[1]
    avg = k - 1 if pooled else k
    point = _prf(tp.sum(0), fp.sum(0), fn.sum(0), avg)
    stacked = np.stack([tp, fp, fn], axis=1).reshape(n, -1)  # (n, 3K): one weighted sum per resample

    def resample(w: np.ndarray) -> np.ndarray:
        s = (w @ stacked).reshape(-1, 3, k)
        m = _prf(s[:, 0], s[:, 1], s[:, 2], avg)
        return np.concatenate([m["precision"], m["recall"], m["f1"], m["over_prediction"], m["micro"][:, None],
                               m["macro"][:, None]], axis=1)

    boot = boot_items(n, resample, n_boot=n_boot, seed=seed) if n else np.full((1, 4 * k + 2), np.nan)

    def est(value: float, col: int) -> dict[str, float]:
        return from_samples(value, boot[:, col], LEVEL).to_dict()

    per_class = []
    for j, name in enumerate(names):
        per_class.append({
            "name": name,
            "support": int(tp[:, j].sum() + fn[:, j].sum()),
            "predicted": int(tp[:, j].sum() + fp[:, j].sum()),
            **{m: est(float(point[m][j]), i * k + j) for i, m in enumerate(("precision", "recall", "f1",
                                                                            "over_prediction"))},
        })
    return {
        "per_class": per_class,
        "f1_micro": est(float(point["micro"]), 4 * k),
        "f1_macro": est(float(point["macro"]), 4 * k + 1),
    }
