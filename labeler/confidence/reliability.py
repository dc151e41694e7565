"""Reliability of a confidence score: equal-width bins and the expected calibration error. Pure functions.

    conf      (n,) the confidence of each label, in [0, 1]
    correct   (n,) 1 if the label was right, else 0
    weights   None, (n,) item weights, or (B, n): B weightings at once (bootstrap resamples)

Bins: `bins` equal-width bins on [0, 1]; bin b holds b/bins <= conf < (b + 1)/bins, and 1.0 falls in the last.
    ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|  =  Σ_b |Σ_{i∈B_b} w_i (correct_i − conf_i)| / Σ_i w_i
This is the one implementation: calibration (labeler.confidence.calibration) and evaluation (labeler.evaluate)
both call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

ArrayLike = Sequence[float] | Sequence[int] | Sequence[bool] | np.ndarray


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    confidence: float  # mean confidence in the bin (NaN if empty)
    accuracy: float  # share correct in the bin (NaN if empty)


def bin_index(conf: ArrayLike, *, bins: int = 10) -> np.ndarray:
    """(n,) the equal-width bin of each confidence (values outside [0, 1] go to the first or last bin)."""
    c = np.asarray(conf, dtype=float)
    return np.clip(np.floor(c * bins), 0, bins - 1).astype(np.int64)


def bin_sums(
    conf: ArrayLike, correct: ArrayLike, *, bins: int = 10, weights: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: total weight, Σ w·conf and Σ w·correct, each of shape (bins,), or (B, bins) for (B, n) weights."""
    c = np.asarray(conf, dtype=float)
    y = np.asarray(correct, dtype=float)
    w = np.ones(c.shape) if weights is None else np.asarray(weights, dtype=float)
    onehot = np.eye(bins)[bin_index(c, bins=bins)]  # (n, bins)
    return w @ onehot, (w * c) @ onehot, (w * y) @ onehot


@overload
def ece(conf: ArrayLike, correct: ArrayLike, *, bins: int = ..., weights: None = ...) -> float: ...
@overload
def ece(conf: ArrayLike, correct: ArrayLike, *, bins: int = ..., weights: ArrayLike) -> float | np.ndarray: ...
def ece(conf: ArrayLike, correct: ArrayLike, *, bins: int = 10, weights: ArrayLike | None = None) -> float | np.ndarray:
    """Expected calibration error over `bins` equal-width bins (see the module docstring). A float, or (B,)
    values for (B, n) weights. 0.0 for no items."""
    if np.asarray(conf).size == 0:
        return 0.0
    count, conf_sum, correct_sum = bin_sums(conf, correct, bins=bins, weights=weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.abs(correct_sum - conf_sum).sum(axis=-1) / count.sum(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def reliability_bins(conf: ArrayLike, correct: ArrayLike, *, bins: int = 10) -> tuple[ReliabilityBin, ...]:
    """The reliability diagram: for each equal-width bin its range, item count, mean confidence and share
    correct (NaN for an empty bin)."""
    count, conf_sum, correct_sum = bin_sums(conf, correct, bins=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf, acc = conf_sum / count, correct_sum / count
    return tuple(
        ReliabilityBin(i / bins, (i + 1) / bins, int(count[i]), float(mean_conf[i]), float(acc[i])) for i in range(bins)
    )
